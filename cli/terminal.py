"""The rich console every command prints through (made on first use by cli/output.py, which loads no rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from modelarc.cli.output import terminal_safe


class TerminalConsole(Console):
    """A rich console that prints strings as plain text: no markup, no emoji codes, control characters escaped.

    rich turns every str it prints (``print`` arguments, table cells, tree labels) into text through
    ``render_str``, so overriding it covers them all.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(terminal_safe(text), **kwargs)
