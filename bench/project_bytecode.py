"""Fresh bytecode for the project's own modules before a bench times a command.

Where PYTHONDONTWRITEBYTECODE is set (this environment), Python never rewrites a stale ``.pyc``: every modelarc
module edited since the last ``compileall`` is compiled again, in memory, by every command a bench starts (measured
with the probe behind issue 12: tens of modules, about 0.3 s of start-up per command), which the bench then counts
as modelarc's time. ``make venv`` and ``make bench`` run ``compileall`` first; a bench run by hand calls
``compile_project()`` as its first step, to the same effect. Only stale files are compiled: a fresh tree costs a
stat per file.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the project's packages, as the Makefile's compileall lines name them
PACKAGES = ("modelarc", "storage", "archive", "registry", "cli", "api", "migrations")


def compile_project(root: Path = ROOT) -> bool:
    """Write bytecode for every stale module of the project under ``root``; False if one did not compile (its
    error is printed, and the command that imports it will fail the same way)."""
    ok = True
    for name in PACKAGES:
        if (root / name).is_dir():
            ok = bool(compileall.compile_dir(root / name, quiet=1)) and ok
    return ok
