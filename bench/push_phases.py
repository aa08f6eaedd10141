"""Where a push's wall and CPU time go (issue 12), per phase and per thread: not part of `make bench`.

One in-process ``push_folder`` (``--rehash``, into a fresh home) with the data path's functions wrapped, each
wrapper adding its wall time and its thread's CPU time (``time.thread_time``) to a row keyed by thread group and
phase. Nested phases are indented under the phase they run in (``store.put`` holds ``encode``, which holds the
plane coders). Also printed: how long the reading thread waited for the workers (a full in-flight queue: the
workers were the bound) and the minor page faults of the push.

    .venv/bin/python bench/push_phases.py                       # the bench FP32 upcast and BF16 models
    .venv/bin/python bench/push_phases.py /path/to/model/folder

Interpreter start-up and imports are not included (bench/startup.py measures those); wrapping costs a few
microseconds per call, a few ms per push. On a shared machine compare CPU columns rather than wall.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import models as bench_models  # noqa: E402
from phases import ROWS as _rows  # noqa: E402
from phases import wrap as _wrap  # noqa: E402

MODELARC = Path(sys.executable).with_name("modelarc")

_WAITED = {"s": 0.0}  # seconds the reading thread waited for a free in-flight slot


def _instrument() -> None:
    import modelarc.archive.ingest as ingest
    import modelarc.archive.push as push
    import modelarc.storage.codecs as codecs
    import modelarc.storage.codecs.floatplanes as floatplanes
    import modelarc.storage.local as local
    import modelarc.storage.store as store
    from modelarc.storage.ids import ObjectId

    # the reading thread: its reads, and the one pass that feeds the file's sha256 and gives each chunk's id
    _wrap(ingest._HashingReader, "_fill", "file read")
    _wrap(ingest, "update_and_digest", "file+chunk sha256")
    waited = _WAITED
    submit = ingest._ChunkWriter.submit

    def submit_timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        while len(self.pending) >= self.in_flight:
            self.pending.popleft().result()
        waited["s"] += time.perf_counter() - started
        return submit(self, *args, **kwargs)

    ingest._ChunkWriter.submit = submit_timed  # type: ignore[method-assign]
    _wrap(ObjectId, "of", "chunk sha256")  # ids hashed apart from the reading pass (none in a plain push)
    _wrap(store.ObjectStore, "put", "store.put")
    _wrap(codecs, "choose_and_encode", "encode")
    store.choose_and_encode = codecs.choose_and_encode  # type: ignore[attr-defined]
    _wrap(floatplanes._planes, "split", "plane split")
    for name, label in (("_huffman", "huffman"), ("_zstd", "zstd"), ("_deflate", "deflate")):
        _wrap(floatplanes, name, label)
    _wrap(floatplanes._planes, "order0_bits", "entropy probe")
    _wrap(local.LocalBackend, "has", "backend.has")
    _wrap(local.LocalBackend, "put", "backend.put")
    _wrap(local.LocalBackend, "sync", "backend.sync")
    # an object's whole pages with O_DIRECT (its os.write calls nest inside); absent before the change
    if hasattr(local, "_write_direct"):
        _wrap(local, "_write_direct", "direct write")
    for name in ("write", "fsync", "replace"):
        _wrap(local.os, name, "os." + name)  # the os module itself: every caller in the process is timed
    _wrap(push, "ingest", "ingest")
    _wrap(push, "sign_snapshot", "sign")
    _wrap(push, "record_snapshot", "catalog record")


def measure(folder: Path) -> None:
    from modelarc.archive.push import push_folder
    from modelarc.archive.repository import Archive

    for f in folder.rglob("*"):
        if f.is_file():
            f.read_bytes()  # warm page cache, as bench/run.py
    home = Path(tempfile.mkdtemp(prefix="modelarc-phases-"))
    try:
        subprocess.run(
            [str(MODELARC), "init"], env={**os.environ, "MODELARC_HOME": str(home)}, check=True, capture_output=True
        )
        archive = Archive.open(home)
        _rows.clear()
        waited = _WAITED
        waited["s"] = 0.0
        os.sync()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times, wall = os.times(), time.perf_counter()
        result = push_folder(archive, folder, "bench/phases:v1", rehash=True)
        wall = time.perf_counter() - wall
        after = os.times()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        archive.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    cpu = after.user - times.user + after.system - times.system
    print(f"\n{folder} ({result.logical_bytes / 1e6:.1f} MB, stored {result.stored_bytes_added / 1e6:.1f} MB)")
    print(
        f"push {wall:.3f} s wall, {cpu:.2f} s CPU ({after.user - times.user:.2f} user + "
        f"{after.system - times.system:.2f} sys), {faults} minor page faults; reader waited for the workers "
        f"{waited['s']:.3f} s; load {os.getloadavg()[0]:.2f}"
    )
    print(f"  {'thread':18s} {'phase':28s} {'wall s':>8s} {'CPU s':>8s} {'calls':>6s}")
    for (group, label, depth), (w, c, n, _delay) in sorted(_rows.items(), key=lambda kv: (kv[0][0] != "MainThread", kv[0])):
        if c < 0.001 and w < 0.005:
            continue
        print(f"  {group:18s} {'  ' * depth + label:28s} {w:8.3f} {c:8.3f} {int(n):6d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="model folders (default: the bench FP32 and BF16)")
    args = parser.parse_args()
    folders = args.folders or [bench_models.llama_fp32_upcast(), bench_models.llama_bf16()]
    _instrument()
    for folder in folders:
        measure(folder)


if __name__ == "__main__":
    main()
