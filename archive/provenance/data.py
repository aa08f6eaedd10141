"""Training-data manifests: parse (YAML or JSON), validate against the shipped JSON Schema, attach to snapshots.

Datasets are deduplicated by a content hash: the ``sha256`` the manifest gives (of the data files or of the
dataset's own manifest) when present, otherwise the sha256 of the canonical JSON of the entry without ``role`` and
``notes`` (the same dataset described the same way is one row, whatever it was used for). Attachments are
append-only: attaching again adds an attachment, it never edits or removes one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modelarc.archive.manifest import canonical_json
from modelarc.archive.records import catalog_time, write_record
from modelarc.archive.repository import Archive, parse_cutoff
from modelarc.errors import DataManifestError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.datasets import Attachment, attach_datasets
from modelarc.registry.db import CatalogSession
from modelarc.registry.records import NewDataset, ObjectRecord
from modelarc.registry.refs import SnapshotId
from modelarc.registry.snapshots import SnapshotRecord


@cache
def schema() -> dict[str, Any]:
    text = resources.files("modelarc.archive").joinpath("schemas/training-data.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class DataManifest:
    document: dict[str, Any]
    raw: bytes

    @property
    def datasets(self) -> list[dict[str, Any]]:
        return list(self.document["datasets"])


MAX_DATA_MANIFEST_BYTES = 4 << 20  # a manifest lists datasets, not their records


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors/aliases: a few hundred bytes of nested aliases expand into an exponential walk."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not allowed in a training-data manifest")
        return super().compose_node(parent, index)


def load_data_manifest(path: str | Path) -> DataManifest:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataManifestError(f"{p}: cannot read training-data manifest ({exc.strerror})") from None
    return parse_data_manifest(raw, str(p))


def parse_data_manifest(raw: bytes, where: str) -> DataManifest:
    """Parse and validate a training-data manifest's bytes, from a local file or another archive alike."""
    if len(raw) > MAX_DATA_MANIFEST_BYTES:
        raise DataManifestError(f"{where}: {len(raw)} bytes; a training-data manifest may have at most 4 MiB")
    try:
        doc = yaml.load(raw.decode("utf-8"), Loader=_NoAliasLoader)  # YAML is a superset of JSON
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataManifestError(f"{where}: not valid YAML or JSON ({first})") from None
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack (also from a remote's push)
        raise DataManifestError(f"{where}: not valid YAML or JSON (nested too deeply)") from None
    validate(doc, where)
    return DataManifest(doc, raw)


def validate(doc: Any, where: str) -> None:
    # imported here, not at the top: jsonschema pulls in rfc3987-syntax, which builds lark grammars on import
    # (seconds), and this module is loaded for more than validating (attach_data, the DataManifest type)
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        field = (
            "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path).lstrip(".")
            or "(top)"
        )
        raise DataManifestError(f"{where}: {field}: {e.message}")
    for i, ds in enumerate(doc["datasets"]):
        for end in ("start", "end"):
            value = ds.get("time_range", {}).get(end)
            if value is not None:
                try:
                    parse_cutoff(value)
                except UsageError:
                    raise DataManifestError(
                        f"{where}: datasets[{i}].time_range.{end}: {value!r} is not a valid date"
                    ) from None


def content_hash(entry: dict[str, Any]) -> str:
    if entry.get("sha256"):
        return str(entry["sha256"])
    described = {k: v for k, v in entry.items() if k not in ("role", "notes")}
    return hashlib.sha256(canonical_json(described)).hexdigest()


def _date(value: str | None) -> dt.date | None:
    return parse_cutoff(value)[0] if value else None


@dataclass(frozen=True)
class AttachResult:
    ref: str
    snapshot: SnapshotId
    attachment: int
    datasets: list[dict[str, Any]]  # name, version, role, content_hash, new


def new_dataset(entry: dict[str, Any]) -> NewDataset:
    """A validated manifest entry as the catalog records it."""
    span = entry.get("time_range", {})
    return NewDataset(
        content_hash=content_hash(entry),
        name=entry["name"],
        role=entry["role"],
        version=entry.get("version") or entry.get("revision"),
        source_url=entry.get("source"),
        license=entry.get("license"),
        size_bytes=entry.get("size_bytes"),
        records=entry.get("records"),
        tokens=entry.get("tokens"),
        time_start=_date(span.get("start")),
        time_end=_date(span.get("end")),
        notes=entry.get("notes"),
    )


def attach_data(archive: Archive, ref_text: str, manifest: DataManifest) -> AttachResult:
    ref, snap = archive.resolve(ref_text)
    datasets = [new_dataset(entry) for entry in manifest.datasets]
    put = archive.store.put(manifest.raw)  # the document as given, kept with the archive for good
    archive.store.sync()
    stored = ObjectRecord(put.id, put.raw_size, put.stored_size, put.codec)
    actor = archive.settings.actor
    with archive.catalog.session() as s:
        at = catalog_time()
        attached = apply_attachment(s, snap, stored, datasets, actor=actor, target=str(ref), at=at)
        write_record(
            archive.store.backend,
            "data",
            at=at,
            actor=actor,
            model=snap.model,
            snapshot=snap.digest,
            ref=str(ref),
            manifest=put.id,
        )
        report = [
            {
                "name": e.dataset.name,
                "version": e.dataset.version,
                "role": e.dataset.role,
                "content_hash": e.dataset.content_hash,
                "new": e.new,
            }
            for e in attached.entries
        ]
    return AttachResult(str(ref), snap.digest, attached.id, report)


def apply_attachment(
    s: CatalogSession,
    snap: SnapshotRecord,
    stored: ObjectRecord,
    datasets: list[NewDataset],
    *,
    actor: str,
    target: str,
    at: dt.datetime,
) -> Attachment:
    """Attach the durable training-data manifest ``stored`` to ``snap``, with the audit entry: `data attach` and
    its replay from a catalog record (archive/rebuild.py) alike."""
    attached = attach_datasets(s, snap.row_id, stored, actor, datasets, at)
    q.audit(
        s,
        actor,
        "data.attach",
        target,
        at=at,
        snapshot=snap.digest,
        attachment=attached.id,
        datasets=[e.dataset.name for e in attached.entries],
    )
    return attached
