"""Where a local pull's wall and CPU time go (issue 12), per thread and phase: not part of `make bench`.

The model is pushed once (by the CLI, into a home kept under ``--work`` between runs), then ``restore`` runs
in-process into a fresh folder, ``--rounds`` times, with the data path's functions wrapped: each wrapper adds its
wall time and its thread's CPU time (``time.thread_time``) to a row keyed by thread group and phase. Nested
phases are indented under the phase they run in; "no CPU" is the part of a phase's wall time its thread was
runnable but another process had the CPU (/proc schedstat), "blocked" the rest of wall minus CPU: its own waits
(I/O, dirty-page throttling, a lock, a future). Also printed per round: wall, process CPU (user + sys), how
long the thread(s) that hash waited for decoded chunks, and the machine's load.

    .venv/bin/python bench/pull_phases.py                 # the 1 GB sharded model of bench/sharded.py
    .venv/bin/python bench/pull_phases.py --size 4 --rounds 2
    .venv/bin/python bench/pull_phases.py /path/to/model/folder

Signature check, catalog and CLI start-up are not included (bench/startup.py measures start-up); the wrappers cost
a few microseconds per call. On a shared machine compare CPU columns rather than wall.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import models as bench_models  # noqa: E402
import sharded as bench_sharded  # noqa: E402
from phases import ROWS as _rows  # noqa: E402
from phases import add as _add  # noqa: E402
from phases import depth as _depth  # noqa: E402
from phases import run_delay as _run_delay  # noqa: E402
from phases import wrap as _wrap  # noqa: E402

MODELARC = Path(sys.executable).with_name("modelarc")
REF = "bench/pull-phases:v1"

class _TimedSha:
    """hashlib.sha256 whose update() is timed (hashlib's objects cannot take attributes)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def update(self, data: Any) -> None:
        depth = getattr(_depth, "n", 0)
        delay, wall, cpu = _run_delay(), time.perf_counter(), time.thread_time()
        self._inner.update(data)
        _add("file sha256", depth, wall, cpu, delay)

    def hexdigest(self) -> str:
        return str(self._inner.hexdigest())

    def copy(self) -> _TimedSha:
        return _TimedSha(self._inner.copy())


def _instrument() -> None:
    import hashlib
    import types
    from concurrent.futures import Future

    import modelarc.archive.restore as restore
    import modelarc.storage.local as local
    import modelarc.storage.store as store

    real_sha256 = hashlib.sha256
    restore.hashlib = types.SimpleNamespace(  # type: ignore[attr-defined]
        sha256=lambda *a: _TimedSha(real_sha256(*a)), file_digest=hashlib.file_digest
    )
    _wrap(store.ObjectStore, "get_into", "store.get_into")
    _wrap(local.LocalBackend, "get", "object read")
    _wrap(store, "_decode_chain", "decode")
    if hasattr(restore, "_write_chunk"):  # O_DIRECT for a chunk's whole pages, the page cache for its ends
        _wrap(restore, "_write_chunk", "write chunk")
    _wrap(restore, "_pwrite_all", "pwrite (page cache)")
    if hasattr(restore, "_FileHashes"):  # the pool hashes each file's chunks in order: its wait for its turn
        _wrap(restore._FileHashes, "update", "file hash (turn + sha256)")
    _wrap(restore, "_start_writeback", "writeback (fdatasync)")
    _wrap(restore.os, "fsync", "os.fsync")
    _wrap(restore.os, "replace", "os.replace")
    result = Future.result

    def result_timed(
        self: Any, timeout: float | None = None
    ) -> Any:  # waiting for a chunk, or a finisher job
        depth = getattr(_depth, "n", 0)
        delay, wall, cpu = _run_delay(), time.perf_counter(), time.thread_time()
        try:
            return result(self, timeout)
        finally:
            _add("waiting on a future", depth, wall, cpu, delay)

    Future.result = result_timed  # type: ignore[method-assign]


def measure(folder: Path, work: Path, rounds: int) -> None:
    from modelarc.archive.repository import Archive
    from modelarc.archive.restore import restore

    home = work / ("home-" + folder.name)
    env = {**os.environ, "MODELARC_HOME": str(home)}
    env.pop("MODELARC_DATABASE_URL", None)
    if not (home / ".pushed").exists():
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([str(MODELARC), "init"], env=env, check=True, capture_output=True)
        subprocess.run([str(MODELARC), "push", str(folder), REF, "--no-progress"], env=env, check=True)
        (home / ".pushed").touch()
    os.environ["MODELARC_HOME"] = str(home)
    archive = Archive.open(home)
    _ref, snap = archive.resolve(REF)
    manifest = archive.manifest(snap)
    for p in sorted((home).rglob("*")):  # warm the page cache for the objects, as a repeated pull finds it
        if p.is_file():
            p.read_bytes()
    print(f"\n{folder.name}: {manifest.logical_bytes / 1e9:.2f} GB in {len(manifest.files)} files")
    for r in range(rounds):
        dest = work / "pulled"
        shutil.rmtree(dest, ignore_errors=True)
        os.sync()
        _rows.clear()
        times, wall = os.times(), time.perf_counter()
        restore(archive.store, manifest, dest)
        wall = time.perf_counter() - wall
        after = os.times()
        user, sys_ = after.user - times.user, after.system - times.system
        print(
            f"round {r + 1}: restore {wall:.3f} s wall, {user + sys_:.2f} s CPU ({user:.2f} user + {sys_:.2f} sys)"
            f" = {(user + sys_) / wall:.2f} cores busy of {os.cpu_count()}; load {os.getloadavg()[0]:.2f}"
        )
        print(
            f"  {'thread':18s} {'phase':30s} {'wall s':>8s} {'CPU s':>8s} {'no CPU':>8s} {'blocked':>8s} {'calls':>6s}"
        )
        for (group, label, depth), (w, c, n, d) in sorted(
            _rows.items(), key=lambda kv: (kv[0][0] != "MainThread", kv[0])
        ):
            if c < 0.001 and w < 0.005:
                continue
            print(
                f"  {group:18s} {'  ' * depth + label:30s} {w:8.3f} {c:8.3f} {d:8.3f} {max(0.0, w - c - d):8.3f}"
                f" {int(n):6d}"
            )
        shutil.rmtree(dest, ignore_errors=True)
    archive.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", nargs="*", type=Path, help="model folders (default: bench/sharded.py's model)"
    )
    parser.add_argument("--size", type=int, default=1, choices=sorted(bench_sharded.SHAPES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/modelarc-bench-pull-phases"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    folders = args.folders or [
        bench_sharded.sharded_model(bench_sharded.SHAPES[args.size], 512 << 20, bench_models.DEFAULT_CACHE)
    ]
    from modelarc.cli.main import keep_freed_memory

    keep_freed_memory()  # as the CLI's process does
    _instrument()
    for folder in folders:
        measure(folder, args.work, args.rounds)


if __name__ == "__main__":
    main()
