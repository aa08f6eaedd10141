"""Text a snapshot's provenance may not state: what no catalog column can hold.

PostgreSQL refuses a NUL in a text column, and neither database stores a lone UTF-16 surrogate (how Python
presents bytes that are not UTF-8, and what a JSON ``"\\ud800"`` escape decodes to). Such a description, licence or
source URL reached the database as a driver error (a traceback from the Python API, a Hub card's description, or an
offer from a remote) after the push had stored every object; refused where provenance enters an archive, before a
byte moves, as the dates are (``dates.py``).
"""

from __future__ import annotations

from modelarc.errors import UsageError
from modelarc.registry.records import Provenance

_TEXT_FIELDS = ("license", "description", "source_url", "cutoff_precision")


def unstorable(text: str) -> str | None:
    """Why the catalog cannot store ``text``, or None."""
    if "\x00" in text:
        return "it holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "it holds a lone UTF-16 surrogate (bytes that are not UTF-8, or an escape like \\udcff)"
    return None


def refuse_unstorable_text(provenance: Provenance, where: str) -> None:
    """``UsageError`` naming the field whose text no catalog can hold (``unstorable``)."""
    fields = [(name, getattr(provenance, name)) for name in _TEXT_FIELDS]
    fields += [(f"parent {ref!r}", ref) for ref, _relation in provenance.parents]
    for name, value in fields:
        problem = unstorable(value) if isinstance(value, str) else None
        if problem:
            raise UsageError(f"{where}: {name}: the catalog cannot store this text: {problem}")
