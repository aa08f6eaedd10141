"""Read-only views of the catalog for browsing clients (the /v1 JSON API and the HTML catalog).

Plain dicts and dataclasses shaped for display; each function opens one session and returns values that do not
need it any more, so the web layer never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelarc.archive.repository import Archive, refuse_if_withdrawn
from modelarc.errors import IntegrityError, NotFoundError, SignatureError
from modelarc.registry import datasets as dq
from modelarc.registry.model_listing import ModelSummary
from modelarc.registry.model_listing import list_models as _list_models
from modelarc.registry.refs import Ref


def list_models(
    archive: Archive, *, name_contains: str | None = None, limit: int = 100, offset: int = 0
) -> list[ModelSummary]:
    with archive.catalog.session() as s:
        return _list_models(s, name_contains=name_contains, limit=limit, offset=offset)


def list_datasets(archive: Archive, *, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    with archive.catalog.session() as s:
        return dq.list_datasets(s, limit=limit, offset=offset)


def dataset(archive: Archive, name: str) -> list[dict[str, Any]]:
    """Every version of dataset ``name`` with the snapshots trained on it; NotFoundError if there is none."""
    with archive.catalog.session() as s:
        found = dq.dataset_detail(s, name)
    if not found:
        raise NotFoundError(f"no dataset named {name!r}")
    return found


@dataclass(frozen=True)
class TensorRow:
    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    length: int
    digest: str


def snapshot_files(archive: Archive, ref_text: Ref | str) -> list[dict[str, Any]]:
    _ref, snap = archive.resolve(ref_text)
    manifest = archive.manifest(snap)
    return [
        {
            "path": f.path,
            "size": f.size,
            "sha256": f.sha256,
            "kind": f.kind,
            "tensors": sum(1 for _ in f.tensors()),
        }
        for f in manifest.files
    ]


def snapshot_tensors(archive: Archive, ref_text: Ref | str, *, limit: int, offset: int) -> list[TensorRow]:
    _ref, snap = archive.resolve(ref_text)
    manifest = archive.manifest(snap)
    rows = [
        TensorRow(p.name or "", f.path, p.dtype or "", tuple(p.shape or ()), p.offset, p.length, p.digest)
        for f, p in manifest.tensors()
    ]
    return rows[offset : offset + limit]


def snapshot_manifest_bytes(archive: Archive, ref_text: Ref | str) -> tuple[str, bytes]:
    """The canonical manifest (its sha256 is the snapshot id), for clients that verify it themselves."""
    ref, snap = archive.resolve(ref_text)
    refuse_if_withdrawn(snap, str(ref))
    return snap.digest, archive.manifest(snap).canonical_bytes()


@dataclass(frozen=True)
class SignatureStatus:
    verified: bool
    key: str | None  # fingerprint of the trusted key that signed it
    detail: str


def signature_status(archive: Archive, ref_text: Ref | str) -> SignatureStatus:
    """Checked now, against the keys trusted now: a page shows what a pull would accept."""
    _ref, snap = archive.resolve(ref_text)
    try:
        key = archive.check_signature(snap)
    except (SignatureError, IntegrityError) as exc:
        return SignatureStatus(False, None, str(exc))
    return SignatureStatus(True, key, "signed by a trusted key; the signature covers every file's sha256")
