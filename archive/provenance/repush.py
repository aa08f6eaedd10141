"""A re-push of bytes already archived under the same model: the provenance it gives must be what is recorded.

A snapshot's provenance (cutoff, license, description, source, release date, declared parents) is written once,
when the snapshot is first recorded, into its catalog row and into the immutable ``snapshot`` catalog record in the
store (docs/FORMAT.md "Catalog records"; a re-push's record says ``merge: false``). No command changes it
afterwards. So a re-push that states other provenance cannot be honoured, and it is refused before the tag moves:
telling the user "pushed" while dropping the license or the parent they gave would leave the catalog saying less
(or other) than they believe it says. What the re-push does not state is not a difference. A parent the first
recording declared but could not record (a received snapshot whose parent the receiver lacked) is no difference
either: it was declared then, and a push that brings it now records exactly that edge.

A difference is named by its field, as an offer's provenance names it (``POST /v1/transfer/commit``), and by the
push option that gives it: the same refusal reaches a CLI user and an HTTP client.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from modelarc.errors import NotFoundError, ProvenanceConflictError
from modelarc.registry import queries as q
from modelarc.registry.db import CatalogSession
from modelarc.registry.records import Provenance
from modelarc.registry.refs import Ref, SnapshotId
from modelarc.registry.snapshot_search import format_cutoff_value
from modelarc.registry.snapshots import SnapshotRecord, parents_of, unrecorded_parents_of

# (Provenance field, as an offer names it, the push option that gives it)
_FIELDS = (
    ("license", "--license"),
    ("description", "--description"),
    ("source_url", "--source"),
    ("release_date", "--released"),
)


def refuse_other_provenance(
    s: CatalogSession,
    model: Ref,
    snapshot: SnapshotId,
    provenance: Provenance,
    parents: Sequence[tuple[Ref, str]],
) -> None:
    """Raise ``ProvenanceConflictError`` when ``model`` already holds ``snapshot`` and ``provenance`` (or
    ``parents``) states something its record does not say; nothing when the snapshot is new to the model."""
    try:
        existing = q.resolve_snapshot(s, Ref(model.namespace, model.name, digest=snapshot))
    except NotFoundError:
        return
    differences = _field_differences(existing, provenance)
    # what its first recording declared: the parents it has, and those this catalog lacked then (a received
    # snapshot's ``parents_missing``), which a push that brings them now records (registry/recording.py)
    declared = [*parents_of(s, existing.row_id), *unrecorded_parents_of(s, existing.row_id)]
    recorded = {(p.model, p.snapshot, p.relation) for p in declared}
    for ref, relation in parents:
        parent = q.resolve_snapshot(s, ref)
        if (parent.model, parent.digest, relation) not in recorded:
            differences.append(
                f"parent {_short(parent.model, parent.digest)} {relation} (--parent/--relation; not recorded)"
            )
    if differences:
        raise ProvenanceConflictError(
            f"{model}: these files are already archived as {_short(existing.model, existing.digest)} with other "
            f"provenance: {'; '.join(differences)}; a snapshot's provenance is fixed at its first push and no "
            "command changes it, so nothing was changed"
        )


def _field_differences(existing: SnapshotRecord, provenance: Provenance) -> list[str]:
    """``field given (--option; recorded: ...)`` for each field the push states and the record does not say."""
    out = []
    if provenance.cutoff is not None and (provenance.cutoff, provenance.cutoff_precision) != (
        existing.cutoff,
        existing.cutoff_precision,
    ):
        given = format_cutoff_value(provenance.cutoff, provenance.cutoff_precision)
        out.append(f"cutoff {given} (--cutoff; recorded: {_shown(existing.cutoff, existing.cutoff_precision)})")
    for name, option in _FIELDS:
        given_value = getattr(provenance, name)
        recorded_value = getattr(existing, name)
        if given_value is not None and given_value != recorded_value:
            out.append(f"{name} {_shown(given_value)} ({option}; recorded: {_shown(recorded_value)})")
    return out


def _short(model: str, digest: str) -> str:
    """``ns/name@sha256:<12 hex>``: a unique prefix names the snapshot and keeps the line readable."""
    return f"{model}@{digest[:19]}"


def _shown(value: object, precision: str | None = None) -> str:
    if value is None:
        return "none"
    if isinstance(value, dt.date):
        return format_cutoff_value(value, precision) or "none"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
