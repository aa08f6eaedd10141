"""Catalog records: each change to what the catalog says about snapshots, kept in the store as one immutable JSON
document, so that a lost catalog can be rebuilt from the store alone (docs/FORMAT.md "Catalog records").

A record is written inside the catalog transaction it describes, after that transaction has made its changes (so
it holds the row locks of what it changed) and before it commits: put, then sync, like every object. So the store
never lacks a change the catalog committed; a crash between the record and the commit leaves a record of a change
that the catalog then lacks, which a rebuild replays (the user asked for it; nothing is lost either way).

Records are not content objects: they live under ``records/`` beside ``objects/``, written through the store's
backend, never listed by gc (which lists ``objects/`` only). A record's name carries the time it was written and
the sha256 of its body: ``records/20260102T030405123456Z-<sha256>.json``. The time is taken after the transaction's
changes, so for two changes to the same rows the name order is the commit order; a rebuild replays in name order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from modelarc.errors import RecordError, StoredValueError
from modelarc.registry import keys as key_rows
from modelarc.registry.db import CatalogSession
from modelarc.registry.recording import RecordedSnapshot, SnapshotRecording
from modelarc.registry.recording import record_snapshot as record_snapshot_rows
from modelarc.registry.snapshots import ParentLink
from modelarc.registry.written_records import note_written
from modelarc.storage.backend import Backend

RECORDS_PREFIX = "records"
RECORD_FORMAT = "modelarc.record"
RECORD_VERSION = 1
# Version 2 is an ``access`` record carrying ``received: true``: the field changes what its ``until`` means (the
# override lapses to the model's policy, not to public), so a reader that predates it must refuse the record rather
# than lift the embargo. Every other record is still written as version 1, which older readers keep reading.
# A version-1 access record with ``received`` (what 0.1 wrote) is still read as received (archive/rebuild.py).
RECEIVED_ACCESS_VERSION = 2
RECORD_VERSIONS = (RECORD_VERSION, RECEIVED_ACCESS_VERSION)
# every kind a version 1 or 2 reader knows, in the order a rebuild replays records written in the same microsecond
# (a key before the snapshots it signs, a snapshot before what names it). A reader refuses a kind it does not know
# rather than skip it: a kind may take something away (``access`` withholds weights), and a catalog rebuilt without
# it would hand out what its owners withheld (docs/FORMAT.md "Catalog records"). New kinds go at the end.
KINDS = ("key", "snapshot", "tag", "data", "withdraw", "run", "access", "grant")
# the longest body a reader takes (docs/FORMAT.md "Catalog records"): real records are a few KB; a longer one, like
# anything that is not a regular file under records/, is damaged and refused before it is read
MAX_RECORD_BYTES = 64 << 20
_NAME = re.compile(r"records/([0-9]{8}T[0-9]{12}Z)-([0-9a-f]{64})\.json")
_NAME_TIME = "%Y%m%dT%H%M%S%fZ"
_BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def catalog_time() -> dt.datetime:
    """Now, as the catalog stores times: naive UTC with microseconds (registry/models.py ``utcnow``)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def canonical(doc: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (non-ASCII kept): the bytes whose sha256 names the record."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def format_time(when: dt.datetime) -> str:
    """A catalog time (naive UTC) as a record states it: ``2026-01-02T03:04:05.123456Z``, microseconds always."""
    return when.strftime(_BODY_TIME)


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, _BODY_TIME)


def record_name(written: dt.datetime, body: bytes) -> str:
    return f"{RECORDS_PREFIX}/{written.strftime(_NAME_TIME)}-{hashlib.sha256(body).hexdigest()}.json"


def record_written(key: str) -> dt.datetime | None:
    """The time in a record's name (its place in the replay order), or None for a key that is no record name."""
    m = _NAME.fullmatch(key)
    try:
        return None if m is None else dt.datetime.strptime(m[1], _NAME_TIME)
    except ValueError:  # digits that are no date (month 13)
        return None


def record_version(kind: str, fields: dict[str, Any]) -> int:
    """The version a record of ``kind`` with ``fields`` is written as: the lowest whose readers read it right."""
    return RECEIVED_ACCESS_VERSION if kind == "access" and fields.get("received") is True else RECORD_VERSION


def write_record(
    backend: Backend,
    s: CatalogSession,
    kind: str,
    *,
    at: dt.datetime,
    actor: str,
    written: dt.datetime | None = None,
    **fields: Any,
) -> str:
    """Put one record and make it durable, and note it in ``s`` (the transaction of the change it records, so the
    note commits exactly when the change does: what lets `repair` put it back from a mirror); its key. ``at`` is
    when the change happened (the time its catalog rows carry); ``written`` orders it among the others (default
    now: call after the transaction's changes)."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")  # a bug, not a user error
    body = canonical(
        {
            "format": RECORD_FORMAT,
            "version": record_version(kind, fields),
            "kind": kind,
            "at": format_time(at),
            "actor": actor,
            **fields,
        }
    )
    key = record_name(written or catalog_time(), body)
    backend.put(key, body)
    backend.sync()
    note_written(s, key)
    return key


@dataclass(frozen=True)
class CatalogRecord:
    """One record as read back and checked: its key, its place in the replay order, and its body."""

    key: str
    written: dt.datetime
    kind: str
    at: dt.datetime
    actor: str
    body: dict[str, Any]

    @property
    def order(self) -> tuple[dt.datetime, int, str]:
        return self.written, KINDS.index(self.kind), self.key


def record_keys(backend: Backend) -> Iterator[str]:
    """Every key under ``records/``, in no particular order."""
    return backend.iterate(RECORDS_PREFIX)


def read_record_bytes(backend: Backend, key: str) -> bytes:
    """The body under ``key``, re-hashed against the sha256 in its name; ``RecordError`` naming it otherwise."""
    m = _NAME.fullmatch(key)
    if m is None:
        raise RecordError(f"{key} is not a catalog record name (records/<time>-<sha256>.json)")
    try:
        data = backend.get(key, max_bytes=MAX_RECORD_BYTES)
    except FileNotFoundError:
        raise RecordError(f"record {key} vanished while it was being read") from None
    except StoredValueError as exc:
        raise RecordError(f"record {key} is damaged: {exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != m[2]:
        raise RecordError(
            f"record {key} is damaged: its body hashes to {actual[:16]}…, not to the sha256 in its name"
        )
    return data


def read_record(backend: Backend, key: str) -> CatalogRecord:
    """The record under ``key``, its body re-hashed against the name and parsed; ``RecordError`` naming it."""
    data = read_record_bytes(backend, key)
    m = _NAME.fullmatch(key)
    assert m is not None
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
            raise ValueError("not a modelarc.record document")
        version = doc.get("version")
        if type(version) is not int or version not in RECORD_VERSIONS:  # not true, not 1.0
            raise ValueError(f"record version {version!r}; this modelarc reads versions 1 and 2")
        if doc.get("kind") not in KINDS:
            raise ValueError(
                f"unknown kind {doc.get('kind')!r}, written by a newer modelarc: rebuild with that version "
                "(a kind left out could hand out weights its owners withheld)"
            )
        if not isinstance(doc.get("actor"), str):
            raise ValueError("no actor")
        at = parse_time(doc["at"])
        written = record_written(key)
        if written is None:
            raise ValueError(f"its name's time {m[1]} is no date")
    except (ValueError, TypeError, KeyError) as exc:
        raise RecordError(f"record {key} cannot be read: {exc}") from None
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack
        raise RecordError(f"record {key} cannot be read: JSON nested too deeply") from None
    return CatalogRecord(key, written, doc["kind"], at, doc["actor"], doc)


def holds_snapshot_records(backend: Backend) -> bool:
    """Whether a rebuild (``rebuild-catalog``) would find a snapshot to put back: a snapshot record, or a record it
    cannot read (which it names). The objects of a pull refused before its commit (a manifest, a bundle) have none."""
    for key in record_keys(backend):
        try:
            if read_record(backend, key).kind == "snapshot":
                return True
        except RecordError:
            return True
    return False


def read_records(backend: Backend) -> list[CatalogRecord]:
    """Every record, checked, in replay order; one ``RecordError`` naming every damaged record otherwise."""
    found, bad = [], []
    for key in sorted(record_keys(backend)):
        try:
            found.append(read_record(backend, key))
        except RecordError as exc:
            bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise RecordError(
            f"{bad[0]}{more}; copy a good one from a mirror, or move it out of records/ to go on without it"
        )
    return sorted(found, key=lambda r: r.order)


def readable_records(backend: Backend) -> list[CatalogRecord]:
    """Every record that reads back intact, in replay order: the damaged ones left out (``read_records`` refuses
    them all instead)."""
    found = []
    for key in record_keys(backend):
        try:
            found.append(read_record(backend, key))
        except RecordError:
            continue
    return sorted(found, key=lambda r: r.order)


def has_snapshot_records(backend: Backend) -> bool:
    """Whether the store records any snapshot: read oldest first, so a store that has them answers in a few reads
    (a new archive's first records are its keys). A record that cannot be read counts as one."""
    for key in sorted(record_keys(backend)):
        try:
            if read_record(backend, key).kind == "snapshot":
                return True
        except RecordError:
            return True
    return False


# ------------------------------------------------------------------------------------------- what each kind says
def snapshot_fields(
    r: SnapshotRecording,
    parents: Sequence[ParentLink],
    pems: dict[str, str],
    unrecorded: Sequence[ParentLink] = (),
) -> dict[str, Any]:
    """The body of a ``snapshot`` record: what ``record_snapshot`` was given, with the parents it resolved and the
    public keys that sign the snapshot (so a rebuild can check the signatures before any key record), and, only
    when there are any, the parents a new snapshot declared that the catalog lacked (``parents_unrecorded``), so a
    rebuild keeps them declared as the live catalog does."""
    new, p = r.snapshot, r.snapshot.provenance
    signatures = []
    for sig in r.signatures:
        entry: dict[str, Any] = {"object": sig.object_id, "key": sig.key_fingerprint}
        if sig.at is not None:
            entry["at"] = format_time(sig.at)
        signatures.append(entry)
    fingerprints = sorted({sig.key_fingerprint for sig in r.signatures})
    return {
        "model": r.model.model,
        "tag": r.model.tag,
        "snapshot": new.digest,
        "manifest": new.digest.hex,
        "action": r.action,
        "merge": r.merge_into_existing,
        "signatures": signatures,
        "keys": [{"fingerprint": fp, "public_pem": pems[fp]} for fp in fingerprints if fp in pems],
        "parents": [link.to_json() for link in parents],
        "provenance": {
            "cutoff": p.cutoff.isoformat() if p.cutoff else None,
            "cutoff_precision": p.cutoff_precision,
            "license": p.license,
            "description": p.description,
            "source_url": p.source_url,
            "release_date": p.release_date.isoformat() if p.release_date else None,
        },
        "pushed_by": new.pushed_by,
        "logical_bytes": new.logical_bytes,
        "stored_bytes_added": new.stored_bytes_added,
        "file_count": len(new.files),
        "tensor_count": sum(len(f.tensors) for f in new.files),
        "parameter_count": new.parameter_count,
        "dtypes": dict(new.dtypes),
        "architecture": dict(new.architecture),
        **({"parents_unrecorded": [link.to_json() for link in unrecorded]} if unrecorded else {}),
    }


def record_snapshot(backend: Backend, s: CatalogSession, r: SnapshotRecording) -> RecordedSnapshot:
    """``registry.recording.record_snapshot`` in the caller's transaction, then its ``snapshot`` record: the one
    write path of local pushes and received commits alike."""
    recorded, write = stage_snapshot(backend, s, r)
    write()
    return recorded


def stage_snapshot(
    backend: Backend, s: CatalogSession, r: SnapshotRecording
) -> tuple[RecordedSnapshot, Callable[[], str]]:
    """``record_snapshot``'s rows now, and a function that writes its ``snapshot`` record: for a caller that adds
    more rows to the same transaction (a received snapshot's training data and policy, archive/remote/commit.py)
    and writes every record once all its rows are in, so a row that fails leaves no record in the store of a
    change the catalog then lacks (which a rebuild would replay without the rest: a snapshot without its policy)."""
    r = r if r.at is not None else replace(r, at=catalog_time())
    at = r.at
    assert at is not None
    recorded = record_snapshot_rows(s, r)
    pems = key_rows.public_pems(s, (sig.key_fingerprint for sig in r.signatures))
    fields = snapshot_fields(r, recorded.parents, pems, recorded.parents_unrecorded)
    return recorded, lambda: write_record(backend, s, "snapshot", at=at, actor=r.actor, **fields)


def key_fields(key: key_rows.CatalogKey) -> dict[str, Any]:
    """The body of a ``key`` record: the key as the catalog holds it after the change."""
    return {
        "fingerprint": key.fingerprint,
        "public_pem": key.public_pem,
        "label": key.label,
        "trusted": key.trusted,
        "local": key.local,
    }
