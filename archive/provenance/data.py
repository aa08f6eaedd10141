"""Training-data manifests: parse (YAML or JSON), validate against the shipped JSON Schema, attach to snapshots.

Each dataset has a content hash: the ``sha256`` the manifest gives (of the data files or of the dataset's own
manifest) when present, otherwise the sha256 of the canonical JSON of the entry without ``role`` and ``notes``. A
catalog row is one whole description, not one content hash (registry/dataset_identity.py): the same description is
one row whatever it was used for, and an entry stating a known hash with other labels is a row of its own, so no
manifest can relabel the data another snapshot's manifest described. Attachments are append-only: attaching again
adds an attachment, it never edits or removes one.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from modelarc.archive.bounded_yaml import BoundedLoader
from modelarc.archive.limits import MAX_DATA_MANIFEST_BYTES, read_small_file
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


# Deeper than any manifest the schema allows (four levels), shallow enough that composing stays far from the
# interpreter's recursion limit.
MAX_DATA_MANIFEST_DEPTH = 32


class _ManifestLoader(BoundedLoader):
    """Safe YAML, refusing what a training-data manifest never needs and a hostile one could use.

    No anchors/aliases (a few hundred bytes of nested aliases expand into an exponential walk), no nesting past
    ``MAX_DATA_MANIFEST_DEPTH`` (composing recurses once per level), no duplicated keys (PyYAML keeps the last one
    silently), and dates keep the text they were written as, so a message shows ``2020-01-01``, not a repr.
    """

    # Duplicated keys and NUL characters were accepted (with SQLite) before they were refused: a manifest this
    # archive already recorded is read as it was then (``_RecordedManifestLoader``), so a rebuild still replays it.
    strict = True
    max_depth = MAX_DATA_MANIFEST_DEPTH
    document = "a training-data manifest"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value if self.strict else ():
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges keys that its mapping may override
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicated = key in seen
            except TypeError:  # an unhashable key: PyYAML's own construct_mapping says so
                continue
            if duplicated:
                raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: key {key!r} is duplicated")
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        return _WrittenDate(self.construct_scalar(node))

    def construct_yaml_str(self, node: yaml.ScalarNode) -> str:
        """A string the catalog can store: JSON's escaped surrogate pairs (``"\\ud83d\\ude00"``, how
        ``json.dumps`` writes an emoji) joined into their character; a lone surrogate or a NUL refused."""
        text = self.construct_scalar(node)
        line = node.start_mark.line + 1
        if "\0" in text and self.strict:
            raise yaml.YAMLError(f"line {line}: a string holds a NUL character, which the catalog cannot store")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            try:
                text = text.encode("utf-16", "surrogatepass").decode("utf-16")
            except UnicodeDecodeError:
                raise yaml.YAMLError(
                    f"line {line}: a string holds a lone UTF-16 surrogate (an escape like \\udcff), not a character"
                ) from None
        return text


_ManifestLoader.add_constructor("tag:yaml.org,2002:timestamp", _ManifestLoader.construct_yaml_timestamp)
_ManifestLoader.add_constructor("tag:yaml.org,2002:str", _ManifestLoader.construct_yaml_str)


class _RecordedManifestLoader(_ManifestLoader):
    strict = False


@dataclass(frozen=True)
class _WrittenDate:
    """A YAML date or timestamp, which no field of the schema accepts (dates are strings): kept as written."""

    text: str

    def __repr__(self) -> str:
        return self.text


def load_data_manifest(path: str | Path) -> DataManifest:
    raw = read_small_file(path, MAX_DATA_MANIFEST_BYTES, "a training-data manifest", DataManifestError)
    return parse_data_manifest(raw, str(path))


def parse_data_manifest(raw: bytes, where: str, *, recorded: bool = False) -> DataManifest:
    """Parse and validate a training-data manifest's bytes, from a local file or another archive alike.

    ``recorded``: the manifest is one this archive's records already attached (a rebuild replays it), checked only
    as strictly as when it was attached.
    """
    if len(raw) > MAX_DATA_MANIFEST_BYTES:
        raise DataManifestError(
            f"{where}: {len(raw):,} bytes; a training-data manifest may have at most {MAX_DATA_MANIFEST_BYTES:,}"
        )
    try:
        loader = _RecordedManifestLoader if recorded else _ManifestLoader
        doc = yaml.load(raw.decode("utf-8"), Loader=loader)  # YAML is a superset of JSON
    # ValueError: UnicodeDecodeError, and an integer of more than 4300 digits (Python's int conversion limit)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataManifestError(f"{where}: not valid YAML or JSON ({first})") from None
    except RecursionError:  # a net under the loader's depth limit: nothing that deep is parsed
        raise DataManifestError(f"{where}: not valid YAML or JSON (nested too deeply)") from None
    validate(doc, where, recorded=recorded)
    return DataManifest(doc, raw)


_NOT_A_DATE = "is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)"  # docs/PROVENANCE.md quotes it


def validate(doc: Any, where: str, *, recorded: bool = False) -> None:
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
        # jsonschema's const message names only the expected value ("1 was expected"): say what was given too
        message = f"{e.message}, {e.instance!r} given" if e.validator == "const" else e.message
        if e.validator == "pattern" and list(e.absolute_path)[-2:-1] == ["time_range"]:
            message = f"{e.instance!r} {_NOT_A_DATE}"  # not the schema's regular expression
        raise DataManifestError(f"{where}: {field}: {message}")
    for i, ds in enumerate(doc["datasets"]):
        span = ds.get("time_range", {})
        for end in ("start", "end"):
            value = span.get(end)
            if value is not None:
                try:
                    parse_cutoff(value)
                except UsageError:
                    raise DataManifestError(
                        f"{where}: datasets[{i}].time_range.{end}: {value!r} {_NOT_A_DATE}"
                    ) from None
        backwards = "start" in span and "end" in span and _last_day(span["end"]) < parse_cutoff(span["start"])[0]
        if backwards and not recorded:
            raise DataManifestError(
                f"{where}: datasets[{i}].time_range: end {span['end']} is before start {span['start']}"
            )


def _last_day(value: str) -> dt.date:
    """The last day of the period ``value`` names: an end of ``2020`` runs to 2020-12-31."""
    first, precision = parse_cutoff(value)
    if precision == "year":
        return first.replace(month=12, day=31)
    if precision == "month":
        return first.replace(day=calendar.monthrange(first.year, first.month)[1])
    return first


def content_hash(entry: dict[str, Any]) -> str:
    """The data's hash as exports print it: stated, or of the description (then exports print none)."""
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
            s,
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
