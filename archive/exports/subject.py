"""What an export describes: one snapshot's catalog view plus the few facts ``show`` does not carry.

Both exports (CycloneDX, model card) start from the same :class:`ExportSubject`, so they never disagree about the
snapshot, its parents or its data.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from modelarc.archive.catalog.views import SnapshotView
from modelarc.archive.repository import Archive
from modelarc.registry import queries as q
from modelarc.registry.datasets import DatasetInfo
from modelarc.storage.ids import ObjectId


@dataclass(frozen=True)
class ExportSubject:
    view: SnapshotView
    cutoff_precision: str | None  # "year" | "month" | "day"
    # Dataset content hashes that are a sha256 the training-data manifest declared (of the data files or of the
    # dataset's own manifest). A dataset described without one is keyed by the sha256 of its description instead;
    # that key identifies the row but says nothing about the data, so exports must not present it as a data hash.
    declared_data_hashes: frozenset[str]

    def dataset_hash(self, dataset: DatasetInfo) -> str | None:
        key = dataset.content_hash
        return key if key in self.declared_data_hashes else None


def load_subject(archive: Archive, ref_text: str) -> ExportSubject:
    """Resolve ``ref_text`` once and describe exactly that snapshot (a tag moving meanwhile changes nothing)."""
    ref, snap = archive.resolve(ref_text)
    view = archive.show(f"{ref.model}@{snap.digest}")
    with archive.catalog.session() as s:
        object_ids = q.data_manifest_object_ids(s, snap.row_id)
    declared: set[str] = set()
    for oid in object_ids:
        # the manifest exactly as given at attach time; get() re-hashes it, so a damaged copy is an error here
        doc = yaml.safe_load(bytes(archive.store.get(ObjectId(str(oid)))).decode("utf-8"))
        declared.update(str(d["sha256"]) for d in doc.get("datasets", []) if d.get("sha256"))
    return ExportSubject(view, snap.cutoff_precision if snap.cutoff else None, frozenset(declared))
