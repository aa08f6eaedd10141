"""Options and decorators shared by the commands: ``--json``, ``--jobs``, the provenance search filters, and
``with_archive``, which opens the archive home for a command and closes it after.

Nothing here may import the archive's core at module level: every command module imports this one, so whatever it
loads, ``modelarc --help`` loads too (tests/cli/test_cli_startup.py holds that line)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from modelarc.archive.catalog.filters import SEARCH_FILTERS
from modelarc.cli.startup import startup_done

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
jobs_option = click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Parallel transfers with --remote.",
)


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
        *(click.option(f.option, help=f.help) for f in SEARCH_FILTERS),
        click.option(
            "--limit", type=click.IntRange(1, None), default=100, show_default=True, help="Rows at most."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn
