"""What makes two recorded dataset versions the same row: their whole description, not only the hash they state.

A training-data manifest entry states a ``sha256`` (of the data files or of the dataset's own manifest), or is keyed
by the hash of its description (archive/provenance/data.py ``content_hash``). That hash is public: anyone may state
a well-known dataset's published digest under another name, licence or notes. If the first description recorded for
a hash were shared by every later entry naming it, whoever pushed first would label every later model trained on
that data (``show``, ``ls --trained-on``, ``/v1/datasets``). So a row is one *description*: the same description
is one row whoever gives it (dedup as before), a different description of the same hash is another row, and each
snapshot is linked to exactly what its own manifest said.

``description_hash`` is computed from the fields as the catalog stores them, so a row already recorded and a new
entry describing it alike meet: migration 0017 fills the column of older rows with a frozen copy of this function.
Changing what it hashes, or how, splits every recorded row from new entries describing it: it needs a new
``_FORMAT`` and a migration that recomputes the column.

A ``time_range`` bound is hashed as the manifest wrote it, at its precision (``2020-06``, ``2010``), so ``2020-06``
and ``2020-06-01`` are two descriptions. A bound of day precision (or of none: rows recorded before migration 0021,
whose precision is unknown until their entry is attached again) is the ISO date format 1 always hashed, so no
recorded hash changed and the format stayed 1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Protocol

_FORMAT = 1

# The recorded fields of a dataset version, named as the catalog's columns: everything ``show`` and ``data show``
# print about it except the role (which belongs to the attachment, not the dataset).
DESCRIPTION_FIELDS = (
    "content_hash",
    "name",
    "version",
    "source_url",
    "license",
    "size_bytes",
    "records",
    "tokens",
    "time_start",
    "time_end",
    "notes",
)

# the column holding the precision of each dated field: the period a bound names is part of the description
PRECISION_FIELDS = {"time_start": "time_start_precision", "time_end": "time_end_precision"}


class DatasetDescription(Protocol):
    """A dataset version with the recorded fields: a new manifest entry (``NewDataset``) or a catalog row."""

    content_hash: str
    name: str
    version: str | None
    source_url: str | None
    license: str | None
    size_bytes: int | None
    records: int | None
    tokens: int | None
    time_start: dt.date | None
    time_end: dt.date | None
    notes: str | None
    time_start_precision: str | None
    time_end_precision: str | None


def description_hash(dataset: DatasetDescription) -> str:
    """The sha256 that identifies ``dataset``'s row: equal for equal recorded fields, whatever else differs."""
    named = DESCRIPTION_FIELDS + tuple(PRECISION_FIELDS.values())
    return description_hash_of({f: getattr(dataset, f) for f in named})


def description_hash_of(fields: dict[str, Any]) -> str:
    """``description_hash`` of a mapping from column name to value (absent: NULL), as an INSERT's parameters are."""
    doc = {"format": _FORMAT, **{f: _plain(fields.get(f)) for f in DESCRIPTION_FIELDS}}
    for f, precision in PRECISION_FIELDS.items():
        doc[f] = bound_text(fields.get(f), fields.get(precision))
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _plain(value: Any) -> Any:
    """A date as its ISO text (how SQLite returns one read without its column type), anything else as stored."""
    return value.isoformat() if isinstance(value, dt.date) else value


def bound_text(value: Any, precision: str | None) -> Any:
    """A dated bound as the manifest wrote it: ``2020-06`` for month precision, ``2010`` for year, the ISO date for
    day (or no) precision. What is hashed, so it may not change (see the module's docstring)."""
    text = _plain(value)
    if not isinstance(text, str):
        return text
    return {"year": text[:4], "month": text[:7]}.get(precision or "day", text)
