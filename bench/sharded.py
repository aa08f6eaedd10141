"""A multi-GB sharded model (Hugging Face layout) through push, pull, re-push and load, with peak memory.

    python bench/sharded.py                 # a ~1 GB and a ~4 GB model of the same family, BF16
    python bench/sharded.py --sizes 4       # only the 4 GB one
    python bench/sharded.py --no-load       # skip the load rows (they hold the whole model in memory)

The model is the generated Llama-shaped family of bench/models.py, written as ``model-0000k-of-0000n.safetensors``
shards of at most ``--shard-gb`` plus ``model.safetensors.index.json``, cached under /tmp/modelarc-bench. Each step
runs as its own process (the ``modelarc`` CLI, or ``python -c`` for loading), and its peak resident memory is read
from the kernel (``wait4``'s ru_maxrss) for that process alone. The claim under test: push, pull and re-push hold
a bounded number of chunks at once, so their peak RSS is the same for the 1 GB and the 4 GB model; loading needs the
model's own bytes and should need little beyond them. Speed rows are ratios against baselines run beside them.
Benchmarks, not tests: a MISS never fails the process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import models as bench_models  # noqa: E402

MODELARC = Path(sys.executable).with_name("modelarc")
REF = "bench/sharded:v1"
# (hidden, intermediate, layers) giving roughly 1 GB and 4 GB of BF16 weights with the Llama vocab of 32000
SHAPES = {
    1: bench_models.LlamaShape(hidden=2048, intermediate=5504, layers=10, heads=16, kv_heads=4, seed=11),
    4: bench_models.LlamaShape(hidden=2560, intermediate=6912, layers=30, heads=20, kv_heads=4, seed=12),
}
TARGETS = {"push": 2.0, "pull": 1.5, "repush": 1.3, "load": 1.3}


def sharded_model(shape: bench_models.LlamaShape, shard_bytes: int, cache: Path) -> Path:
    """Write the model shard by shard (one shard's tensors in memory at a time), cached like bench/models.py."""

    def write(folder: Path) -> None:
        import numpy as np
        import torch
        from safetensors.torch import save_file

        root = np.random.default_rng(shape.seed)
        gains = 0.6 + 0.6 * root.random(shape.layers)
        shapes = shape.tensor_shapes()
        groups: list[list[int]] = [[]]
        size = 0
        for idx, (_name, dims) in enumerate(shapes):
            nbytes = 2 * int(np.prod(dims))
            if groups[-1] and size + nbytes > shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(idx)
            size += nbytes
        weight_map: dict[str, str] = {}
        for k, group in enumerate(groups, start=1):
            file = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
            tensors = {}
            for idx in group:
                name, dims = shapes[idx]
                rng = np.random.default_rng([shape.seed, idx])
                layer = int(name.split(".")[2]) if name.startswith("model.layers.") else 0
                bits = bench_models.bf16_bits(bench_models._weights(name, dims, rng, float(gains[layer])))
                tensors[name] = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)
                weight_map[name] = file
            save_file(tensors, str(folder / file), metadata={"format": "pt"})
            del tensors
        total = 2 * shape.parameter_count()
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        bench_models._write_side_files(folder, shape, "bfloat16")

    name = shape.cache_name("BF16") + f"-sharded{shard_bytes >> 20}m"
    return bench_models._write_folder_atomically(cache / name, write)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, the process's own peak RSS in bytes, and its stdout.

    The peak comes from GNU time, which starts the process from its own small address space: Linux carries a
    process's peak RSS across exec, so a child started straight from this (large) benchmark process would
    report this process's peak instead of its own.
    """
    os.sync()
    with tempfile.NamedTemporaryFile("r") as rss:
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv], env=env, capture_output=True, text=True
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
        peak_kb = int(rss.read().split()[-1])
    return elapsed, peak_kb * 1024, done.stdout


LOAD_ARCHIVE = """
import sys, torch, modelarc
model = modelarc.load_model(sys.argv[1], device="cpu", dtype="bfloat16")
with torch.no_grad():
    model(torch.tensor([[1, 2, 3, 4]]))
"""
LOAD_FOLDER = """
import sys, torch, transformers
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.bfloat16)
with torch.no_grad():
    model(torch.tensor([[1, 2, 3, 4]]))
"""


def _warm(files: Iterable[Path]) -> None:
    for p in files:
        with open(p, "rb") as fh:
            while fh.read(64 << 20):
                pass


def measure(size_gb: int, shard_bytes: int, cache: Path, work: Path, load: bool) -> list[tuple[str, ...]]:
    shape = SHAPES[size_gb]
    print(f"[{size_gb} GB] preparing {shape.cache_name('BF16')} ...", flush=True)
    folder = sharded_model(shape, shard_bytes, cache)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    nbytes = sum(p.stat().st_size for p in files)
    shards = sum(1 for p in files if p.suffix == ".safetensors")
    _warm(files)  # warm the page cache, as the baselines will find it
    home, dest, copy = work / "home", work / "pulled", work / "copy"
    for d in (home, dest, copy):
        shutil.rmtree(d, ignore_errors=True)
    env = {**os.environ, "MODELARC_HOME": str(home)}
    env.pop("MODELARC_DATABASE_URL", None)
    rows: list[tuple[str, ...]] = []
    label = f"{size_gb} GB ({nbytes / 1e9:.2f} GB, {shards} shards)"
    # re-push: files unchanged since the push are taken from the push index unread; --rehash reads them all
    print(f"[{size_gb} GB] {label}: cp+sync, push, re-push, re-push --rehash, sha256, pull", flush=True)

    cp_s, cp_rss, _ = timed(["sh", "-c", f"cp -r '{folder}' '{copy}' && sync"])
    shutil.rmtree(copy)
    timed([str(MODELARC), "init"], env)
    push_s, push_rss, _ = timed([str(MODELARC), "push", str(folder), REF, "--no-progress"], env)
    repush_s, repush_rss, _ = timed([str(MODELARC), "push", str(folder), REF, "--no-progress"], env)
    rehash_s, rehash_rss, _ = timed([str(MODELARC), "push", str(folder), REF, "--no-progress", "--rehash"], env)
    started = time.perf_counter()
    for p in files:
        with open(p, "rb") as fh:
            hashlib.file_digest(fh, "sha256")
    sha_s = time.perf_counter() - started
    # the store warm too, as the page cache has the source for cp: the push writes its objects with O_DIRECT, so
    # they are not in the page cache afterwards as buffered writes used to leave them
    _warm(p for p in (home / "store").rglob("*") if p.is_file())
    pull_s, pull_rss, _ = timed([str(MODELARC), "pull", REF, str(dest), "--no-progress"], env)
    shutil.rmtree(dest)
    rows += [
        (
            label,
            "push",
            f"{push_s:.2f} s",
            f"cp+sync {cp_s:.2f} s",
            f"{push_s / cp_s:.2f}x",
            "<= 2.0x",
            _verdict(push_s / cp_s, TARGETS["push"]),
            _mb(push_rss),
        ),
        (
            label,
            "pull",
            f"{pull_s:.2f} s",
            f"cp+sync {cp_s:.2f} s",
            f"{pull_s / cp_s:.2f}x",
            "<= 1.5x",
            _verdict(pull_s / cp_s, TARGETS["pull"]),
            _mb(pull_rss),
        ),
        (
            label,
            "re-push",
            f"{repush_s:.2f} s",
            f"sha256 {sha_s:.2f} s",
            f"{repush_s / sha_s:.2f}x",
            "<= 1.3x",
            _verdict(repush_s / sha_s, TARGETS["repush"]),
            _mb(repush_rss),
        ),
        (
            label,
            "re-push --rehash",
            f"{rehash_s:.2f} s",
            f"sha256 {sha_s:.2f} s",
            f"{rehash_s / sha_s:.2f}x",
            "<= 1.3x",
            _verdict(rehash_s / sha_s, TARGETS["repush"]),
            _mb(rehash_rss),
        ),
    ]
    if load:
        print(f"[{size_gb} GB] load from the archive, from_pretrained from the folder", flush=True)
        hf_s, hf_rss, _ = timed([sys.executable, "-c", LOAD_FOLDER, str(folder)])
        arc_s, arc_rss, _ = timed([sys.executable, "-c", LOAD_ARCHIVE, REF], env)
        rows.append(
            (
                label,
                "load + forward",
                f"{arc_s:.2f} s",
                f"from_pretrained {hf_s:.2f} s",
                f"{arc_s / hf_s:.2f}x",
                "<= 1.3x",
                _verdict(arc_s / hf_s, TARGETS["load"]),
                f"{_mb(arc_rss)} (hf {_mb(hf_rss)})",
            )
        )
    shutil.rmtree(home)
    return rows


def _verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "MISS"


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4], choices=sorted(SHAPES))
    p.add_argument("--shard-gb", type=float, default=0.5)
    p.add_argument("--no-load", action="store_true")
    p.add_argument("--cache", type=Path, default=bench_models.DEFAULT_CACHE)
    p.add_argument("--work", type=Path, default=Path("/tmp/modelarc-bench-sharded"))
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, ...]] = []
    for size in args.sizes:
        rows += measure(size, int(args.shard_gb * (1 << 30)), args.cache, args.work, not args.no_load)
    head = ("model", "step", "modelarc", "baseline", "ratio", "target", "", "peak RSS")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    print()
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    from project_bytecode import compile_project  # beside this file

    compile_project()  # first: each command timed would otherwise recompile every stale module
    raise SystemExit(main())
