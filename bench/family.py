"""A model family stored with deltas (issue 15, item 6): the base and three fine-tunes of all-MiniLM-L6-v2, BF16 and
FP32, each fine-tune pushed with ``--parent BASE --relation finetune``, against the same fine-tune stored on its own.

    .venv/bin/python bench/family.py                  # through the CLI, as a user pushes and pulls
    .venv/bin/python bench/family.py --store-level    # ObjectStore.put_delta directly: what deltas can give
    .venv/bin/python bench/family.py --dtypes BF16 --repeat 1

Targets (issue 15): a fine-tune stored as deltas is <= 0.5x of its tensors compressed on their own by ZipNN 0.5.4,
and its push and pull take <= 1.2x the time of the same fine-tune pushed without ``--parent``.

The fine-tunes are genuine: ``bench/delta_codec.py``'s generator (the real model, FP32, 30 AdamW steps of a
contrastive loss, seed 0) at learning rates 1e-5, 5e-5 and 2e-4, cast to BF16 (round to nearest even) or kept FP32,
written by safetensors beside the model's own tokenizer and config files. They take minutes to make on a shared
machine, so they are cached in ``--cache`` (``/tmp/modelarc-bench/family-...``) and reused.

CLI mode. For each dtype and each of ``--repeat`` rounds, two fresh homes, in alternating order: "delta" pushes the
base, then each fine-tune with ``--parent``; "independent" pushes the base, then each fine-tune without. Both hold
the same snapshots when a fine-tune is pushed, so identical chunks deduplicate alike; only the parent differs. Each
fine-tune is then pulled into a fresh folder (checked byte for byte in the first round). Stored bytes per push are
the sizes of the object files it added under the store ("whole push"; ``stored_bytes_added`` of ``push --json``,
shown beside it, counts the file chunks and not the snapshot's manifest objects, a few KB); "tensors" counts only
the new objects that hold the fine-tune's tensor chunks, and "delta objects" how many of those are codec 3. Times are medians over the rounds,
each push or pull a process (interpreter start-up included), dirty pages flushed before each.

Store-level mode does the same with an ``ObjectStore`` in this process and no catalog: every tensor cut into the
8 MiB chunks ingest makes, each fine-tune chunk put with ``put_delta`` against the base's chunk at the same tensor
and offset (float tensors of the same dtype and shape; others with ``put``), against ``put`` alone into a store that
holds the base. "push" is the time of those puts, "pull" of ``get`` of every chunk (hash-verified, as a pull reads).
Single thread, where ingest uses a pool: compare the ratios, not the absolute times.

ZipNN: bytes mode, one call per float tensor (zstd -1 for others), each checked to round-trip, as ``bench/run.py``.
A MISS never fails the run. Results go to ``bench/results/family[-store].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/ is not a package

import delta_codec  # noqa: E402  # the fine-tune generator
import models as bench_models  # noqa: E402
import run as bench_run  # noqa: E402  # the CLI runner, folder reader, ZipNN sizes, table

FAMILY_VERSION = 1  # bump when the written bytes change, so a stale cache is not reused
BASE_REF = "bench/minilm:base"
TARGETS = {"stored_tensors_vs_zipnn": 0.5, "push": 1.2, "pull": 1.2}
TORCH_DTYPES = {"BF16": "bfloat16", "F32": "float32"}


# --------------------------------------------------------------------------- the family, made once and cached
def member_name(lr: float) -> str:
    return f"ft-lr{lr:.0e}"


def family_dir(cache: Path, steps: int) -> Path:
    return cache / f"family-minilm-s{steps}-v{FAMILY_VERSION}"


def write_member(folder: Path, tensors: dict[str, Any], dtype: str) -> None:
    """The MiniLM folder with ``tensors`` (FP32 numpy, by the file's names) in ``dtype`` as its weights."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = bench_models.MINILM_DIR
    out = {}
    with safe_open(str(source / "model.safetensors"), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
            t = f.get_tensor(name)
            if t.is_floating_point():
                t = torch.from_numpy(tensors[name]).to(getattr(torch, TORCH_DTYPES[dtype]))
            out[name] = t.contiguous()
    missing = set(tensors) - set(out)
    if missing:
        raise RuntimeError(f"fine-tuned tensors not in the model file: {sorted(missing)[:3]}")
    for p in sorted(source.rglob("*")):
        if p.is_file() and p.name != "model.safetensors":
            dest = folder / p.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
    config = json.loads((folder / "config.json").read_text())
    config["torch_dtype"] = TORCH_DTYPES[dtype]
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(out, str(folder / "model.safetensors"), metadata={"format": "pt"})


def make_family(cache: Path, steps: int, lrs: list[float], dtypes: list[str]) -> dict[str, dict[str, Path]]:
    """``folders[member][dtype]``: "base" and one member per learning rate; made on first use, then reused."""
    root = family_dir(cache, steps)
    folders: dict[str, dict[str, Path]] = {}
    for lr in lrs:
        name = member_name(lr)
        want = {d: root / f"{name}-{d.lower()}" for d in dtypes}
        base = {d: root / f"base-{d.lower()}" for d in dtypes}
        if not all(p.is_dir() for p in [*want.values(), *base.values()]):
            print(f"  fine-tuning all-MiniLM-L6-v2: {steps} AdamW steps at lr {lr:.0e} ...", flush=True)
            started = time.perf_counter()
            parent, child = delta_codec.fine_tune(steps, lr)
            print(f"  ... {time.perf_counter() - started:.0f} s", flush=True)
            for d in dtypes:
                bench_models._write_folder_atomically(
                    base[d], functools.partial(write_member, tensors=parent, dtype=d)
                )
                bench_models._write_folder_atomically(
                    want[d], functools.partial(write_member, tensors=child, dtype=d)
                )
        folders.setdefault("base", {}).update(base)
        folders[name] = want
    return folders


# --------------------------------------------------------------------------- what a push added
def object_files(store: Path) -> dict[str, int]:
    """Size of every object file under the store, by object id (temp files and quarantine left out)."""
    root = store / "objects"
    if not root.is_dir():
        return {}
    return {p.name: p.stat().st_size for p in root.glob("??/*") if p.is_file() and len(p.name) == 64}


def tensor_chunk_ids(home: Path, ref: str) -> set[str]:
    from modelarc.archive.repository import Archive

    with Archive.open(home) as archive:
        _ref, snap = archive.resolve(ref)
        manifest = archive.manifest(snap)
    return {c.id for e in manifest.files for p in e.parts if p.kind == "tensor" for c in p.chunks}


def codecs_of(home: Path, ids: set[str]) -> dict[str, int]:
    from modelarc.archive.repository import Archive
    from modelarc.storage import ObjectId

    counts: dict[str, int] = {}
    with Archive.open(home) as archive:
        for oid in ids:
            codec = archive.store.stat(ObjectId(oid)).codec
            counts[codec] = counts.get(codec, 0) + 1
    return counts


@dataclass
class Stored:
    """What storing one fine-tune added: all object files, the ones holding its tensor chunks, their codecs."""

    files: int = 0
    tensors: int = 0
    codecs: dict[str, int] = field(default_factory=dict)
    reported: int | None = None  # push --json's stored_bytes_added

    @property
    def deltas(self) -> str:
        return f"{self.codecs.get('delta', 0)}/{sum(self.codecs.values())}"


@dataclass
class Timings:
    push: dict[str, list[float]] = field(default_factory=dict)  # member -> seconds per round
    pull: dict[str, list[float]] = field(default_factory=dict)

    def add(self, what: str, member: str, seconds: float) -> None:
        getattr(self, what).setdefault(member, []).append(seconds)


MODES = ("delta", "independent")


# --------------------------------------------------------------------------- CLI mode
def cli_round(
    folders: dict[str, dict[str, Path]],
    dtype: str,
    mode: str,
    work: Path,
    first: bool,
    stored: dict[str, Stored],
    times: Timings,
) -> Any:
    """One fresh home: push the base, each fine-tune (with --parent in "delta" mode), then pull each one.
    Returns what ``stats --json`` says deltas saved after the first delta round (None otherwise, or when this
    modelarc does not say)."""
    cli = bench_run.cli
    home = work / f"home-{mode}"
    shutil.rmtree(home, ignore_errors=True)
    cli(home, "init")
    cli(home, "push", str(folders["base"][dtype]), BASE_REF, "--no-progress", "--json")
    members = [m for m in folders if m != "base"]
    for m in members:
        ref = f"bench/minilm-{m}:v1"
        before = object_files(home / "store")
        parent = ["--parent", BASE_REF, "--relation", "finetune"] if mode == "delta" else []
        os.sync()
        started = time.perf_counter()
        result = cli(home, "push", str(folders[m][dtype]), ref, *parent, "--no-progress", "--json")
        times.add("push", m, time.perf_counter() - started)
        added = {k: v for k, v in object_files(home / "store").items() if k not in before}
        got = Stored(sum(added.values()), reported=result["stored_bytes_added"])
        chunks = tensor_chunk_ids(home, ref) & set(added)
        got.tensors = sum(added[c] for c in chunks)
        got.codecs = codecs_of(home, chunks)
        if first:
            stored[m] = got
        elif got.tensors != stored[m].tensors:  # files also holds manifest objects, which carry a timestamp
            raise RuntimeError(
                f"{mode} push of {m} ({dtype}) stored a different number of bytes than round 1"
            )
    saved = None
    if first and mode == "delta":
        # what the archive says deltas saved, when this modelarc reports it (`stats --json`, "deltas")
        saved = cli(home, "stats", "--json").get("deltas")
        print(f"    modelarc stats --json, deltas: {json.dumps(saved)}", flush=True)
    for m in members:
        dest = work / "pulled"
        shutil.rmtree(dest, ignore_errors=True)
        os.sync()
        started = time.perf_counter()
        cli(home, "pull", f"bench/minilm-{m}:v1", str(dest), "--no-progress")
        times.add("pull", m, time.perf_counter() - started)
        if first and bench_run.tree_digests(dest) != bench_run.tree_digests(folders[m][dtype]):
            raise RuntimeError(f"{mode} pull of {m} ({dtype}) differs from the source folder")
        shutil.rmtree(dest)
    shutil.rmtree(home)
    return saved


# --------------------------------------------------------------------------- store-level mode
FLOATS = {"BF16", "F16", "F32"}


def chunks_of(folder: bench_run.Folder) -> list[tuple[tuple[str, int], str, int, bytes]]:
    """((tensor, offset), dtype, tensor length, chunk bytes) for every chunk ingest would make."""
    from modelarc.archive.ingest import CHUNK_SIZE

    return [
        ((t.name, at), t.dtype, len(t.data), t.data[at : at + CHUNK_SIZE])
        for t in folder.tensors
        for at in range(0, len(t.data), CHUNK_SIZE)
    ]


def store_round(
    base: bench_run.Folder,
    fine: dict[str, bench_run.Folder],
    mode: str,
    work: Path,
    first: bool,
    stored: dict[str, Stored],
    times: Timings,
) -> None:
    """One fresh store holding the base's chunks; each fine-tune's chunks put (as deltas in "delta" mode), then
    read back."""
    from modelarc.storage.store import ObjectStore

    root = work / f"store-{mode}"
    shutil.rmtree(root, ignore_errors=True)
    store = ObjectStore.open_local(root)
    bases = {key: (store.put(data, dtype_hint=dtype).id, dtype, n) for key, dtype, n, data in chunks_of(base)}
    for m, folder in fine.items():
        got = Stored()
        ids = []
        chunks = chunks_of(folder)
        started = time.perf_counter()
        for key, dtype, n, data in chunks:
            b = bases.get(key)
            if mode == "delta" and dtype in FLOATS and b is not None and b[1:] == (dtype, n):
                r = store.put_delta(data, b[0], dtype_hint=dtype)
            else:
                r = store.put(data, dtype_hint=dtype)
            ids.append(r.id)
            if r.added:
                got.tensors += r.stored_size
                got.codecs[r.codec] = got.codecs.get(r.codec, 0) + 1
        times.add("push", m, time.perf_counter() - started)
        got.files = got.tensors
        started = time.perf_counter()
        back = [store.get(oid) for oid in ids]
        times.add("pull", m, time.perf_counter() - started)
        if first and any(got_back != c[3] for got_back, c in zip(back, chunks, strict=True)):
            raise RuntimeError(f"{mode} store gave back other bytes for {m}")
        del back
        if first:
            stored[m] = got
        elif got.tensors != stored[m].tensors:
            raise RuntimeError(f"{mode} store of {m} stored a different number of bytes than round 1")
    shutil.rmtree(root)


# --------------------------------------------------------------------------- report
def rows_for(
    dtype: str,
    zipnn: dict[str, int],
    stored: dict[str, dict[str, Stored]],
    times: dict[str, Timings],
    store_level: bool,
) -> list[bench_run.Row]:
    mb, rows = bench_run.mb, []
    Row = bench_run.Row
    delta, alone = stored["delta"], stored["independent"]
    for m, zn in zipnn.items():
        label = f"{dtype} {m}"
        d, a = delta[m], alone[m]
        rows += [
            Row(
                label,
                "stored, tensors",
                f"{mb(d.tensors)} (delta objects {d.deltas})",
                f"ZipNN {mb(zn)}",
                d.tensors / zn,
                TARGETS["stored_tensors_vs_zipnn"],
            ),
            Row(
                label,
                "stored, tensors, no --parent" if not store_level else "stored, tensors, put alone",
                f"{mb(a.tensors)}",
                f"ZipNN {mb(zn)}",
                a.tensors / zn,
                None,
            ),
        ]
        if not store_level:
            rows.append(
                Row(
                    label,
                    "stored, whole push",
                    f"{mb(d.files)} (--json says {mb(d.reported or 0)})",
                    f"no --parent {mb(a.files)}",
                    d.files / a.files if a.files else None,
                    None,
                )
            )
        for what in ("push", "pull"):
            ours = statistics.median(getattr(times["delta"], what)[m])
            theirs = statistics.median(getattr(times["independent"], what)[m])
            name = what if not store_level else {"push": "put (push)", "pull": "get (pull)"}[what]
            rows.append(
                Row(label, name, f"{ours:.3f} s", f"alone {theirs:.3f} s", ours / theirs, TARGETS[what])
            )
    total_d = sum(delta[m].tensors for m in zipnn)
    total_z = sum(zipnn.values())
    rows.append(
        Row(
            f"{dtype} all",
            "stored, tensors",
            mb(total_d),
            f"ZipNN {mb(total_z)}",
            total_d / total_z,
            TARGETS["stored_tensors_vs_zipnn"],
        )
    )
    return rows


def load() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--store-level", action="store_true", help="ObjectStore.put_delta in this process, no CLI"
    )
    ap.add_argument("--dtypes", nargs="+", default=["BF16", "F32"], choices=sorted(TORCH_DTYPES))
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 5e-5, 2e-4], help="one fine-tune per rate")
    ap.add_argument("--steps", type=int, default=30, help="AdamW steps per fine-tune")
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds; the median is reported")
    ap.add_argument("--cache", type=Path, default=bench_models.DEFAULT_CACHE, help="where the family is kept")
    ap.add_argument("--out", type=Path, default=bench_run.RESULTS_DIR)
    args = ap.parse_args(argv)
    os.environ.pop("MODELARC_DATABASE_URL", None)  # SQLite inside each fresh home

    env = bench_run.environment()
    mode_name = "store level (ObjectStore.put_delta)" if args.store_level else "CLI (modelarc push --parent)"
    print(f"modelarc family bench, {mode_name}  {env['when']}  git {env['git']}  load {load()}", flush=True)
    import modelarc.storage

    # which modelarc runs: PYTHONPATH may point at another checkout than this bench's
    print(f"modelarc.storage from {Path(modelarc.storage.__file__).parent}", flush=True)
    folders = make_family(args.cache, args.steps, args.lrs, args.dtypes)
    work = args.cache / "family-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows: list[bench_run.Row] = []
    doc: dict[str, Any] = {
        "environment": env,
        "mode": mode_name,
        "repeat": args.repeat,
        "targets": TARGETS,
        "steps": args.steps,
        "lrs": args.lrs,
        "dtypes": {},
    }
    started = time.perf_counter()
    for dtype in args.dtypes:
        fine = {m: by_dtype[dtype] for m, by_dtype in folders.items() if m != "base"}
        print(f"\n[{dtype}] ZipNN of each fine-tune's tensors ...", flush=True)
        read = {m: bench_run.load_folder(p) for m, p in fine.items()}
        zipnn = {m: bench_run.zipnn_sizes(f)["tensor_bytes"] for m, f in read.items()}
        base = bench_run.load_folder(folders["base"][dtype])
        stored: dict[str, dict[str, Stored]] = {mode: {} for mode in MODES}
        times = {mode: Timings() for mode in MODES}
        saved = None  # `stats --json` "deltas" of the delta home after round 1 (CLI mode)
        for rnd in range(args.repeat):
            order = MODES if rnd % 2 == 0 else MODES[::-1]
            print(f"  round {rnd + 1}/{args.repeat}: {' then '.join(order)}", flush=True)
            for mode in order:
                if args.store_level:
                    store_round(base, read, mode, work, rnd == 0, stored[mode], times[mode])
                else:
                    said = cli_round(folders, dtype, mode, work, rnd == 0, stored[mode], times[mode])
                    saved = said if said is not None else saved
        rows += rows_for(dtype, zipnn, stored, times, args.store_level)
        doc["dtypes"][dtype] = {
            "zipnn_tensor_bytes": zipnn,
            "stored": {mode: {m: vars(s) for m, s in by.items()} for mode, by in stored.items()},
            "stats_deltas": saved,
            "seconds": {mode: vars(t) for mode, t in times.items()},
        }
        del read, base
    shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nmedian of {args.repeat} rounds; ratio = delta / baseline, lower is better "
        f"(total {time.perf_counter() - started:.0f} s, load {load()})\n"
    )
    table = bench_run.render(rows, markdown=False)
    print(table)
    doc["rows"] = [vars(r) | {"verdict": r.verdict} for r in rows]
    stem = "family-store" if args.store_level else "family"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(
        f"# modelarc family bench, {mode_name}, {env['when']} (git {env['git']})\n\n"
        + bench_run.render(rows, markdown=True)
        + "\n"
    )
    print(f"\nwrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
