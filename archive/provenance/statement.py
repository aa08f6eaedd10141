"""Who stated a snapshot's provenance: the pusher of a local or received push, or the remote a pull took it from.

A signature bundle signs the files of a snapshot (docs/FORMAT.md "Signature bundle"), never its cutoff, license,
release date, source, description, parents, architecture or training-data manifests: those are the word of whoever
stated them. A snapshot pulled with ``pull --remote`` was described by the remote's offer, which anything between
the puller and the remote could have rewritten; crediting that description to the local user (who only asked for
it) would make it look like his own word. So a pulled snapshot's ``pushed_by`` (catalog row, ``snapshot`` record,
and the commit's audit entry and tag move) names the remote: ``remote:<name>:<url>``, as a server names a token
``token:<id>:<name>``. The form may not change: records carry it, and a rebuild keeps it as written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REMOTE_PREFIX = "remote:"
MAX_PUSHED_BY = 200  # the catalog's column (registry/models.py ``Snapshot.pushed_by``)


@dataclass(frozen=True)
class ProvenanceSource:
    """Whose word a snapshot's provenance is: ``remote`` (a pull: ``name`` and ``url``) or ``pusher``."""

    kind: str  # "remote" or "pusher"
    name: str
    url: str | None = None

    def describe(self) -> str:
        """``remote origin (http://host:8470)`` or the pusher's identity, for a sentence."""
        return f"remote {self.name} ({self.url})" if self.kind == "remote" else self.name

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "url": self.url}


def remote_identity(name: str, url: str) -> str:
    """The ``pushed_by`` (and actor) of what a pull from remote ``name`` at ``url`` records.

    Credentials in the URL (``http://user:pass@host``) are left out, as are a query and a fragment; a URL that
    would not fit the catalog's column is cut, marked with ``…``: it names the remote for a reader, nothing reads
    it back to connect.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address goes back between brackets
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    text = f"{REMOTE_PREFIX}{name}:{clean}"
    return text if len(text) <= MAX_PUSHED_BY else text[: MAX_PUSHED_BY - 1] + "…"


def provenance_source(pushed_by: str | None) -> ProvenanceSource | None:
    """Who stated the provenance of a snapshot recorded with ``pushed_by`` (None: not known, an old catalog's)."""
    if not pushed_by:
        return None
    if pushed_by.startswith(REMOTE_PREFIX):
        name, sep, url = pushed_by[len(REMOTE_PREFIX) :].partition(":")
        if sep and name:
            return ProvenanceSource("remote", name, url)
    return ProvenanceSource("pusher", pushed_by)


def describe_pusher(pushed_by: str | None) -> str:
    """``pushed_by`` for a sentence (``remote origin (http://...)``), or ``-`` when not known."""
    source = provenance_source(pushed_by)
    return source.describe() if source else "-"
