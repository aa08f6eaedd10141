"""Catalog records as bytes in a store (docs/FORMAT.md "Catalog records"): names, canonical bodies, order, checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelarc.archive.records import read_record, read_records, write_record
from modelarc.errors import RecordError
from modelarc.registry.db import Catalog, CatalogSession
from modelarc.registry.written_records import noted
from modelarc.storage.local import LocalBackend

AT = dt.datetime(2026, 1, 2, 3, 4, 5, 0)


@pytest.fixture
def s(sqlite_url: str) -> Iterator[CatalogSession]:
    """The catalog transaction each record is written in (write_record notes it there)."""
    catalog = Catalog(sqlite_url)
    try:
        with catalog.session() as session:
            yield session
    finally:
        catalog.dispose()


def test_a_record_is_named_by_its_time_and_the_sha256_of_its_canonical_body(
    tmp_path: Path, s: CatalogSession
) -> None:
    backend = LocalBackend(tmp_path)
    key = write_record(
        backend, s, "tag", at=AT, actor="ana", written=AT, model="acme/m", tag="é", snapshot="x"
    )
    body = (tmp_path / key).read_bytes()
    assert re.fullmatch(r"records/20260102T030405000000Z-[0-9a-f]{64}\.json", key)
    assert key.endswith(f"-{hashlib.sha256(body).hexdigest()}.json")
    assert (
        body
        == (
            '{"actor":"ana","at":"2026-01-02T03:04:05.000000Z","format":"modelarc.record","kind":"tag",'
            '"model":"acme/m","snapshot":"x","tag":"é","version":1}'
        ).encode()
    )
    record = read_record(backend, key)
    assert (record.kind, record.at, record.actor, record.written) == ("tag", AT, "ana", AT)
    assert noted(s, [key, "records/other.json"]) == {key}  # noted in the writer's transaction, for repair


def test_records_of_the_same_instant_replay_in_kind_order(tmp_path: Path, s: CatalogSession) -> None:
    backend = LocalBackend(tmp_path)
    for kind in ("withdraw", "tag", "snapshot", "key"):
        write_record(backend, s, kind, at=AT, actor="ana", written=AT)
    write_record(backend, s, "run", at=AT, actor="ana", written=AT - dt.timedelta(microseconds=1))
    assert [r.kind for r in read_records(backend)] == ["run", "key", "snapshot", "tag", "withdraw"]


def test_every_damaged_record_is_named_before_anything_is_read_as_true(
    tmp_path: Path, s: CatalogSession
) -> None:
    backend = LocalBackend(tmp_path)
    keys = [write_record(backend, s, "tag", at=AT, actor=name, written=AT) for name in ("a", "b", "c")]
    for key in keys[:2]:
        path = tmp_path / key
        path.write_bytes(path.read_bytes().replace(b'"actor":"', b'"actor":"x'))
    with pytest.raises(RecordError, match=r"is damaged.* \(and 1 more\)"):
        read_records(backend)
    assert read_record(backend, keys[2]).actor == "c"


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"format": "modelarc.record", "version": 3, "kind": "tag"}, "version 3"),
        ({"format": "modelarc.record", "version": True, "kind": "tag"}, "version True"),
        ({"format": "modelarc.record", "version": 1, "kind": "rename"}, "unknown kind"),
        ({"format": "other", "version": 1}, "not a modelarc.record"),
    ],
)
def test_a_record_this_version_cannot_read_is_refused_by_name(
    tmp_path: Path, doc: dict, message: str
) -> None:
    backend = LocalBackend(tmp_path)
    body = json.dumps({"at": "2026-01-02T03:04:05.000000Z", "actor": "a", **doc}).encode()
    key = f"records/20260102T030405000000Z-{hashlib.sha256(body).hexdigest()}.json"
    backend.put(key, body)
    with pytest.raises(RecordError, match=message) as err:
        read_record(backend, key)
    assert key in str(err.value)


@pytest.mark.parametrize(
    "kind, fields, version",
    [
        ("access", {"level": "gated", "received": True}, 2),  # `received` changes what `until` means
        ("access", {"level": "gated"}, 1),  # older readers keep reading ordinary policies
        ("tag", {"tag": "v1"}, 1),
    ],
)
def test_only_an_access_record_of_a_received_override_is_written_as_version_2(
    tmp_path: Path, s: CatalogSession, kind: str, fields: dict, version: int
) -> None:
    """A version 1 reader would lapse a received override to public on its day: it must refuse it instead."""
    backend = LocalBackend(tmp_path)
    key = write_record(backend, s, kind, at=AT, actor="ana", model="acme/m", **fields)
    assert json.loads((tmp_path / key).read_bytes())["version"] == version
    assert read_record(backend, key).body == json.loads((tmp_path / key).read_bytes())


def test_a_version_1_access_record_of_a_received_override_is_still_read(tmp_path: Path) -> None:
    """What the release before version 2 wrote for a received override."""
    backend = LocalBackend(tmp_path)
    doc = {"format": "modelarc.record", "version": 1, "kind": "access", "at": "2026-01-02T03:04:05.000000Z",
           "actor": "a", "model": "acme/m", "snapshot": None, "level": "gated", "until": None, "reason": "",
           "received": True}  # fmt: skip
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    key = f"records/20260102T030405000000Z-{hashlib.sha256(body).hexdigest()}.json"
    backend.put(key, body)
    assert read_record(backend, key).body["received"] is True


def test_a_stray_file_under_records_is_refused(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    backend.put("records/notes.txt", b"hello")
    with pytest.raises(RecordError, match="not a catalog record name"):
        read_records(backend)
