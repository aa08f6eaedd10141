"""The read side of the catalog as the CLI, the /v1 JSON API and the HTML catalog present it.

Each function opens its own sessions and returns frozen values that do not need them any more, so the layers above
never touch the database. Every result that is printed as JSON has one ``to_json()``, used by ``--json`` and by
/v1 alike; free-form documents (a snapshot's ``architecture``, from its config.json) stay dicts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from modelarc.archive.provenance.statement import ProvenanceSource, provenance_source
from modelarc.archive.repository import Archive, refuse_if_withdrawn
from modelarc.errors import IntegrityError, NotFoundError, ObjectMissingError, SignatureError
from modelarc.registry import datasets as dq
from modelarc.registry import queries as q
from modelarc.registry.datasets import AttachedDataset, DatasetPage, DatasetVersion
from modelarc.registry.keys import SignatureRecord, signatures_of
from modelarc.registry.model_listing import ModelSummary
from modelarc.registry.model_listing import list_models as _list_models
from modelarc.registry.queries import AuditEntry
from modelarc.registry.refs import Ref, SnapshotId, parse_model_name
from modelarc.registry.snapshot_search import format_cutoff_value
from modelarc.registry.snapshots import FileRecord, FormatTensors, ParentLink, parents_of, tensors_by_format
from modelarc.registry.snapshots import snapshot_files as file_records


# ----------------------------------------------------------------------------------------------- show
@dataclass(frozen=True)
class Withdrawal:
    at: str  # ISO 8601, seconds
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "reason": self.reason}


@dataclass(frozen=True)
class SnapshotView:
    """Everything ``show`` prints about one snapshot (and ``GET /v1/snapshots/{ns}/{name}/{rev}`` answers)."""

    model: str
    snapshot: SnapshotId
    tags: tuple[str, ...]
    created_at: str  # ISO 8601, seconds
    logical_bytes: int
    stored_bytes_added: int
    file_count: int
    tensor_count: int
    parameter_count: int  # over every tensor, of every format (the catalog's figure, as records state it)
    dtypes: dict[str, int]  # dtype -> parameters, likewise over every format
    architecture: dict[str, Any]  # what config.json said, free-form
    cutoff: str | None  # YYYY, YYYY-MM or YYYY-MM-DD
    license: str | None
    description: str | None
    source_url: str | None
    pushed_by: str | None
    parents: tuple[ParentLink, ...]
    files: tuple[FileRecord, ...]
    signatures: tuple[SignatureRecord, ...]
    withdrawn: Withdrawal | None = None
    release_date: str | None = None
    datasets: tuple[AttachedDataset, ...] = ()
    # file kind (safetensors, gguf) -> its own tensors: a snapshot with both lists each format's apart
    tensors_by_format: dict[str, FormatTensors] = field(default_factory=dict)

    @property
    def stated_by(self) -> ProvenanceSource | None:
        """Who stated the provenance: the pusher, or the remote a pull took it from."""
        return provenance_source(self.pushed_by)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "snapshot": self.snapshot,
            "tags": list(self.tags),
            "created_at": self.created_at,
            "logical_bytes": self.logical_bytes,
            "stored_bytes_added": self.stored_bytes_added,
            "file_count": self.file_count,
            "tensor_count": self.tensor_count,
            "parameter_count": self.parameter_count,
            "dtypes": dict(self.dtypes),
            "tensors_by_format": {kind: t.to_json() for kind, t in self.tensors_by_format.items()},
            "architecture": dict(self.architecture),
            "cutoff": self.cutoff,
            "license": self.license,
            "description": self.description,
            "source_url": self.source_url,
            "pushed_by": self.pushed_by,
            # whose word the provenance (cutoff, license, release date, source, description, parents, datasets)
            # is: no signature covers it, the bundles sign the files only
            "provenance_stated_by": self.stated_by.to_json() if self.stated_by else None,
            "parents": [p.to_json() for p in self.parents],
            "files": [f.to_json() for f in self.files],
            "signatures": [sig.to_json() for sig in self.signatures],
            "withdrawn": self.withdrawn.to_json() if self.withdrawn else None,
            "release_date": self.release_date,
            "datasets": [d.to_json() for d in self.datasets],
        }


def snapshot_view(archive: Archive, ref: Ref | str) -> SnapshotView:
    _ref, snap = archive.resolve(ref)
    with archive.catalog.session() as s:
        tags = q.tags_by_snapshot(s, [snap.row_id]).get(snap.row_id, [])
        parents = parents_of(s, snap.row_id)
        files = file_records(s, snap.row_id)
        signatures = signatures_of(s, snap.row_id)
        datasets = dq.snapshot_datasets(s, snap.row_id)
        by_format = tensors_by_format(s, snap.row_id)
    return SnapshotView(
        model=snap.model,
        snapshot=snap.digest,
        tags=tuple(tags),
        created_at=snap.created_at.isoformat(timespec="seconds"),
        logical_bytes=snap.logical_bytes,
        stored_bytes_added=snap.stored_bytes_added,
        file_count=snap.file_count,
        tensor_count=snap.tensor_count,
        parameter_count=snap.parameter_count,
        dtypes=dict(snap.dtypes),
        architecture=dict(snap.architecture),
        cutoff=format_cutoff_value(snap.cutoff, snap.cutoff_precision),
        license=snap.license,
        description=snap.description,
        source_url=snap.source_url,
        pushed_by=snap.pushed_by,
        parents=tuple(parents),
        files=tuple(files),
        signatures=tuple(signatures),
        release_date=snap.release_date.isoformat() if snap.release_date else None,
        datasets=tuple(datasets),
        tensors_by_format=by_format,
        withdrawn=(
            Withdrawal(snap.tombstoned_at.isoformat(timespec="seconds"), snap.tombstone_reason or "")
            if snap.tombstoned_at is not None
            else None
        ),
    )


# ----------------------------------------------------------------------------------------------- log
@dataclass(frozen=True)
class LoggedSnapshot:
    snapshot: SnapshotId
    tags: tuple[str, ...]
    created_at: str  # ISO 8601, seconds
    pushed_by: str | None
    logical_bytes: int
    stored_bytes_added: int

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "tags": list(self.tags),
            "created_at": self.created_at,
            "pushed_by": self.pushed_by,
            "logical_bytes": self.logical_bytes,
            "stored_bytes_added": self.stored_bytes_added,
        }


@dataclass(frozen=True)
class TagMove:
    """One move of a tag; ``from_snapshot`` is None when the move created the tag. JSON: ``from``/``to``."""

    tag: str
    from_snapshot: SnapshotId | None
    to_snapshot: SnapshotId | None
    at: str  # ISO 8601, seconds
    actor: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "from": self.from_snapshot,
            "to": self.to_snapshot,
            "at": self.at,
            "actor": self.actor,
        }


@dataclass(frozen=True)
class ModelHistory:
    """``modelarc log``: a model's snapshots, newest first, and every tag move, newest first."""

    model: str
    snapshots: tuple[LoggedSnapshot, ...]
    tag_moves: tuple[TagMove, ...]

    def tags(self) -> dict[str, SnapshotId]:
        """Where each tag points now."""
        return {t: sn.snapshot for sn in self.snapshots for t in sn.tags}

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "snapshots": [sn.to_json() for sn in self.snapshots],
            "tag_moves": [mv.to_json() for mv in self.tag_moves],
        }


def model_history(archive: Archive, model_name: str) -> ModelHistory:
    ns, name = parse_model_name(model_name)
    with archive.catalog.session() as s:
        model = q.require_model(s, ns, name)
        snaps = q.list_snapshots(s, model)
        tags = q.tags_by_snapshot(s, [sn.row_id for sn in snaps])
        digests = {sn.row_id: sn.digest for sn in snaps}
        moves = tuple(
            TagMove(
                tag=h.tag,
                from_snapshot=digests.get(h.old_snapshot_id) if h.old_snapshot_id else None,
                to_snapshot=digests.get(h.new_snapshot_id),
                at=h.moved_at.isoformat(timespec="seconds"),
                actor=h.actor,
            )
            for h in q.tag_history(s, model)
        )
        full_name = model.full_name
    logged = tuple(
        LoggedSnapshot(
            snapshot=sn.digest,
            tags=tuple(tags.get(sn.row_id, [])),
            created_at=sn.created_at.isoformat(timespec="seconds"),
            pushed_by=sn.pushed_by,
            logical_bytes=sn.logical_bytes,
            stored_bytes_added=sn.stored_bytes_added,
        )
        for sn in snaps
    )
    return ModelHistory(full_name, logged, moves)


# ----------------------------------------------------------------------------------------------- stats
@dataclass(frozen=True)
class ArchiveStats:
    """``modelarc stats``: logical bytes (every snapshot's files), unique (after dedup), stored (compressed)."""

    models: int
    snapshots: int
    objects: int
    logical_bytes: int
    unique_bytes: int
    stored_bytes: int
    store_bytes_on_disk: int
    deltas: DeltaStats | None = None

    @property
    def dedup_ratio(self) -> float | None:
        return (self.logical_bytes / self.unique_bytes) if self.unique_bytes else None

    @property
    def compression_ratio(self) -> float | None:
        return (self.stored_bytes / self.unique_bytes) if self.unique_bytes else None

    @property
    def overall_ratio(self) -> float | None:
        return (self.stored_bytes / self.logical_bytes) if self.logical_bytes else None

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "snapshots": self.snapshots,
            "objects": self.objects,
            "logical_bytes": self.logical_bytes,
            "unique_bytes": self.unique_bytes,
            "stored_bytes": self.stored_bytes,
            "store_bytes_on_disk": self.store_bytes_on_disk,
            "dedup_ratio": self.dedup_ratio,
            "compression_ratio": self.compression_ratio,
            "overall_ratio": self.overall_ratio,
            "deltas": (self.deltas or DeltaStats()).to_json(),
        }


@dataclass(frozen=True)
class DeltaStats:
    """What storing fine-tunes as deltas against their parents saved (archive/deltas.py)."""

    objects: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    # for the deltas this archive wrote itself, the push measured both encodings
    standalone_bytes: int = 0
    measured_stored_bytes: int = 0
    unmeasured: int = 0  # deltas received from another archive: what they would take alone was not measured

    @property
    def saved_bytes(self) -> int:
        return self.standalone_bytes - self.measured_stored_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes,
            "standalone_bytes": self.standalone_bytes,
            "saved_bytes": self.saved_bytes,
            "unmeasured_objects": self.unmeasured,
        }


def archive_stats(archive: Archive) -> ArchiveStats:
    with archive.catalog.session() as s:
        st = q.catalog_stats(s)
    on_disk = 0
    for oid in archive.store.iter_ids():
        try:
            on_disk += archive.store.stored_size(oid)
        except ObjectMissingError:
            pass
    return ArchiveStats(
        models=st.models,
        snapshots=st.snapshots,
        objects=st.objects,
        logical_bytes=st.logical_bytes,
        unique_bytes=st.unique_raw_bytes,
        stored_bytes=st.stored_bytes,
        store_bytes_on_disk=on_disk,
        deltas=DeltaStats(
            st.delta_objects,
            st.delta_raw_bytes,
            st.delta_stored_bytes,
            st.delta_standalone_bytes,
            st.delta_measured_stored_bytes,
            st.delta_unmeasured,
        ),
    )


# ----------------------------------------------------------------------------------------------- browsing
def list_models(
    archive: Archive, *, name_contains: str | None = None, limit: int = 100, offset: int = 0
) -> list[ModelSummary]:
    with archive.catalog.session() as s:
        return _list_models(s, name_contains=name_contains, limit=limit, offset=offset)


def list_datasets(archive: Archive, *, limit: int = 100, cursor: str | None = None) -> DatasetPage:
    """A page of datasets by name; ``cursor`` is the previous page's ``next_cursor`` (``data ls``, /v1/datasets)."""
    with archive.catalog.session() as s:
        return dq.list_datasets(s, limit=limit, cursor=cursor)


def dataset_versions(archive: Archive, name: str) -> list[DatasetVersion]:
    """Every version of dataset ``name`` with the snapshots trained on it (none: no such dataset)."""
    with archive.catalog.session() as s:
        return dq.dataset_detail(s, name)


def dataset(archive: Archive, name: str) -> list[DatasetVersion]:
    """``dataset_versions``, or NotFoundError if there is none."""
    found = dataset_versions(archive, name)
    if not found:
        raise NotFoundError(f"no dataset named {name!r}")
    return found


def audit_log(
    archive: Archive, *, action: str | None = None, since: dt.date | None = None, limit: int = 100
) -> list[AuditEntry]:
    """``modelarc audit``: the newest events first, of ``action`` only and on or after ``since`` when given."""
    with archive.catalog.session() as s:
        return q.audit_events(s, action=action, since=since, limit=limit)


def audit_actions(archive: Archive) -> list[str]:
    """The actions ``modelarc audit --action`` can find in this archive's log."""
    with archive.catalog.session() as s:
        return q.audit_actions(s)


@dataclass(frozen=True)
class FileSummary:
    """A file of a snapshot's manifest with its tensor count (``GET /v1/snapshots/.../files``)."""

    path: str
    size: int
    sha256: str
    kind: str
    tensors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "kind": self.kind,
            "tensors": self.tensors,
        }


def snapshot_files(archive: Archive, ref: Ref | str) -> list[FileSummary]:
    _ref, snap = archive.resolve(ref)
    manifest = archive.manifest(snap)
    return [
        FileSummary(f.path, f.size, f.sha256, f.kind, sum(1 for _ in f.tensors())) for f in manifest.files
    ]


@dataclass(frozen=True)
class TensorRow:
    name: str
    file: str
    format: str  # the file's kind (safetensors, gguf): what its dtype names and its shape's order mean
    dtype: str
    shape: tuple[int, ...]
    offset: int
    length: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "format": self.format,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "offset": self.offset,
            "length": self.length,
            "digest": self.digest,
        }


def snapshot_tensors(archive: Archive, ref: Ref | str, *, limit: int, offset: int) -> list[TensorRow]:
    _ref, snap = archive.resolve(ref)
    manifest = archive.manifest(snap)
    rows = [
        TensorRow(
            p.name or "", f.path, f.kind, p.dtype or "", tuple(p.shape or ()), p.offset, p.length, p.digest
        )
        for f, p in manifest.tensors()
    ]
    return rows[offset : offset + limit]


def snapshot_manifest_bytes(archive: Archive, ref: Ref | str) -> tuple[SnapshotId, bytes]:
    """The canonical manifest (its sha256 is the snapshot id), for clients that verify it themselves."""
    resolved, snap = archive.resolve(ref)
    refuse_if_withdrawn(snap, str(resolved))
    return snap.digest, archive.manifest(snap).canonical_bytes()


@dataclass(frozen=True)
class SignatureStatus:
    verified: bool
    key: str | None  # fingerprint of the trusted key that signed it
    detail: str


def signature_status(archive: Archive, ref: Ref | str) -> SignatureStatus:
    """Checked now, against the keys trusted now: a page shows what a pull would accept."""
    _ref, snap = archive.resolve(ref)
    try:
        key = archive.check_signature(snap)
    except (SignatureError, IntegrityError) as exc:
        return SignatureStatus(False, None, str(exc))
    return SignatureStatus(
        True, key, "signed by a trusted key; the signature covers every file's sha256, not the provenance"
    )
