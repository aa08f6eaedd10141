"""Options and decorators shared by the commands: ``--json``, ``--jobs``, the provenance search filters, and
``with_archive``, which opens the archive home for a command and closes it after.

Nothing here may import the archive's core at module level: every command module imports this one, so whatever it
loads, ``modelarc --help`` loads too (tests/cli/test_cli_startup.py holds that line)."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from modelarc.archive.catalog.filters import SEARCH_FILTERS
from modelarc.cli.startup import startup_done
from modelarc.registry.bounds import CATALOG_INT_MAX, ROW_ID_MAX

# ids and limits bounded by what the catalog's columns hold (registry/bounds.py), where they are parsed
ROW_ID = click.IntRange(1, ROW_ID_MAX)
# one below the largest: a page reads one row more than its limit, to know whether more follow
ROW_LIMIT = click.IntRange(1, CATALOG_INT_MAX - 1)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``: NaN compares false with every bound, so a plain
    range lets it through, and no option of ours means anything at infinity."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class OutputFilePath(click.Path):
    """The path of a file a command writes. ``Path("out/")`` drops the slash, so ``-o out/`` wrote a file named
    ``out`` where the user named a folder: a path that ends in a separator is refused while its text still shows it."""

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value != "-" and value.endswith(("/", os.sep)):
            self.fail(f"{value!r} ends in '/', which names a folder; name the file to write", param, ctx)
        return super().convert(value, param, ctx)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def jobs_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--jobs N`` (1 to 64, default 4), with the help of the command it goes with: pull refuses hf://, and its help
    said it downloaded from a Hub endpoint."""
    return click.option("--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help=help_text)


def not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse ``""`` for a SOURCE or DEST: a path of nothing means the current folder to the file system, so an
    empty variable in a script (``modelarc push "$DIR" ...``) archived, or wrote into, whatever folder it ran in."""
    if value is not None and value == "":
        raise click.BadParameter("is empty; name a folder or file (`.` for the current folder)")
    return value


def no_blank_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse ``""`` (or spaces) for a filter or a date: taken as not given, ``ls --license "$LICENSE"`` with the
    variable unset listed every snapshot, and ``push --cutoff "$CUTOFF"`` recorded none, without a word."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; leave the option out to not filter or state it")
    return value


def not_empty_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """``not_empty`` for an argument of type ``click.Path()`` (a str: ``path_type=Path`` would have made ``""``
    the current folder before this could see it), as a Path."""
    checked = not_empty(ctx, param, value)
    return None if checked is None else Path(checked)


def with_archive(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        from modelarc.archive.repository import Archive  # the catalog, only once a command runs

        with Archive.open(ctx.obj["home"]) as archive:
            startup_done()
            return fn(archive, *args, **kwargs)

    return wrapper


def search_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The provenance filters shared by ``ls`` and ``timeline``."""
    options = [
        *(click.option(f.option, help=f.help, callback=no_blank_value) for f in SEARCH_FILTERS),
        click.option("--limit", type=ROW_LIMIT, default=100, show_default=True, help="Rows at most."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
