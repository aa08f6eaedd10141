"""The lower bound each speed row of ``bench/run.py`` can reach on this machine, measured beside its baseline.

Issue 12 sets targets as ratios to baselines timed in the same run (push and pull against ``cp -r`` + ``sync``,
an unchanged re-push against sha256 of the files). When a row misses, the question is whether any implementation
could pass it here, or how far the product is from what the machine allows. This script measures, per model and in
the same run (interleaved, median of ``--repeat``):

    cp+sync     ``cp -r`` + ``sync`` of the folder (run.py's ``cp_sync``)
    sha256      ``hashlib.file_digest`` of every file (run.py's ``sha256_files``); its wall time is H_wall, and
                its CPU time H_cpu, the one hash pass a push must make over every byte
    F_push      ``modelarc push`` of an unchanged tiny model into a home that has it (bench/startup.py's model
                and runner): everything a command pays besides its data
    F_pull      ``modelarc pull`` of that tiny model into a fresh folder
    W_raw       the model's bytes written durably into a fresh folder on the destination's file system, the way
                ``dd oflag=direct bs=8M`` does it: 8 MiB read from the (warm) source into page-aligned memory,
                written with O_DIRECT; a file's tail of less than a page through a normal descriptor; every file
                fsynced, then the folder. One thread, and two threads taking the 8 MiB pieces in turn (two halves
                of a file written at once); the faster counts. A pull must put exactly these bytes on the disk.
    W_stored    the same for as many bytes as a push stores (``stored_bytes_added`` of one push into a fresh
                home), written as one file: a push must make at least that many bytes durable (capped at the
                model's size, which only lowers the bound)

Lower bounds, each generous to the product (any real implementation pays at least this much):

    pull               >= F_pull + W_raw
    push               >= F_push + max(W_stored, H_wall / 2)   hashing split over 2 cores at best, writes overlapping
    re-push unchanged  >= F_push                               nothing read
    re-push --rehash   >= F_push + H_wall / 2

floor ratio = floor / baseline; a row's target is reachable at all only if floor ratio <= target. With
``--modelarc`` each round also runs push, re-push, re-push --rehash and pull as run.py does, and the measured
ratio is printed beside the floor ratio. A benchmark, not a test: nothing here fails on a number.

    .venv/bin/python bench/floors.py                                   # mini, bf16, fp32; 5 rounds
    .venv/bin/python bench/floors.py --models mini --repeat 1 --modelarc
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # bench/ is not a package

import models as bench_models  # noqa: E402
import run as bench_run  # noqa: E402
import startup  # noqa: E402

from modelarc.storage.pages import PAGE, aligned_buffer  # noqa: E402

PIECE = 8 << 20  # dd's bs=8M, and the size of an ingest chunk


# --------------------------------------------------------------------------- the durable write floor
@dataclass(frozen=True)
class Piece:
    """``length`` bytes at ``offset`` of source file ``index``, to land at the same offset of its copy."""

    index: int
    offset: int
    length: int


def plan(sizes: list[int], limit: int | None = None) -> list[Piece]:
    """The 8 MiB pieces of the files of ``sizes``, in order; only the first ``limit`` bytes when given."""
    pieces: list[Piece] = []
    left = sum(sizes) if limit is None else limit
    for index, size in enumerate(sizes):
        for offset in range(0, size, PIECE):
            length = min(PIECE, size - offset, left)
            if length <= 0:
                return pieces
            pieces.append(Piece(index, offset, length))
            left -= length
    return pieces


def direct_write(sources: list[Path], dest: Path, limit: int | None, threads: int) -> float:
    """Seconds to write the bytes of ``sources`` (the first ``limit`` of them) durably into fresh folder ``dest``.

    Whole pages go with O_DIRECT from a page-aligned buffer per thread, which skips the page cache's allocation
    and copy (the cheapest way to the device here: bench/README.md, "Where a pull spends its time"); each
    file's last partial page goes through a buffered descriptor after its direct writes, as storage/local.py does.
    """
    pieces = plan([p.stat().st_size for p in sources], limit)
    shutil.rmtree(dest, ignore_errors=True)
    os.sync()
    started = time.perf_counter()
    dest.mkdir()
    used = sorted({p.index for p in pieces})
    lengths = {i: 0 for i in used}
    for p in pieces:
        lengths[p.index] = max(lengths[p.index], p.offset + p.length)
    src_fds = {i: os.open(sources[i], os.O_RDONLY) for i in used}
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    out_fds = {i: os.open(dest / f"{i}.bin", flags, 0o644) for i in used}
    direct_fds = {i: os.open(dest / f"{i}.bin", os.O_WRONLY | os.O_DIRECT) for i in used}
    # (file index, bytes, offset) of each file's partial last page, written once the direct writes are done
    tails: list[tuple[int, bytes, int]] = []
    tails_lock = threading.Lock()

    def worker(mine: list[Piece]) -> None:
        buffer = aligned_buffer(PIECE)
        view = memoryview(buffer)
        for p in mine:
            got = os.preadv(src_fds[p.index], [view[: p.length]], p.offset)
            if got != p.length:
                raise RuntimeError(f"short read of {sources[p.index]} at {p.offset}")
            whole = p.length - p.length % PAGE
            if whole:
                written = os.pwritev(direct_fds[p.index], [view[:whole]], p.offset)
                if written != whole:
                    raise RuntimeError(f"short direct write ({written} of {whole} bytes)")
            if whole < p.length:
                with tails_lock:
                    tails.append((p.index, bytes(view[whole : p.length]), p.offset + whole))
        view.release()
        buffer.close()

    try:
        if threads == 1:
            worker(pieces)
        else:
            errors: list[BaseException] = []

            def guarded(mine: list[Piece]) -> None:
                try:
                    worker(mine)
                except BaseException as exc:  # surfaced on the calling thread below
                    errors.append(exc)

            pool = [threading.Thread(target=guarded, args=(pieces[t::threads],)) for t in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            if errors:
                raise errors[0]
        for index, data, offset in tails:
            os.pwrite(out_fds[index], data, offset)
        for index in used:
            os.fsync(out_fds[index])
        dir_fd = os.open(dest, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
        elapsed = time.perf_counter() - started
    finally:
        for fd in [*src_fds.values(), *out_fds.values(), *direct_fds.values()]:
            os.close(fd)
    for index in used:
        if (dest / f"{index}.bin").stat().st_size != lengths[index]:
            raise RuntimeError(f"wrote {dest / f'{index}.bin'} with the wrong size")
    shutil.rmtree(dest)
    return elapsed


# --------------------------------------------------------------------------- one model
def sha256_pass(files: list[Path]) -> tuple[float, float]:
    """(wall, CPU) of run.py's sha256 baseline: one thread, so its thread time is the pass's CPU."""
    os.sync()
    cpu = time.thread_time()
    wall = bench_run.sha256_files(files)
    return wall, time.thread_time() - cpu


def model_files(path: Path) -> list[Path]:
    """The folder's files in run.py's order, each read once so every step starts with a warm page cache."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        with open(p, "rb") as fh:
            while fh.read(PIECE):
                pass
    return files


def measure(key: str, cache: Path, work: Path, repeat: int, with_modelarc: bool) -> dict[str, list[float]]:
    """Every quantity of the module docstring, ``repeat`` samples each, one round after another."""
    source = bench_run.MODELS[key][1](cache)
    files = model_files(source)
    tiny_home = work / "tiny-home"
    tiny = startup.tiny_model(work / "tiny")
    env = {**os.environ, "MODELARC_HOME": str(tiny_home)}
    mc = str(bench_run.MODELARC)
    startup.run([mc, "init"], env, work)
    startup.run([mc, "push", str(tiny), "bench/tiny:v1", "--no-progress"], env, work)
    tiny_pulled = work / "tiny-pulled"

    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    bench_run.cli(home, "init")
    first = bench_run.cli(home, "push", str(source), bench_run.REF, "--no-progress", "--json")
    stored = int(first["stored_bytes_added"])
    shutil.rmtree(home)
    s: dict[str, list[float]] = {}  # every sample, by the names of the module docstring

    def timed_cli(*args: str) -> float:
        os.sync()
        started = time.perf_counter()
        bench_run.cli(home, *args)
        return time.perf_counter() - started

    def tiny_cli(name: str, *args: str) -> None:
        shutil.rmtree(tiny_pulled, ignore_errors=True)
        os.sync()
        wall, cpu = startup.run([mc, *args], env, work)
        s[name].append(wall)
        s[name + "_cpu"].append(cpu)

    def sha256_step() -> None:
        wall, cpu = sha256_pass(files)
        s["sha256"].append(wall)
        s["H_cpu"].append(cpu)

    def write_step(name: str, limit: int | None, threads: int) -> tuple[str, Callable[[], None]]:
        return name, lambda: s[name].append(direct_write(files, work / "w", limit, threads))

    push_tiny = ("push", str(tiny), "bench/tiny:v1", "--no-progress")
    pull_tiny = ("pull", "bench/tiny:v1", str(tiny_pulled), "--no-progress")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("cp", lambda: s["cp"].append(bench_run.cp_sync(source, work / "cp"))),
        ("sha256", sha256_step),
        ("F_push", lambda: tiny_cli("F_push", *push_tiny)),
        ("F_pull", lambda: tiny_cli("F_pull", *pull_tiny)),
        write_step("W_raw_1", None, 1),
        write_step("W_raw_2", None, 2),
        write_step("W_stored_1", stored, 1),
        write_step("W_stored_2", stored, 2),
    ]
    if with_modelarc:
        steps.append(("modelarc", lambda: modelarc_round(s, source, home, timed_cli)))
    for name in ("H_cpu", "F_push_cpu", "F_pull_cpu", *(name for name, _ in steps if name != "modelarc")):
        s[name] = []
    if with_modelarc:
        for name in ("push", "repush", "rehash", "pull"):
            s[name] = []
    for rep in range(repeat):
        print(f"  round {rep + 1}/{repeat}: " + ", ".join(name for name, _ in steps), flush=True)
        for _name, step in steps if rep % 2 == 0 else reversed(steps):  # neither side always goes first
            step()
    shutil.rmtree(tiny_home)
    shutil.rmtree(tiny)
    shutil.rmtree(tiny_pulled, ignore_errors=True)
    s["stored_bytes"] = [float(stored)]
    s["logical_bytes"] = [float(sum(p.stat().st_size for p in files))]
    return s


def modelarc_round(s: dict[str, list[float]], source: Path, home: Path, timed: Callable[..., float]) -> None:
    """push, re-push, re-push --rehash and pull as processes, as run.py's ``measure`` times them."""
    shutil.rmtree(home, ignore_errors=True)
    bench_run.cli(home, "init")
    push = (str(source), bench_run.REF, "--no-progress", "--json")
    s["push"].append(timed("push", *push))
    s["repush"].append(timed("push", *push))
    s["rehash"].append(timed("push", *push, "--rehash"))
    dest = home.parent / "pulled"
    shutil.rmtree(dest, ignore_errors=True)
    s["pull"].append(timed("pull", bench_run.REF, str(dest), "--no-progress"))
    shutil.rmtree(dest)
    shutil.rmtree(home)


# --------------------------------------------------------------------------- report
def report(key: str, s: dict[str, list[float]], repeat: int) -> list[str]:
    """The inputs on their own lines, then one markdown row per speed row of run.py."""
    m = {k: statistics.median(v) for k, v in s.items() if v}
    n, stored = m["logical_bytes"], m["stored_bytes"]
    w_raw, w_stored = min(m["W_raw_1"], m["W_raw_2"]), min(m["W_stored_1"], m["W_stored_2"])
    h = m["sha256"]
    lines = [
        f"[{key}] {bench_run.MODELS[key][0]}: {n / 1e6:.1f} MB, push stores {stored / 1e6:.1f} MB; "
        f"median of {repeat}, seconds",
        f"  cp+sync {m['cp']:.3f}   sha256 (H_wall) {h:.3f}, H_cpu {m['H_cpu']:.3f} ({n / m['H_cpu'] / 1e9:.2f} GB/s)",
        f"  F_push {m['F_push']:.3f} (CPU {m['F_push_cpu']:.3f})   F_pull {m['F_pull']:.3f} (CPU {m['F_pull_cpu']:.3f})",
        f"  W_raw {w_raw:.3f} (1 thread {m['W_raw_1']:.3f}, 2 threads {m['W_raw_2']:.3f}; {n / w_raw / 1e9:.2f} GB/s)",
        f"  W_stored {w_stored:.3f} (1 thread {m['W_stored_1']:.3f}, 2 threads {m['W_stored_2']:.3f})",
    ]
    rows = [
        (
            "push",
            "cp+sync",
            m["cp"],
            "F_push + max(W_stored, H_wall/2)",
            m["F_push"] + max(w_stored, h / 2),
            "push",
        ),
        ("pull", "cp+sync", m["cp"], "F_pull + W_raw", m["F_pull"] + w_raw, "pull"),
        ("re-push unchanged", "sha256", h, "F_push", m["F_push"], "repush"),
        ("re-push --rehash", "sha256", h, "F_push + H_wall/2", m["F_push"] + h / 2, "rehash"),
    ]
    head = "| model | row | baseline s | floor s = formula | floor ratio | target | reachable |"
    measured = "push" in m
    lines += ["", head + (" measured s | measured ratio | measured / floor |" if measured else "")]
    lines.append("|" + "---|" * (7 + 3 * measured))
    for row, base_name, base, formula, floor, sample in rows:
        target = bench_run.TARGETS["repush" if sample == "rehash" else sample]
        cells = [
            key,
            row,
            f"{base_name} {base:.3f}",
            f"{floor:.3f} = {formula}",
            f"{floor / base:.2f}x",
            f"<= {target:.2f}x",
            "yes" if floor / base <= target else "NO",
        ]
        if measured:
            cells += [f"{m[sample]:.3f}", f"{m[sample] / base:.2f}x", f"{m[sample] / floor:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default="mini,bf16,fp32", help="subset of: " + ", ".join(bench_run.MODELS)
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds per model; medians are reported")
    parser.add_argument(
        "--cache", type=Path, default=bench_models.DEFAULT_CACHE, help="where generated models live"
    )
    parser.add_argument("--modelarc", action="store_true", help="also time modelarc push/pull as run.py does")
    args = parser.parse_args(argv)
    os.environ.pop("MODELARC_DATABASE_URL", None)  # SQLite inside each fresh home, as in run.py
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in bench_run.MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(bench_run.MODELS)}")
    work = args.cache / "floors-work"  # beside run.py's work folder: the same file system as its destinations
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    loads = [os.getloadavg()[0]]
    started = dt.datetime.now(dt.UTC)
    out: list[str] = []
    try:
        for key in keys:
            print(f"\n[{key}] {bench_run.MODELS[key][0]}", flush=True)
            samples = measure(key, args.cache, work, args.repeat, args.modelarc)
            loads.append(os.getloadavg()[0])
            out += ["", *report(key, samples, args.repeat)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nfloors {started.isoformat(timespec='seconds')}, git {bench_run.environment()['git']}, "
        f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs; "
        f"python bench/floors.py {' '.join(argv if argv is not None else sys.argv[1:])}"
    )
    print("floor ratio <= target: the target is reachable at all; above it, no implementation passes here.")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    from project_bytecode import compile_project  # beside this file

    compile_project()  # first: each command timed would otherwise recompile every stale module
    sys.exit(main())
