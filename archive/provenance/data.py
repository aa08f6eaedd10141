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
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from modelarc.archive.bounded_yaml import BoundedLoader
from modelarc.archive.left_records import (
    attempt_key,
    find_left,
    finish_attempt,
    start_attempt,
    write_unless_left,
)
from modelarc.archive.limits import MAX_DATA_MANIFEST_BYTES, clip_text, read_small_file
from modelarc.archive.manifest import canonical_json
from modelarc.archive.provenance.dates import SLACK, latest_stated_day
from modelarc.archive.records import write_record
from modelarc.archive.repository import Archive, parse_cutoff
from modelarc.errors import DataManifestError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.datasets import Attachment, attach_datasets, attachment_recorded
from modelarc.registry.db import CatalogSession
from modelarc.registry.records import NewDataset, ObjectRecord
from modelarc.registry.refs import SnapshotId, parse_model_name
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


# How YAML 1.2's core schema (yaml.org/spec/1.2.2, 10.3.2) resolves a plain scalar: what a reader of a stored manifest
# other than PyYAML most likely applies. PyYAML reads YAML 1.1, where some plain scalars mean something else.
_CORE_NULL = ("", "~", "null", "Null", "NULL")
_CORE_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_CORE_INT = re.compile(r"[-+]?[0-9]+")
_CORE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = (".inf", ".Inf", ".INF")
_CORE_SPECIAL = (
    {t: math.inf for t in _INF}
    | {"+" + t: math.inf for t in _INF}
    | {"-" + t: -math.inf for t in _INF}
    | {t: math.nan for t in (".nan", ".NaN", ".NAN")}
)
_CORE_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("int", "float", "bool", "null")}
_UNKNOWN = object()  # a scalar too long for Python's int conversion: PyYAML's own reading decides


def _yaml12_value(text: str) -> object:
    """``text``, a plain scalar, as YAML 1.2's core schema reads it."""
    if text in _CORE_NULL:
        return None
    if text in _CORE_BOOL:
        return _CORE_BOOL[text]
    try:
        if _CORE_INT.fullmatch(text):
            return int(text)
        if re.fullmatch(r"0o[0-7]+", text):
            return int(text[2:], 8)
        if re.fullmatch(r"0x[0-9a-fA-F]+", text):
            return int(text[2:], 16)
        if _CORE_FLOAT.fullmatch(text):
            return float(text)
    except ValueError:
        return _UNKNOWN
    return _CORE_SPECIAL.get(text, text)


def _same_value(a: object, b: object) -> bool:
    if type(a) is not type(b):  # True == 1 and 1 == 1.0 in Python; not in a manifest
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


class _YAML11Only(yaml.YAMLError):
    """A plain scalar that YAML 1.1 (PyYAML, which modelarc reads) and YAML 1.2 read as different values."""


class _GivenManifestLoader(_ManifestLoader):
    """A manifest a user gives (``push --data``, ``data attach``), refused when a plain scalar means one thing to
    YAML 1.1, as modelarc reads it, and another to YAML 1.2 (``017`` is 15 or 17; ``1:30`` is 90 or text; ``on``
    is true or text; ``0b1``, ``1_000``, ``<<`` merge keys): the stored document is re-read by every rebuild and by
    whatever reads the store decades on, and must mean one thing (docs/FORMAT.md "Training-data manifests").
    Manifests already attached here or received from another archive are read as before."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # ids of the scalar nodes whose value a schema decides: plain and untagged, or tagged !!int, !!float,
        # !!bool or !!null (`!!int 017` is 15 or 17 too); the nodes live until the document is built, so ids stay unique
        self._resolved: set[int] = set()

    def compose_scalar_node(self, anchor: Any) -> yaml.ScalarNode:
        event = self.peek_event()
        node = super().compose_scalar_node(anchor)
        if (event.tag is None and event.implicit[0]) or event.tag in _CORE_TAGS:
            self._resolved.add(id(node))
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _YAML11Only(
                    f"line {line}: `<<` merges a mapping in YAML 1.1, as modelarc reads it, but is an ordinary key "
                    "in YAML 1.2; write the keys out"
                )
            if id(value_node) not in self._resolved or value_node.tag == "tag:yaml.org,2002:timestamp":
                continue  # a date is refused by the schema, with its own advice to quote it
            text = str(value_node.value)
            read, other = self.construct_object(value_node, deep=deep), _yaml12_value(text)
            if other is not _UNKNOWN and not _same_value(read, other):
                key, shown = str(key_node.value)[:100], text[:100]
                raise _YAML11Only(
                    f"line {value_node.start_mark.line + 1}: {key}: {shown} is {read!r:.100} to YAML 1.1, as "
                    f"modelarc reads it, but {other!r:.100} to YAML 1.2; quote it ('{shown}') if it is text, "
                    "or write it as both read it alike (a number in plain decimal, true or false)"
                )
        return super().construct_mapping(node, deep)


@dataclass(frozen=True)
class _WrittenDate:
    """A YAML date or timestamp, which no field of the schema accepts (dates are strings): kept as written."""

    text: str

    def __repr__(self) -> str:
        return self.text


def load_data_manifest(path: str | Path) -> DataManifest:
    """A manifest the user gives, from a file: parsed as every manifest is, and refused besides when a plain scalar
    reads differently in YAML 1.1 and 1.2 (``_GivenManifestLoader``)."""
    raw = read_small_file(path, MAX_DATA_MANIFEST_BYTES, "a training-data manifest", DataManifestError)
    return parse_data_manifest(raw, str(path), given=True)


def parse_data_manifest(
    raw: bytes, where: str, *, recorded: bool = False, given: bool = False
) -> DataManifest:
    """Parse and validate a training-data manifest's bytes, from a local file or another archive alike.

    ``recorded``: the manifest is one this archive's records already attached (a rebuild replays it), checked only
    as strictly as when it was attached. ``given``: the user gives it now (``push --data``, ``data attach``), so
    a plain scalar that YAML 1.1 and 1.2 read differently is refused (one received from another archive was
    attached there already, and is read as YAML 1.1, as it was there).
    """
    if len(raw) > MAX_DATA_MANIFEST_BYTES:
        raise DataManifestError(
            f"{where}: {len(raw):,} bytes; a training-data manifest may have at most {MAX_DATA_MANIFEST_BYTES:,}"
        )
    try:
        loader = _RecordedManifestLoader if recorded else _GivenManifestLoader if given else _ManifestLoader
        doc = yaml.load(raw.decode("utf-8"), Loader=loader)  # YAML is a superset of JSON
    except _YAML11Only as exc:
        raise DataManifestError(f"{where}: {exc}") from None
    # ValueError: UnicodeDecodeError, and an integer of more than 4300 digits (Python's int conversion limit)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataManifestError(f"{where}: not valid YAML or JSON ({first})") from None
    except RecursionError:  # a net under the loader's depth limit: nothing that deep is parsed
        raise DataManifestError(f"{where}: not valid YAML or JSON (nested too deeply)") from None
    validate(doc, where, recorded=recorded)
    return DataManifest(doc, raw)


_NOT_A_DATE = "is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)"  # docs/PROVENANCE.md quotes it


@cache
def _validator_class(recorded: bool) -> Any:
    """Draft 2020-12, whose ``pattern`` is an ECMA-262 regular expression: there a final ``$`` matches only at the
    end of the string, but jsonschema runs it with Python's ``re.search``, where it also matches before a final
    newline, so a ``sha256`` of 64 hex digits and a newline passed and was recorded and exported. Given manifests
    are held to ECMA's meaning (``$`` as ``\\Z``); a recorded one (``recorded``) as leniently as when it was
    attached, so that a rebuild still replays it."""
    # imported here, not at the top: this module is loaded for more than validating (attach_data, the DataManifest
    # type), and jsonschema takes 0.2 s even without what _import_jsonschema leaves out
    jsonschema = _import_jsonschema()

    if recorded:
        return jsonschema.Draft202012Validator

    def pattern(validator: Any, regex: str, instance: Any, _schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not re.search(_ecma_end(regex), instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {regex!r}")

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})


def _import_jsonschema() -> ModuleType:
    """jsonschema, imported (when nothing has imported it yet) without rfc3987-syntax.

    jsonschema imports rfc3987-syntax, when installed (the dev extras have it), for its optional "iri" format
    checks, and rfc3987-syntax builds its lark grammars on import: 1.9 s of the 2.1 s `import jsonschema` took,
    paid by every `push --data` and `data attach`. No schema here is checked for formats (no format checker is
    given), so that check is never wanted; the module is hidden only during this import and can be imported
    normally afterwards."""
    if (loaded := sys.modules.get("jsonschema")) is not None:
        return loaded
    hidden = "rfc3987_syntax" not in sys.modules
    if hidden:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # None: "import fails" (importlib)
    try:
        import jsonschema
    finally:
        if hidden and "rfc3987_syntax" in sys.modules and sys.modules["rfc3987_syntax"] is None:
            del sys.modules["rfc3987_syntax"]
    return jsonschema


def _ecma_end(regex: str) -> str:
    """``regex`` with a final ``$`` (every pattern of the shipped schema ends so) made Python's end of string."""
    if regex.endswith("$") and not regex.endswith("\\$"):
        return regex[:-1] + r"\Z"
    return regex


_SHOWN_CHARS = 300  # of a field path or a schema message: jsonschema quotes the offending value whole (3 MB)


def validate(doc: Any, where: str, *, recorded: bool = False) -> None:
    validator = _validator_class(recorded)(schema())
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
        raise DataManifestError(f"{where}: {clip_text(field, _SHOWN_CHARS)}: {clip_text(message, _SHOWN_CHARS)}")
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
        # data collected in a period that has not begun is provably not what the weights were trained on; a
        # recorded manifest (a rebuild's replay) is kept as it was attached, before this rule
        latest = latest_stated_day()
        for end in ("start", "end"):
            value = span.get(end)
            if value is not None and not recorded and parse_cutoff(value)[0] > latest:
                raise DataManifestError(
                    f"{where}: datasets[{i}].time_range.{end}: {value} is after today ({latest - SLACK} UTC): "
                    "data from a period that has not begun cannot be described"
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


def _bound(value: str | None) -> tuple[dt.date | None, str | None]:
    """A ``time_range`` bound as the catalog keeps it: the first day of the period it names and that period's
    precision (``2020-06`` -> 2020-06-01, "month": all of June, not its first day), as ``--cutoff`` is kept."""
    return parse_cutoff(value) if value else (None, None)


@dataclass(frozen=True)
class AttachResult:
    ref: str
    snapshot: SnapshotId
    attachment: int
    datasets: list[dict[str, Any]]  # name, version, role, content_hash, new
    # the record an earlier run of the same attach left, stopped before its commit, which this one completed, and
    # the keys of other such records of the snapshot's attachments that say otherwise (archive/left_records.py)
    record_completed: str | None = None
    records_contradicting: tuple[str, ...] = ()


def new_dataset(entry: dict[str, Any]) -> NewDataset:
    """A validated manifest entry as the catalog records it."""
    span = entry.get("time_range", {})
    (start, start_precision), (end, end_precision) = _bound(span.get("start")), _bound(span.get("end"))
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
        time_start=start,
        time_end=end,
        notes=entry.get("notes"),
        time_start_precision=start_precision,
        time_end_precision=end_precision,
    )


def attach_data(archive: Archive, ref_text: str, manifest: DataManifest) -> AttachResult:
    """Attach ``manifest`` to the snapshot ``ref_text`` names. Run again after a kill between its record and its
    commit, it completes the attachment that record states, dated as it is (archive/left_records.py), instead of a
    second record that a rebuild would replay as a second attachment the catalog never had."""
    ref, snap = archive.resolve(ref_text)
    datasets = [new_dataset(entry) for entry in manifest.datasets]
    put = archive.store.put(manifest.raw)  # the document as given, kept with the archive for good
    archive.store.sync()
    stored = ObjectRecord(put.id, put.raw_size, put.stored_size, put.codec)
    actor = archive.settings.actor
    attempt = start_attempt(archive, attempt_key("data", str(snap.digest), put.id), fallback=snap.created_at)
    with archive.catalog.session() as s:
        q.lock_model(s, q.require_model(s, *parse_model_name(snap.model)).row_id)  # archive/left_records.py
        left = find_left(
            archive,
            attempt,
            "data",
            lambda b: b.get("model") == snap.model and b.get("snapshot") == str(snap.digest),
            lambda r: r.body.get("manifest") == put.id and r.body.get("ref") == str(ref) and r.actor == actor,
            held=lambda r: attachment_recorded(s, snap.row_id, str(r.body.get("manifest")), r.at),
        )
        at = left.time()
        attached = apply_attachment(s, snap, stored, datasets, actor=actor, target=str(ref), at=at)
        s.flush()
        write_unless_left(
            archive,
            s,
            left,
            lambda: write_record(
                archive.store.backend,
                s,
                "data",
                at=at,
                actor=actor,
                model=snap.model,
                snapshot=snap.digest,
                ref=str(ref),
                manifest=put.id,
            ),
        )
        finish_attempt(s, attempt)
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
    return AttachResult(str(ref), snap.digest, attached.id, report, left.completed, left.others)


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
