"""``modelarc``: the command line. Each command parses, calls ``modelarc.archive``, and prints text or JSON.

This module is the click group and the one place errors become an ``error:`` line and an exit code; the commands
live in ``cli/commands/`` (one module per family, imported when its command runs), the options they share in
``cli/options.py``.
"""

from __future__ import annotations

import errno
import signal
import sys
import traceback
from typing import Any

import click

from modelarc import __version__
from modelarc.cli.commands import CommandGroup
from modelarc.cli.output import echo_error
from modelarc.cli.startup import pause_during_startup
from modelarc.errors import DiskFullError, ModelarcError, UsageError

# What an interrupted command leaves: every write is whole or absent, but a command that works in steps (rm records
# the withdrawal, then deletes; gc deletes one object after another; push --remote archives locally, then sends)
# keeps the steps it committed. The next run (or gc, for deletions) finishes the work.
INTERRUPTED = "nothing half-written was recorded; steps already committed stay (run it again, or gc, to finish)"


class OneLineUsageError(click.ClickException):
    """A command line click could not parse (a missing argument, an unknown option or command, a value of the wrong
    type), shown as one ``error:`` line naming the help to read, like every other error, not click's usage block.
    Exit code 2, click's and ours for usage errors."""

    exit_code = UsageError.exit_code

    def __init__(self, exc: click.UsageError) -> None:
        text = " ".join(exc.format_message().split())  # click's suggestions ("Did you mean ...?") on one line
        text = text[:1].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text
        self.help_path = exc.ctx.command_path if exc.ctx is not None else "modelarc"
        super().__init__(text.rstrip("."))

    def show(self, file: Any = None) -> None:
        echo_error(f"{self.message} (see '{self.help_path} --help')")


class ArchiveGroup(CommandGroup):
    """Turns every ModelarcError into one ``error:`` line and its exit code, in one place."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:  # the group's own options (`modelarc --foo`): parsed before any command runs
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # a group named without a command (`modelarc keys`): its help is the answer
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # a command's arguments and options, parsed as it is invoked
            raise OneLineUsageError(exc) from None
        except ModelarcError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            echo_error(str(exc))
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # a full disk the core did not name itself (it names the store and pull destinations): one line
                where = f" writing {exc.filename}" if exc.filename else ""
                echo_error(f"disk full: no space left on the device{where} ({exc.strerror})")
                ctx.exit(DiskFullError.exit_code)
            # what the system refused and the core did not name (a folder not writable, a path that is a file):
            # still one line, never a traceback; --debug shows where
            echo_error(os_error_line(exc))
            ctx.exit(ModelarcError.exit_code)
        except UnicodeEncodeError as exc:
            # bytes that are not UTF-8, from an argument or a file (Python keeps them as lone surrogates), reaching
            # something that must store or send text: caught where they are read when we know the place; this is
            # the net for the places we do not
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
            shown = _unencodable(bad)
            echo_error(f"text that is not valid UTF-8 ({shown}) cannot be stored or sent; give it as UTF-8")
            ctx.exit(UsageError.exit_code)
        except OverflowError as exc:  # an integer beyond what the catalog or torch holds, from an option or a file
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            echo_error(f"a number is too large: {exc}")
            ctx.exit(UsageError.exit_code)
        except Terminated:
            echo_error(f"terminated; {INTERRUPTED}")
            ctx.exit(143)
        except KeyboardInterrupt:
            echo_error(f"interrupted; {INTERRUPTED}")
            ctx.exit(130)


def _unencodable(bad: str) -> str:
    """What UTF-8 could not encode, for the error line: the bytes an argument or file name held (Python keeps them
    as surrogate escapes, U+DC80-U+DCFF) in hex; any other lone surrogate (a JSON ``"\\ud800"``, which stands for
    no byte) as its escape. This net must not fail itself."""
    if not bad:
        return "?"
    try:
        return "bytes " + bad.encode("utf-8", "surrogateescape").hex()
    except UnicodeEncodeError:
        return bad.encode("ascii", "backslashreplace").decode("ascii")


class HomePath(click.Path):
    """``--home``, or ``MODELARC_HOME`` when the option is not given: a refusal names the one the value came from
    (click names the option either way, so a home set in the environment was blamed on a ``--home`` never typed)."""

    def __init__(self) -> None:
        super().__init__(file_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            if ctx is not None and param is not None and param.name is not None:
                if ctx.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT:
                    raise click.UsageError(f"MODELARC_HOME={value}: {exc.message}", ctx) from None
            raise


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, `kill`, a CI timeout): raised in the main thread like Ctrl-C, so every cleanup a
    Ctrl-C runs (temp files, threads, locks) runs too; Python's default would end the process on the spot."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


@click.group(cls=ArchiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="MODELARC_HOME",
    type=HomePath(),
    help="Archive home (default ~/.modelarc).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="modelarc")
@click.pass_context
def cli(ctx: click.Context, home: str | None, debug: bool) -> None:
    """modelarc: archive model weights deduplicated, compressed and signed, with their provenance."""
    ctx.obj = {"home": home, "debug": debug}


def os_error_line(exc: OSError) -> str:
    """``[Errno 13] Permission denied: '/x'`` as ``permission denied: /x``."""
    text = exc.strerror[:1].lower() + exc.strerror[1:] if exc.strerror else str(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{text}: {' -> '.join(paths)}" if paths else text


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)  # `serve` gets uvicorn's own handler, which shuts it down gracefully
    keep_freed_memory()
    pause_during_startup()  # until the archive is open (cli/startup.py)
    cli(prog_name="modelarc")


def keep_freed_memory() -> None:
    """Ask glibc to keep freed chunk buffers in the heap rather than hand them back to the kernel.

    Push, pull and serve allocate and free an 8 MiB buffer per chunk several times over; by default glibc maps each
    afresh and unmaps it when freed, so the kernel zeroes and faults in every page again. Measured on a 1 GB pull:
    1.67 s of system time with the default, 0.66-1.06 s with these settings (wall 3.0 s -> 2.3-2.8 s). The heap
    stays bounded by the chunks in flight. Only the CLI's own process is tuned (a library must not change its
    host's allocator); elsewhere than glibc this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: the largest glibc allows; chunks (8 MiB) stay in the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not give free heap back to the kernel below 1 GiB
        libc.mallopt(-2, 64 << 20)  # M_TOP_PAD: grow the heap in 64 MiB steps
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    main()
