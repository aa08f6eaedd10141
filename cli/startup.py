"""The cyclic garbage collector during the CLI's start-up (issue 12: the fixed cost of every command).

Opening the archive imports SQLAlchemy, builds the catalog's ORM classes and configures their mappers
(registry/db.py, ``build_mappings``): about a million allocations, nearly all
of them objects that live as long as the process. With the default thresholds the collector runs hundreds of times
over them (and full collections over everything loaded so far), which measured 60-150 ms of CPU per command on the
shared 2-core machine (`modelarc push` of a small model, interleaved runs, median of 9).

So the console script raises the threshold while it starts (``pause_during_startup``) and, once the archive is
open, freezes what start-up built (it is moved out of the collector's sight for good, as long-lived modules and
classes would be anyway) and restores the default thresholds (``startup_done``). The collector is never disabled:
a command that never opens the archive simply runs with the raised threshold, which still collects. Only the
console script pauses; a library caller or an in-process test runner (click's CliRunner) is left as it is.
"""

from __future__ import annotations

import gc

# gen0 every 100k net allocations rather than 700; the older generations rarely
STARTUP_THRESHOLD = (100_000, 50, 50)

_saved: tuple[int, int, int] | None = None


def pause_during_startup() -> None:
    global _saved
    if _saved is None:
        _saved = gc.get_threshold()
        gc.set_threshold(*STARTUP_THRESHOLD)


def startup_done() -> None:
    """Freeze start-up's objects and put the thresholds back; a no-op unless ``pause_during_startup`` ran."""
    global _saved
    if _saved is None:
        return
    gc.freeze()
    gc.set_threshold(*_saved)
    _saved = None
