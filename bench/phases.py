"""Per-thread, per-phase timing for the push and pull phase benches (bench/push_phases.py, bench/pull_phases.py).

``wrap(owner, attr, label)`` replaces a function with one that adds its wall time, its thread's CPU time and the
time its thread was runnable but not running to ``ROWS[(thread group, label, depth)]``; nested wrapped calls count
at a greater depth, so a phase and the phases inside it are told apart.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

# (thread group, phase, depth) -> [wall, cpu, calls, seconds runnable but waiting for a CPU]
ROWS: dict[tuple[str, str, int], list[float]] = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
depth = threading.local()


def run_delay() -> float:
    """Seconds this thread has spent runnable but not running (another process had the CPU): on a shared machine
    that is the part of a phase's wall time that is neither its CPU time nor a wait of its own (I/O, a lock)."""
    with open("/proc/thread-self/schedstat", "rb") as fh:
        return int(fh.read().split()[1]) / 1e9


def group(name: str) -> str:
    """A pool thread's group: its name without the worker number."""
    return name.rsplit("_", 1)[0] if name.startswith("modelarc-") else name


def add(label: str, level: int, wall: float, cpu: float, delay: float) -> None:
    """Count one call begun at ``wall``/``cpu``/``delay`` (perf_counter, thread_time, run_delay) as ending now."""
    row = ROWS[(group(threading.current_thread().name), label, level)]
    row[0] += time.perf_counter() - wall
    row[1] += time.thread_time() - cpu
    row[2] += 1
    row[3] += run_delay() - delay


def wrap(owner: Any, attr: str, label: str) -> None:
    inner: Callable[..., Any] = getattr(owner, attr)

    def timed(*args: Any, **kwargs: Any) -> Any:
        level = getattr(depth, "n", 0)
        depth.n = level + 1
        delay, wall, cpu = run_delay(), time.perf_counter(), time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            depth.n = level
            add(label, level, wall, cpu, delay)

    setattr(owner, attr, timed)
