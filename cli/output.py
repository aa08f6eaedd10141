"""Formatting helpers shared by the commands: sizes, JSON, progress bars, and the one place errors become text.

Text printed to a terminal is made safe here, once, not at each call site: file names, descriptions, licences,
config.json fields and error messages come from whoever made the model or the manifest, and an ESC or other
control character in them must not drive the terminal (colours, cursor moves, OSC 8 links, a forged line). So the
console renders every string with control characters shown as escapes (``\x1b``) and with rich's markup and
emoji codes off (a ``[link=...]`` or ``[/]`` in a file name stays text); the commands style text with
``styled()``/``line()`` instead of markup. ``--json`` output is JSON-escaped already and goes around all this.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# C0 controls (newline and tab included: a newline in a description could forge a line of `show`), DEL, C1
# controls, and lone surrogates (how Python presents file-name bytes that are not UTF-8).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a surrogate-escaped byte: show the byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: str, *, keep: str = "") -> str:
    """``text`` with every control character (and undecodable byte) replaced by a visible escape such as ``\\x1b``.

    ``keep`` lists controls to let through, e.g. ``"\\n\\t"`` for a model's generated text, whose lines are
    its own but whose escape sequences must not drive the terminal.
    """
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)


def styled(text: str, style: str) -> Text:
    """``text`` (made terminal-safe) in a rich style such as ``"bold red"``: what markup was used for before."""
    from rich.text import Text

    return Text(terminal_safe(text), style=style)


def line(*parts: str | tuple[str, str]) -> Text:
    """One line from plain strings and ``(text, style)`` pairs, every part made terminal-safe."""
    from rich.text import Text

    out = Text()
    for part in parts:
        text, style = part if isinstance(part, tuple) else (part, "")
        out.append(terminal_safe(text), style=style)
    return out


class _DeferredConsole:
    """A ``TerminalConsole`` (cli/terminal.py) made on first use, so that importing this module loads no rich.

    Every command module imports ``console`` from here, and rich's console costs ~30 ms of start-up that `push`
    and `pull` (which print plain lines with ``echo_line``), ``--json`` and ``--help`` need not pay.
    """

    def __init__(self, make: Callable[[], Console]) -> None:
        self._make = make
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def get(self) -> Console:
        """The console itself, for rich APIs that take one (a ``Progress``)."""
        if self._console is None:
            self._console = self._make()
        return self._console


def _stdout_console() -> Console:
    from modelarc.cli.terminal import TerminalConsole

    # Piped output keeps full ids and names instead of squeezing tables to 80 columns.
    return TerminalConsole(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def _stderr_console() -> Console:
    from modelarc.cli.terminal import TerminalConsole

    return TerminalConsole(stderr=True)


_stdout = _DeferredConsole(_stdout_console)
_stderr = _DeferredConsole(_stderr_console)
console = cast("Console", _stdout)
err_console = cast("Console", _stderr)


def echo_line(text: str) -> None:
    """One plain line on stdout, made terminal-safe: what ``console.print(text)`` prints for a str (no markup,
    no highlighting, soft wrap), without loading rich."""
    click.echo(terminal_safe(text))


def echo_error(message: str) -> None:
    """The one ``error: <message>`` line on stderr; the message may carry names from a model or a manifest."""
    click.echo(f"error: {terminal_safe(message)}", err=True)


# why a declared parent's edge was left out of an existing snapshot (registry/recording.py add_declared_lineage)
LINEAGE_CYCLE = "the parent already descends from it, so the edge would close a cycle"


def echo_warning(message: str) -> None:
    """A ``warning: <message>`` line on stderr: something was left out or done differently, not a failure."""
    click.echo(f"warning: {terminal_safe(message)}", err=True)


def say_left_records(completed: str | None, others: tuple[str, ...], *, change: str, command: str, of: str) -> None:
    """What a command run again after a kill before its commit did with the records such runs leave
    (archive/left_records.py): the one it completed (its ``change``, e.g. "withdrawal"), and a warning per other
    record of the same thing (``of``, e.g. "this snapshot") that says otherwise and stays for fsck to name."""
    if completed:
        console.print(
            f"completed the {change} an earlier {command} stopped before its commit: its record {completed} "
            "is this one's (dated when that run started it)"
        )
    for key in others:
        echo_warning(
            f"{key}, left by an earlier {command} of {of} stopped before its commit (or put there since), is not "
            f"this {change} (it says otherwise, or is dated outside that run, or a later change followed it): "
            "fsck names it; move it out of records/ unless a rebuild should replay it"
        )


def emit_json(value: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@contextmanager
def byte_progress(
    description: str, enabled: bool
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(advance, set_total) callbacks; a rich bar with bytes and rate only when stderr is a terminal."""
    with byte_progress_steps([description], enabled) as steps:
        yield steps[0]


@contextmanager
def byte_progress_steps(
    descriptions: list[str], enabled: bool
) -> Iterator[list[tuple[Callable[[int], None], Callable[[int], None]]]]:
    """One (advance, set_total) pair per step of a command (a Hub import: download, then push), as bars in one
    display (rich shows one at a time); a step's bar appears when it begins. Thread-safe, as rich's ``Progress`` is:
    downloads advance it from their threads. Only when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield [((lambda _n: None), (lambda _t: None)) for _ in descriptions]
        return
    # imported only for a bar: every command loads this module, and rich.progress brings tables and spinners
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_stderr.get(),
        transient=True,
    ) as bar:
        tasks = [bar.add_task(d, total=None, visible=n == 0) for n, d in enumerate(descriptions)]

        def step(task: Any) -> tuple[Callable[[int], None], Callable[[int], None]]:
            return (
                lambda n: bar.update(task, advance=n, visible=True),
                lambda t: bar.update(task, total=t, visible=True),
            )

        yield [step(task) for task in tasks]
