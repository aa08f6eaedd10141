"""The commands, one module per family; each defines ``register(group)`` and is picked up automatically.

Keeping each capability's commands in its own module means adding one never edits ``cli/main.py``.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


def register_all(group: click.Group) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(group)
