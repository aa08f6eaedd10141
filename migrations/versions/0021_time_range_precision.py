"""datasets keep the precision of each time_range bound (time_start_precision, time_end_precision), as snapshots keep
cutoff_precision: a manifest's ``end: "2020-06"`` is all of June, not June 1st

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 02:00:00

Upgrade leaves the bounds recorded so far without a precision (unknown). The period the manifest named is in the
manifest object, in the store, which a migration of the catalog cannot read (registry/ knows nothing about bytes on
disk; the store may be remote). Such a row keeps its ``description_hash`` (a bound without a precision is hashed as
the ISO date it always was), shows its dates as before and claims no precision; the next attachment of the same
entry finds it (registry/datasets.py ``find_dataset``, by the hash an older modelarc gave it) and gives it the
manifest's precisions, and a catalog rebuilt from the store (``modelarc rebuild-catalog``) has them all.

Downgrade hashes the year and month bounds back as the dates 0020 records (``2020-06`` as ``2020-06-01``, as an older
modelarc recorded it), refused while two rows differ only in a bound's precision: the old schema cannot tell them
apart, and merging them would link snapshots to a description their manifests did not give.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_FIELDS = (
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

_datasets = sa.table(
    "datasets",
    sa.column("id", sa.Integer()),
    sa.column("content_hash", sa.String()),
    sa.column("description_hash", sa.String()),
    sa.column("name", sa.String()),
    sa.column("version", sa.String()),
    sa.column("source_url", sa.Text()),
    sa.column("license", sa.String()),
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("records", sa.BigInteger()),
    sa.column("tokens", sa.BigInteger()),
    sa.column("time_start", sa.Date()),
    sa.column("time_end", sa.Date()),
    sa.column("notes", sa.Text()),
    sa.column("time_start_precision", sa.String()),
    sa.column("time_end_precision", sa.String()),
)


def _day_description_hash(fields: dict[str, Any]) -> str:
    """Frozen copy of registry/dataset_identity.py ``description_hash_of`` (format 1) with every bound a day: the
    hash revision 0020's modelarc gives the row."""

    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, dt.date) else value

    doc = {"format": 1, **{f: plain(fields.get(f)) for f in _FIELDS}}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def upgrade() -> None:
    op.add_column("datasets", sa.Column("time_start_precision", sa.String(length=5), nullable=True))
    op.add_column("datasets", sa.Column("time_end_precision", sa.String(length=5), nullable=True))
    # the bounds recorded so far keep no precision (unknown: the manifest, in the store, is beyond a migration's
    # reach); the next attachment of the same entry gives its row the manifest's (registry/datasets.py
    # find_dataset), as does a rebuild. Marked 'day', they claimed a precision the manifest may not have given


def downgrade() -> None:
    conn = op.get_bind()
    coarse = conn.execute(
        sa.select(_datasets.c.id, _datasets.c.description_hash, *(_datasets.c[f] for f in _FIELDS))
        .where(
            sa.or_(
                _datasets.c.time_start_precision.in_(("year", "month")),
                _datasets.c.time_end_precision.in_(("year", "month")),
            )
        )
        .order_by(_datasets.c.id)
    ).all()
    rehashed = {}
    for row in coarse:
        fields = row._asdict()
        rehashed[fields.pop("id")] = _day_description_hash(fields)
    clashes = sorted(
        row_id
        for row_id, digest in rehashed.items()
        if list(rehashed.values()).count(digest) > 1
        or conn.scalar(
            sa.select(sa.func.count())
            .select_from(_datasets)
            .where(_datasets.c.description_hash == digest, _datasets.c.id.not_in(list(rehashed)))
        )
    )
    if clashes:
        listed = ", ".join(map(str, clashes[:3]))
        raise RuntimeError(
            f"cannot downgrade below 0021: datasets (ids {listed}) are described as another row is but for the "
            "precision of a time_range bound; revision 0020 cannot tell them apart, and merging them would show "
            "snapshots with a description their manifests did not give"
        )
    for row_id, digest in rehashed.items():
        conn.execute(sa.update(_datasets).where(_datasets.c.id == row_id).values(description_hash=digest))
    op.drop_column("datasets", "time_end_precision")
    op.drop_column("datasets", "time_start_precision")
