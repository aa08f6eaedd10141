"""What fresh memory costs on this machine: the floor under loading a model into new tensors (issue 12, item 4).

    .venv/bin/python bench/fresh_memory.py              # 1 GiB, 3 rounds
    .venv/bin/python bench/fresh_memory.py --gib 4

``load_model`` decodes every weight into memory the process has never touched, and the kernel must hand it a zeroed
page for every 4 KiB; ``from_pretrained`` on a warm page cache maps the safetensors file and needs none. On the
Firecracker VM these benchmarks run on, freed guest memory is reported back to the host (the kernel's free page
reporting, ``page_reporting.page_reporting_order=11`` on /proc/cmdline), so a fresh page costs a fault on the host as
well as the guest's zeroing. This prints, each the best of ``--rounds``:

- populate, one thread: ``mmap`` + ``MADV_POPULATE_WRITE`` of ``--gib`` GiB, in 32 MiB mappings (tensors' sizes);
- the same with ``MADV_HUGEPAGE`` (2 MiB pages: fewer faults, the same bytes to provide);
- populate, two threads of one process, half each (do the two decoding threads of a load add up?);
- populate, two processes at once, half each;
- writing over memory already populated (what the same bytes cost once the pages exist).

A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing
import threading
import time
from typing import Protocol

MADV_POPULATE_WRITE = 23  # Linux 5.14; not in Python 3.11's mmap module
MADV_HUGEPAGE = 14
PIECE = 32 << 20


def populate(total: int, huge: bool = False) -> list[mmap.mmap]:
    maps = []
    for _ in range(total // PIECE):
        m = mmap.mmap(-1, PIECE)
        if huge:
            m.madvise(MADV_HUGEPAGE)
        m.madvise(MADV_POPULATE_WRITE)
        maps.append(m)
    return maps


def timed_populate(total: int, huge: bool = False) -> float:
    started = time.perf_counter()
    maps = populate(total, huge)
    elapsed = time.perf_counter() - started
    for m in maps:
        m.close()
    return elapsed


class _Worker(Protocol):
    def start(self) -> None: ...
    def join(self) -> None: ...


def _run_all(workers: list[_Worker]) -> float:
    """Seconds from starting every worker (thread or process) to the last one's end."""
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def two_threads(total: int) -> float:
    held: list[list[mmap.mmap]] = []
    elapsed = _run_all([threading.Thread(target=lambda: held.append(populate(total // 2))) for _ in range(2)])
    for maps in held:
        for m in maps:
            m.close()
    return elapsed


def _child(total: int) -> None:
    for m in populate(total):
        m.close()


def two_processes(total: int) -> float:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child, args=(total // 2,)) for _ in range(2)]
    elapsed = _run_all(list(procs))
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a populating child failed: exit codes {[p.exitcode for p in procs]}")
    return elapsed


def overwrite(total: int) -> float:
    maps = populate(total)
    zeros = bytes(PIECE)  # made (and its pages touched) before the clock starts
    started = time.perf_counter()
    for m in maps:
        m.seek(0)
        m.write(zeros)
    elapsed = time.perf_counter() - started
    for m in maps:
        m.close()
    return elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    total = int(args.gib * (1 << 30)) // PIECE * PIECE
    rows = [
        ("populate, one thread", lambda: timed_populate(total)),
        ("populate, one thread, MADV_HUGEPAGE", lambda: timed_populate(total, huge=True)),
        ("populate, two threads of one process", lambda: two_threads(total)),
        ("populate, two processes at once", lambda: two_processes(total)),
        ("write over populated memory", lambda: overwrite(total)),
    ]
    gib = total / (1 << 30)
    print(f"{gib:.2f} GiB, best of {args.rounds}")
    for label, run in rows:
        best = min(run() for _ in range(args.rounds))
        print(f"  {label:40s} {best:6.3f} s   {best / gib:6.3f} s/GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
