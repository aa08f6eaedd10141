"""``modelarc``: the command line. Each command parses, calls ``modelarc.archive``, and prints text or JSON.

This module is the click group and the one place errors become an ``error:`` line and an exit code; the commands
live in ``cli/commands/`` (one module per family, registered by ``register_all``), the options they share in
``cli/options.py``.
"""

from __future__ import annotations

import errno
import traceback
from typing import Any

import click

from modelarc import __version__
from modelarc.cli.commands import register_all
from modelarc.cli.output import echo_error
from modelarc.errors import DiskFullError, ModelarcError


class ArchiveGroup(click.Group):
    """Turns every ModelarcError into one ``error:`` line and its exit code, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelarcError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            echo_error(str(exc))
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # a full disk the core did not name itself (it names the store and pull destinations): still one line
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            where = f" writing {exc.filename}" if exc.filename else ""
            echo_error(f"disk full: no space left on the device{where} ({exc.strerror})")
            ctx.exit(DiskFullError.exit_code)
        except KeyboardInterrupt:
            echo_error("interrupted; nothing partial was recorded")
            ctx.exit(130)


@click.group(cls=ArchiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="MODELARC_HOME",
    type=click.Path(file_okay=False),
    help="Archive home (default ~/.modelarc).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="modelarc")
@click.pass_context
def cli(ctx: click.Context, home: str | None, debug: bool) -> None:
    """modelarc: archive model weights deduplicated, compressed and signed, with their provenance."""
    ctx.obj = {"home": home, "debug": debug}


register_all(cli)


def main() -> None:
    cli(prog_name="modelarc")


if __name__ == "__main__":
    main()
