"""How well a push's data path uses the two cores, and what does not change that (issue 12): not part of
`make bench`.

An in-process ``ingest`` (the data path of ``modelarc push``: read, hash, encode, write; no catalog) of each bench
model into a fresh local store, once per variant and round, interleaved; per run the wall time, the process's CPU
time (user + system) and their ratio, the cores kept busy on average. Variants, each a change to the scheduling or
the work of the pipeline that one might expect to lift that ratio:

    plain          the code as it is
    pinned         the reading thread on CPU 0 and the pool on CPU 1 (``sched_setaffinity``)
    niced          the pool's threads at nice +10, so the reading thread (the one serial stage) runs first
    wide           8 workers and 16 chunks in flight instead of 4 and 6
    unpaired       every chunk id hashed on the pool, the reading thread hashing only the file (no fused pass)
    no-durable     objects written through the page cache with no fsync (no O_DIRECT): an experiment, not an option
    light-reader   the reading thread reads only: no file sha256, every chunk id on the pool (the manifest's file
                   digests are then wrong; it shows what the pool alone can do)

    .venv/bin/python bench/pipeline_probe.py                        # fp32 and bf16, 3 rounds, every variant
    .venv/bin/python bench/pipeline_probe.py --models fp32 --rounds 5 --variants plain,pinned

Wall times on a shared machine are noisy: compare variants within a round, and look at the CPU column too.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/ is not a package

import models as bench_models  # noqa: E402

import modelarc.archive.ingest as ingest  # noqa: E402
import modelarc.storage.local as local  # noqa: E402
from modelarc.storage import ObjectStore  # noqa: E402

MODELS: dict[str, Callable[[], Path]] = {"fp32": bench_models.llama_fp32_upcast, "bf16": bench_models.llama_bf16}
VARIANTS = ("plain", "pinned", "niced", "wide", "unpaired", "no-durable", "light-reader")


class _NoDigest:
    """A stand-in for the file's running sha256 (light-reader only)."""

    def update(self, data: Any) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * 64


@contextmanager
def variant(name: str) -> Iterator[dict[str, Any]]:
    """Patch the data path for one run; yields extra ``ingest`` keyword arguments."""
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, value: Any) -> None:
        saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    def pool_with(initializer: Callable[[], None]) -> type[ThreadPoolExecutor]:
        class Pool(ThreadPoolExecutor):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, initializer=initializer, **kwargs)

        return Pool

    extra: dict[str, Any] = {}
    affinity = os.sched_getaffinity(0)
    try:
        if name == "pinned":
            patch(ingest, "ThreadPoolExecutor", pool_with(lambda: os.sched_setaffinity(0, {1})))
            os.sched_setaffinity(0, {0})  # this thread reads
        elif name == "niced":
            patch(
                ingest,
                "ThreadPoolExecutor",
                pool_with(lambda: os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)),
            )
        elif name == "wide":
            patch(ingest, "MAX_IN_FLIGHT", 16)
            extra["jobs"] = 8
        elif name in ("unpaired", "light-reader"):
            patch(ingest._ChunkWriter, "pair_hashes", lambda self: False)
            if name == "light-reader":
                patch(ingest, "sha256_stream", _NoDigest)
        elif name == "no-durable":
            patch(local, "_set_direct", lambda fd, on: False)
            patch(local.os, "fsync", lambda fd: None)
        elif name != "plain":
            raise SystemExit(f"unknown variant {name!r}; one of {', '.join(VARIANTS)}")
        yield extra
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)
        os.sched_setaffinity(0, affinity)


def one_run(source: Path, work: Path, name: str) -> tuple[float, float]:
    """(wall, CPU) of one ingest of ``source`` into a fresh store under ``work``."""
    store_dir = work / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = ObjectStore.open_local(store_dir)
    files = ingest.list_source_files(source)
    os.sync()
    with variant(name) as extra:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        ingest.ingest(source, store, files=files, **extra)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    if "pinned" in names and len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("the pinned variant needs two CPUs")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="modelarc-pipeline-") as tmp:
        work = Path(tmp)
        for key in [m for m in args.models.split(",") if m]:
            source = MODELS[key]()
            for path in source.iterdir():  # warm the page cache, as the push benchmarks do
                if path.is_file():
                    path.read_bytes()
            samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
            for _ in range(args.rounds):
                for name in names:
                    samples[name].append(one_run(source, work, name))
            print(f"\n{key}: {source.name}, median of {args.rounds}")
            print(f"  {'variant':14s} {'wall s':>7s} {'CPU s':>7s} {'cores':>6s}")
            for name in names:
                wall = statistics.median(w for w, _c in samples[name])
                cpu = statistics.median(c for _w, c in samples[name])
                print(f"  {name:14s} {wall:7.3f} {cpu:7.2f} {cpu / wall:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
