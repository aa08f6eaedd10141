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
from typing import Any

import click
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


class TerminalConsole(Console):
    """A rich console that prints strings as plain text: no markup, no emoji codes, control characters escaped.

    rich turns every str it prints (``print`` arguments, table cells, tree labels) into text through
    ``render_str``, so overriding it covers them all.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(terminal_safe(text), **kwargs)


def styled(text: str, style: str) -> Text:
    """``text`` (made terminal-safe) in a rich style such as ``"bold red"``: what markup was used for before."""
    return Text(terminal_safe(text), style=style)


def line(*parts: str | tuple[str, str]) -> Text:
    """One line from plain strings and ``(text, style)`` pairs, every part made terminal-safe."""
    out = Text()
    for part in parts:
        text, style = part if isinstance(part, tuple) else (part, "")
        out.append(terminal_safe(text), style=style)
    return out


# Piped output keeps full ids and names instead of squeezing tables to 80 columns.
console = TerminalConsole(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err_console = TerminalConsole(stderr=True)


def echo_error(message: str) -> None:
    """The one ``error: <message>`` line on stderr; the message may carry names from a model or a manifest."""
    click.echo(f"error: {terminal_safe(message)}", err=True)


def echo_warning(message: str) -> None:
    """A ``warning: <message>`` line on stderr: something was left out or done differently, not a failure."""
    click.echo(f"warning: {terminal_safe(message)}", err=True)


def emit_json(value: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


@contextmanager
def byte_progress(
    description: str, enabled: bool
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """(advance, set_total) callbacks; a rich bar with bytes and rate only when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield (lambda _n: None), (lambda _t: None)
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
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield (lambda n: bar.advance(task, n)), (lambda t: bar.update(task, total=t))
