"""``make bench``: push, pull, stored size and unchanged re-push, each as a ratio against a baseline run beside it.

Models: the real all-MiniLM-L6-v2 (FP32), a generated Llama-shaped BF16 model (bench/models.py, cached in
``/tmp/modelarc-bench``) and its exact FP32 upcast. For each:

    push               `modelarc push` into a fresh home       vs  cp -r + sync of the same folder
    pull               `modelarc pull` into a fresh folder     vs  cp -r + sync
    stored, tensors    stored bytes of the tensor objects      vs  ZipNN 0.5.4 (bytes mode) per tensor; zstd -1
    stored, push       stored_bytes_added of the first push    vs  ZipNN per tensor + zstd -1 of everything else
    re-push unchanged  second push of the same folder          vs  hashlib sha256 of every file (read + hash)
    re-push --rehash   the same, reading every file regardless of the push index (archive/push_index.py)

push, re-push and pull run the CLI as a process, as a user does: interpreter start-up and imports are included
(with whatever extras this venv has, e.g. `make demo`'s dev extras).

Page caches are warm for both sides (every file is read once first), dirty pages are flushed before each timed
step, timings are the median of ``--repeat`` runs interleaved with their baselines. These are benchmarks, not
tests: a MISS never fails the process; an exception from modelarc does (after the other models have run).

    .venv/bin/python bench/run.py                      # all three models
    .venv/bin/python bench/run.py --models bf16 --repeat 1
    .venv/bin/python bench/run.py --profile bf16       # where push and pull spend their time (cProfile)
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/ is not a package; models.py sits beside this file

import models as bench_models  # noqa: E402
import zstandard  # noqa: E402

RESULTS_DIR = BENCH_DIR / "results"
REF = "bench/model:v1"

# (ratio must be <= this) per row; rows without a target are printed for context.
TARGETS = {
    "push": 2.0,
    "pull": 1.5,
    "stored_tensors_vs_zipnn": 1.0,
    "stored_push_vs_zipnn": 1.0,
    "repush": 1.3,
}

MODELS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "mini": ("all-MiniLM-L6-v2 FP32 (real)", lambda cache: bench_models.MINILM_DIR),
    "bf16": ("Llama-like BF16 (generated)", lambda cache: bench_models.llama_bf16(cache=cache)),
    "fp32": ("same, FP32 upcast from BF16", lambda cache: bench_models.llama_fp32_upcast(cache=cache)),
}

ZIPNN_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


# --------------------------------------------------------------------------- the folder under test
@dataclass
class Tensor:
    name: str
    dtype: str
    data: bytes


@dataclass
class Folder:
    path: Path
    files: list[Path]
    logical_bytes: int
    tensors: list[Tensor] = field(default_factory=list)
    other: list[bytes] = field(default_factory=list)  # safetensors headers and non-safetensors files

    @property
    def tensor_bytes(self) -> int:
        return sum(len(t.data) for t in self.tensors)


def load_folder(path: Path) -> Folder:
    """Every file's bytes, split into tensors and the rest. Reading them also warms the page cache."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    folder = Folder(path, files, sum(p.stat().st_size for p in files))
    for p in files:
        data = p.read_bytes()
        if p.suffix != ".safetensors":
            folder.other.append(data)
            continue
        (n,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8 : 8 + n])
        folder.other.append(data[: 8 + n])
        base = 8 + n
        header.pop("__metadata__", None)
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            begin, end = info["data_offsets"]
            folder.tensors.append(Tensor(name, info["dtype"], data[base + begin : base + end]))
    return folder


# --------------------------------------------------------------------------- baselines
def zstd1(data: bytes) -> int:
    return len(zstandard.ZstdCompressor(level=1).compress(data))


def zipnn_sizes(folder: Folder) -> dict[str, Any]:
    """ZipNN bytes mode per float tensor (zstd -1 for integer tensors), each checked to round-trip."""
    import zipnn

    coders: dict[str, Any] = {}
    total = 0
    encode_s = decode_s = 0.0
    float_bytes = 0
    for t in folder.tensors:
        kind = ZIPNN_DTYPES.get(t.dtype)
        if kind is None:
            total += zstd1(t.data)
            continue
        z = coders.setdefault(kind, zipnn.ZipNN(input_format="byte", bytearray_dtype=kind))
        started = time.perf_counter()
        packed = z.compress(bytearray(t.data))  # zipnn mutates its input: always hand it a fresh copy
        encode_s += time.perf_counter() - started
        started = time.perf_counter()
        back = z.decompress(packed)
        decode_s += time.perf_counter() - started
        if bytes(back) != t.data:
            raise RuntimeError(f"zipnn did not round-trip tensor {t.name} ({t.dtype})")
        total += len(packed)
        float_bytes += len(t.data)
    return {
        "tensor_bytes": total,
        "encode_mb_s": float_bytes / encode_s / 1e6 if encode_s else None,
        "decode_mb_s": float_bytes / decode_s / 1e6 if decode_s else None,
    }


def cp_sync(src: Path, dst: Path) -> float:
    shutil.rmtree(dst, ignore_errors=True)
    os.sync()
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    os.sync()
    elapsed = time.perf_counter() - started
    shutil.rmtree(dst)
    return elapsed


def sha256_files(files: list[Path]) -> float:
    started = time.perf_counter()
    for p in files:
        with open(p, "rb") as fh:
            hashlib.file_digest(fh, "sha256")
    return time.perf_counter() - started


def tree_digests(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                out[p.relative_to(root).as_posix()] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out


# --------------------------------------------------------------------------- modelarc side
MODELARC = Path(sys.executable).with_name("modelarc")  # the console script of this venv


def cli(home: Path, *args: str) -> Any:
    """Run ``modelarc ARGS`` as a process with MODELARC_HOME=home; its JSON output when it printed JSON."""
    env = {**os.environ, "MODELARC_HOME": str(home)}
    env.pop("MODELARC_DATABASE_URL", None)
    done = subprocess.run([str(MODELARC), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"modelarc {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    text = done.stdout.strip()
    return json.loads(text) if text.startswith("{") else text


def tensor_object_bytes(archive: Any) -> tuple[int, int]:
    """(stored bytes, raw bytes) of the distinct objects that hold tensor data in the snapshot."""
    from modelarc.storage import ObjectId

    _ref, snap = archive.resolve(REF)
    manifest = archive.manifest(snap)
    seen: set[str] = set()
    stored = raw = 0
    for entry in manifest.files:
        for part in entry.parts:
            if part.kind != "tensor":
                continue
            for chunk in part.chunks:
                if chunk.id in seen:
                    continue
                seen.add(chunk.id)
                info = archive.store.stat(ObjectId(chunk.id))
                stored += info.stored_size
                raw += info.raw_size
    return stored, raw


def measure(key: str, folder: Folder, work: Path, repeat: int) -> dict[str, Any]:
    from modelarc.archive.repository import Archive

    out: dict[str, Any] = {"model": key, "label": MODELS[key][0], "path": str(folder.path)}
    out["logical_bytes"] = folder.logical_bytes
    out["tensor_raw_bytes"] = folder.tensor_bytes
    out["dtypes"] = sorted({t.dtype for t in folder.tensors})

    print(f"  baselines: zipnn and zstd -1 on {len(folder.tensors)} tensors ...", flush=True)
    zn = zipnn_sizes(folder)
    other_zstd = sum(zstd1(b) for b in folder.other)
    out["baseline_sizes"] = {
        "zipnn_tensors": zn["tensor_bytes"],
        "zstd1_tensors": sum(zstd1(t.data) for t in folder.tensors),
        "zstd1_other": other_zstd,
        "zipnn_encode_mb_s": zn["encode_mb_s"],
        "zipnn_decode_mb_s": zn["decode_mb_s"],
    }

    samples: dict[str, list[float]] = {k: [] for k in ("cp", "push", "pull", "sha256", "repush", "rehash")}
    repush_stored: list[int] = []
    repush_unread: list[int] = []
    for rep in range(repeat):
        print(f"  run {rep + 1}/{repeat}: cp+sync, push, re-push, re-push --rehash, sha256, pull", flush=True)
        samples["cp"].append(cp_sync(folder.path, work / "cp"))

        home = work / "home"
        shutil.rmtree(home, ignore_errors=True)
        cli(home, "init")
        os.sync()
        started = time.perf_counter()
        first = cli(home, "push", str(folder.path), REF, "--no-progress", "--json")
        samples["push"].append(time.perf_counter() - started)
        archive = Archive.open(home)
        try:
            if rep == 0:
                out["stored_bytes_added"] = first["stored_bytes_added"]
                out["tensor_objects_stored"], out["tensor_objects_raw"] = tensor_object_bytes(archive)
            elif first["stored_bytes_added"] != out["stored_bytes_added"]:
                raise RuntimeError("a fresh push stored a different number of bytes than the first one")
        finally:
            archive.close()

        os.sync()
        started = time.perf_counter()
        again = cli(home, "push", str(folder.path), REF, "--no-progress", "--json")
        samples["repush"].append(time.perf_counter() - started)
        repush_stored.append(again["stored_bytes_added"])
        repush_unread.append(again["unchanged_files"])

        os.sync()
        started = time.perf_counter()
        forced = cli(home, "push", str(folder.path), REF, "--no-progress", "--json", "--rehash")
        samples["rehash"].append(time.perf_counter() - started)
        repush_stored.append(forced["stored_bytes_added"])

        samples["sha256"].append(sha256_files(folder.files))

        dest = work / "pulled"
        shutil.rmtree(dest, ignore_errors=True)
        os.sync()
        started = time.perf_counter()
        cli(home, "pull", REF, str(dest), "--no-progress")
        samples["pull"].append(time.perf_counter() - started)
        if rep == 0 and tree_digests(dest) != tree_digests(folder.path):
            raise RuntimeError("pulled folder differs from the source")
        shutil.rmtree(dest)
        shutil.rmtree(home, ignore_errors=True)

    out["samples_s"] = samples
    out["median_s"] = {k: statistics.median(v) for k, v in samples.items()}
    out["repush_stored_bytes"] = repush_stored
    out["repush_unread_files"] = repush_unread
    out["files"] = len(folder.files)
    return out


# --------------------------------------------------------------------------- report
@dataclass
class Row:
    model: str
    metric: str
    ours: str
    baseline: str
    ratio: float | None
    target: float | None
    extra_ok: bool = True  # a condition beside the ratio (re-push must store 0 bytes)
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None or self.ratio is None:
            return ""
        return "PASS" if self.ratio <= self.target and self.extra_ok else "MISS"


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def secs(s: float, nbytes: int) -> str:
    return f"{s:.3f} s ({nbytes / s / 1e9:.2f} GB/s)" if s > 0 else f"{s:.3f} s"


def rows_for(r: dict[str, Any]) -> list[Row]:
    m, med, b = r["model"], r["median_s"], r["baseline_sizes"]
    n = r["logical_bytes"]
    zipnn_all = b["zipnn_tensors"] + b["zstd1_other"]
    zero = all(x == 0 for x in r["repush_stored_bytes"])
    traw = r["tensor_raw_bytes"]

    def repush_row(metric: str, key: str, note: str) -> Row:
        return Row(
            m,
            metric,
            f"{secs(med[key], n)}, stored {max(r['repush_stored_bytes'])} B",
            "sha256 " + secs(med["sha256"], n),
            med[key] / med["sha256"],
            TARGETS["repush"],
            extra_ok=zero,
            note=note + ("" if zero else "; stored bytes on an unchanged push"),
        )

    return [
        Row(
            m,
            "push",
            secs(med["push"], n),
            "cp+sync " + secs(med["cp"], n),
            med["push"] / med["cp"],
            TARGETS["push"],
        ),
        Row(
            m,
            "pull",
            secs(med["pull"], n),
            "cp+sync " + secs(med["cp"], n),
            med["pull"] / med["cp"],
            TARGETS["pull"],
        ),
        Row(
            m,
            "stored, tensor objects",
            f"{mb(r['tensor_objects_stored'])} ({r['tensor_objects_stored'] / traw:.4f} of raw)",
            f"ZipNN {mb(b['zipnn_tensors'])} ({b['zipnn_tensors'] / traw:.4f})",
            r["tensor_objects_stored"] / b["zipnn_tensors"],
            TARGETS["stored_tensors_vs_zipnn"],
        ),
        Row(
            m,
            "stored, tensor objects",
            f"{mb(r['tensor_objects_stored'])}",
            f"zstd -1 {mb(b['zstd1_tensors'])} ({b['zstd1_tensors'] / traw:.4f})",
            r["tensor_objects_stored"] / b["zstd1_tensors"],
            None,
        ),
        Row(
            m,
            "stored, whole push",
            f"{mb(r['stored_bytes_added'])} ({r['stored_bytes_added'] / n:.4f} of raw)",
            f"ZipNN+zstd-1 rest {mb(zipnn_all)} ({zipnn_all / n:.4f})",
            r["stored_bytes_added"] / zipnn_all,
            TARGETS["stored_push_vs_zipnn"],
        ),
        repush_row(
            "re-push unchanged",
            "repush",
            f"{min(r['repush_unread_files'])} of {r['files']} files taken from the push index",
        ),
        repush_row("re-push unchanged --rehash", "rehash", "every file read and hashed"),
    ]


def render(rows: list[Row], markdown: bool) -> str:
    head = ["model", "metric", "modelarc", "baseline", "ratio", "target", ""]
    body = [
        [
            r.model,
            r.metric,
            r.ours,
            r.baseline,
            f"{r.ratio:.3f}x" if r.ratio is not None else "-",
            f"<= {r.target:.2f}x" if r.target is not None else "",
            r.verdict + (f" ({r.note})" if r.note else ""),
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(c[i]) for c in [head, *body]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*cells) for cells in body]
    return "\n".join(line.rstrip() for line in lines)


def environment() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for dist in ("modelarc", "zipnn", "zstandard", "numpy", "safetensors", "torch", "sqlalchemy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "kernel": platform.release(),
        "git": commit + ("+dirty" if dirty else ""),
        "versions": versions,
    }


# --------------------------------------------------------------------------- profiling
class ThreadProfiles:
    """cProfile for the main thread and for every thread-pool work item (cProfile alone sees only its own thread)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.local = threading.local()
        self.lock = threading.Lock()

    def _profile(self) -> cProfile.Profile:
        prof = getattr(self.local, "prof", None)
        if prof is None:
            prof = cProfile.Profile()
            self.local.prof = prof
            with self.lock:
                self.profiles.append(prof)
        return prof

    @contextmanager
    def active(self) -> Iterator[None]:
        from concurrent.futures import thread as cf_thread

        original = cf_thread._WorkItem.run
        profiles = self

        def run(item: Any) -> None:
            prof = profiles._profile()
            prof.enable()
            try:
                original(item)
            finally:
                prof.disable()

        cf_thread._WorkItem.run = run  # type: ignore[method-assign]
        main = self._profile()
        main.enable()
        try:
            yield
        finally:
            main.disable()
            cf_thread._WorkItem.run = original  # type: ignore[method-assign]

    def stats(self) -> pstats.Stats:
        stream = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=stream)
        for prof in self.profiles[1:]:
            stats.add(prof)
        return stats


def print_profile(title: str, wall: float, profiles: ThreadProfiles, top: int) -> None:
    stats = profiles.stats()
    print(
        f"\n=== {title}: {wall:.2f} s wall; thread-seconds below sum over {len(profiles.profiles)} threads ==="
    )
    own_code = str(BENCH_DIR.parent)
    entries = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = (
            func if filename == "~" else f"{Path(filename).parent.name}/{Path(filename).name}:{line}({func})"
        )
        ours = filename.startswith(own_code) and not filename.startswith(str(BENCH_DIR))
        entries.append((tt, ct, nc, where, ours))
    print(f"{'own s':>8} {'cum s':>8} {'calls':>8}  function, by own time (own time excludes callees)")
    for tt, ct, nc, where, _ours in sorted(entries, reverse=True)[:top]:
        print(f"{tt:8.3f} {ct:8.3f} {nc:8d}  {where}")
    print(f"{'':8} {'cum s':>8} {'calls':>8}  modelarc functions by cumulative time (nested: these overlap)")
    for _tt, ct, nc, where, ours in sorted(entries, key=lambda e: -e[1])[: top * 4]:
        if ours and ct >= 0.02:
            print(f"{'':8} {ct:8.3f} {nc:8d}  {where}")


def profile(key: str, cache: Path, work: Path, top: int) -> None:
    from modelarc.archive.repository import Archive

    folder = load_folder(MODELS[key][1](cache))
    del folder.tensors  # only the page-cache warming was wanted
    home = work / "profile-home"
    dest = work / "profile-pulled"
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    archive, _ = Archive.init(home)
    try:
        for what, call in (
            ("push", lambda: archive.push(folder.path, REF)),
            ("re-push (unchanged)", lambda: archive.push(folder.path, REF)),
            ("pull", lambda: archive.pull(REF, dest)),
        ):
            os.sync()
            profiles = ThreadProfiles()
            started = time.perf_counter()
            with profiles.active():
                call()
            print_profile(
                f"{what} of {MODELS[key][0]}, {mb(folder.logical_bytes)}",
                time.perf_counter() - started,
                profiles,
                top,
            )
    finally:
        archive.close()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(dest, ignore_errors=True)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default="mini,bf16,fp32", help="comma-separated subset of: " + ", ".join(MODELS)
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs per measurement; the median is reported"
    )
    parser.add_argument(
        "--cache", type=Path, default=bench_models.DEFAULT_CACHE, help="where generated models live"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where latest.json and latest.md go")
    parser.add_argument(
        "--profile", metavar="MODEL", help="instead of the benchmark, cProfile push/pull of MODEL"
    )
    parser.add_argument("--top", type=int, default=25, help="rows per profile")
    args = parser.parse_args(argv)
    os.environ.pop("MODELARC_DATABASE_URL", None)  # SQLite inside each fresh home

    keys = [k.strip() for k in ([args.profile] if args.profile else args.models.split(",")) if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    work = args.cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    env = environment()
    print(
        f"modelarc bench  {env['when']}  git {env['git']}\n"
        f"machine: {env['cpu']} ({env['machine']}), {env['cores']} cores ({env['usable_cores']} usable), "
        f"kernel {env['kernel']}\n"
        "versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        flush=True,
    )
    if args.profile:
        profile(args.profile, args.cache, work, args.top)
        shutil.rmtree(work, ignore_errors=True)
        return 0

    results: list[dict[str, Any]] = []
    failed = []
    started = time.perf_counter()
    for key in keys:
        print(f"\n[{key}] {MODELS[key][0]}: preparing", flush=True)
        try:
            folder = load_folder(MODELS[key][1](args.cache))
            print(f"  {folder.path} ({mb(folder.logical_bytes)}, {len(folder.tensors)} tensors)", flush=True)
            results.append(measure(key, folder, work, args.repeat))
        except Exception as exc:  # report, keep measuring the other models, fail at the end
            traceback.print_exc()
            failed.append({"model": key, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            folder = None  # type: ignore[assignment]  # free the model bytes before the next one
    shutil.rmtree(work, ignore_errors=True)

    rows = [row for r in results for row in rows_for(r)]
    print(
        f"\nmedian of {args.repeat} runs; ratio = modelarc / baseline; lower is better "
        f"(total {time.perf_counter() - started:.0f} s)\n"
    )
    print(render(rows, markdown=False))
    for f in failed:
        print(f"ERROR {f['model']}: {f['error']}")

    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "environment": env,
        "repeat": args.repeat,
        "targets": TARGETS,
        "models": results,
        "errors": failed,
        "rows": [
            {
                "model": r.model,
                "metric": r.metric,
                "modelarc": r.ours,
                "baseline": r.baseline,
                "ratio": r.ratio,
                "target": r.target,
                "verdict": r.verdict,
            }
            for r in rows
        ],
    }
    (args.out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = [
        f"# modelarc bench, {env['when']} (git {env['git']})",
        "",
        f"{env['cpu']}, {env['cores']} cores; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "",
        f"Median of {args.repeat} runs; ratio = modelarc / baseline, lower is better.",
        "",
        render(rows, markdown=True),
        "",
    ] + [f"- ERROR {f['model']}: {f['error']}" for f in failed]
    (args.out / "latest.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {args.out / 'latest.json'} and {args.out / 'latest.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    from project_bytecode import compile_project  # beside this file

    compile_project()  # first: each command timed would otherwise recompile every stale module
    sys.exit(main())
