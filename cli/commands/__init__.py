"""The commands, one module per family; each defines ``register(group)``, which adds its commands to the group.

Keeping each capability's commands in its own module means adding one never edits ``cli/main.py``; it adds its
names to ``MODULES`` below. Running a command imports only its own module (``CommandGroup.get_command``): importing
all nineteen, with their click decorators, cost ~30-40 ms of every command's start-up. ``modelarc --help`` lists
them all, so it imports them all. tests/cli/test_cli_startup.py holds ``MODULES`` to what the modules register.
"""

from __future__ import annotations

import importlib
import pkgutil

import click

# command name -> the module of this package that registers it
MODULES: dict[str, str] = {
    "access": "access",
    "audit": "audit",
    "cache": "cache",
    "log": "catalog",
    "ls": "catalog",
    "show": "catalog",
    "tag": "catalog",
    "data": "data",
    "export": "export",
    "init": "init",
    "keys": "keys",
    "diff": "lineage",
    "lineage": "lineage",
    "fsck": "maintenance",
    "gc": "maintenance",
    "stats": "maintenance",
    "verify": "maintenance",
    "mirror": "mirror",
    "repair": "mirror",
    "scrub": "mirror",
    "rebuild-catalog": "records",
    "upgrade": "records",
    "remote": "remote",
    "lock": "run",
    "rerun": "run",
    "run": "run",
    "runs": "run",
    "serve": "serve",
    "timeline": "timeline",
    "token": "token",
    "pull": "transfer",
    "push": "transfer",
    "rm": "withdraw",
}


def register_module(group: click.Group, module_name: str) -> None:
    module = importlib.import_module(f"{__name__}.{module_name}")
    register = getattr(module, "register", None)
    if register is not None:
        register(group)


def register_all(group: click.Group) -> None:
    """Every module's commands, found by listing the package (not from ``MODULES``)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        register_module(group, info.name)


class CommandGroup(click.Group):
    """A group whose commands are imported when one is looked up (by name, or all of them for help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in MODULES:
            register_module(self, MODULES[cmd_name])
        return super().get_command(ctx, cmd_name)
