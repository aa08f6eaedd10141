"""Reads from a damaged store are bounded and never block: whatever is put under an object's or a record's name (a
link to ``/dev/zero``, a FIFO, a sparse file of gigabytes, a folder), the store refuses it as a corrupt object, or
the record reader as a damaged record, before reading it, within seconds, with memory to spare.

Each case checks the message of the guard that must fire, so a guard taken out (another one catching the file
later, after reading it) fails the test too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hangkit import raised_within

from modelarc.archive.records import (
    MAX_RECORD_BYTES,
    RECORD_FORMAT,
    RECORD_VERSION,
    canonical,
    format_time,
    read_record_bytes,
    record_name,
)
from modelarc.errors import ObjectCorruptError, RecordError, StoredValueError
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.local import LocalBackend
from modelarc.storage.objectformat import MAX_CODEC_OVERHEAD, MAX_RAW_LENGTH, MAX_STORED_SIZE, ObjectHeader
from modelarc.storage.store import QUARANTINE_PREFIX, object_key

DEADLINE = (
    20.0  # seconds: only a deadline for a read that must end; a hang fails the test instead of the suite
)
SPARSE = 2 << 30  # a sparse file costs no disk; read whole it would cost 2 GiB of memory

# what is put in place of a good file, and the words of the guard that must refuse it
HOSTILE: dict[str, str] = {
    "symlink-to-dev-zero": "symbolic link",
    "symlink-to-a-good-copy": "symbolic link",  # a followed link could point anywhere: refused even when intact
    "fifo": "a FIFO",
    "folder": "a folder",
    "sparse-2GiB": f"is {SPARSE} bytes, more than",
}


def plant(path: Path, kind: str, good: bytes) -> None:
    """Replace the file at ``path`` by a hostile one of ``kind``."""
    path.unlink()
    if kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-to-a-good-copy":
        copy = path.parent.parent.parent / f"elsewhere-{path.name}"
        copy.write_bytes(good)
        path.symlink_to(copy)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "sparse-2GiB":
        with open(path, "wb") as fh:
            fh.write(good[:16])  # a valid header: only the size gives it away
            fh.truncate(SPARSE)
    else:
        raise AssertionError(kind)


def refused(call: Callable[[], object], what: str) -> BaseException:
    raised = raised_within(call, DEADLINE, what)
    assert raised, f"{what} read a hostile file as if it were a good one"
    return raised[0]


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


def _stored(store: ObjectStore, data: bytes) -> tuple[ObjectId, Path, bytes]:
    oid = store.put(data).id
    path = Path(store.backend.root) / object_key(oid)  # type: ignore[attr-defined]
    return oid, path, path.read_bytes()


@pytest.mark.parametrize("kind", HOSTILE)
def test_every_object_read_refuses_a_hostile_file_as_corrupt_before_reading_it(
    store: ObjectStore, kind: str
) -> None:
    oid, path, good = _stored(store, os.urandom(5000))
    plant(path, kind, good)
    reads: dict[str, Callable[[], object]] = {
        "get": lambda: store.get(oid),
        "get_stored": lambda: store.get_stored(oid),
        "get_into": lambda: store.get_into(oid, bytearray(8192)),
        "fill": lambda: store.fill(oid, memoryview(bytearray(5000))),
        "stat": lambda: store.stat(oid),
        "delta_base": lambda: store.delta_base(oid),
        "open_stored": lambda: store.open_stored(oid),
        "verify": lambda: store.verify(oid),
    }
    if kind == "sparse-2GiB":  # a valid header: reads of the header alone (4 KiB) are bounded, and answer
        del reads["stat"], reads["delta_base"], reads["open_stored"]  # ... as does a reader that streams it
    for what, read in reads.items():
        exc = refused(read, what)
        assert isinstance(exc, ObjectCorruptError), f"{what}: {exc!r}"
        assert str(exc).startswith(f"object {oid} is corrupt: ") and HOSTILE[kind] in str(exc), (
            f"{what}: {exc}"
        )
        assert "\n" not in str(exc)


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_record_is_a_damaged_record(tmp_path: Path, kind: str) -> None:
    import datetime as dt

    backend = LocalBackend(tmp_path / "store")
    at = dt.datetime(2026, 1, 2)
    body = canonical(
        {
            "format": RECORD_FORMAT,
            "version": RECORD_VERSION,
            "kind": "tag",
            "at": format_time(at),
            "actor": "t",
            "model": "a/b",
            "tag": "v1",
            "snapshot": "x",
        }
    )
    key = record_name(at, body)  # as write_record names it (that one also notes it in a catalog: none here)
    backend.put(key, body)
    path = backend.root / key
    good = path.read_bytes()
    plant(path, kind, good)
    exc = refused(lambda: read_record_bytes(backend, key), "read_record_bytes")
    assert isinstance(exc, RecordError), repr(exc)
    assert str(exc).startswith(f"record {key} is damaged: ") and HOSTILE[kind] in str(exc), str(exc)


def test_a_record_longer_than_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    key = f"records/20260102T030405123456Z-{'0' * 64}.json"
    path = backend.root / key
    path.parent.mkdir(parents=True)
    with open(path, "wb") as fh:
        fh.truncate(MAX_RECORD_BYTES + 1)
    with pytest.raises(
        RecordError, match=f"is {MAX_RECORD_BYTES + 1} bytes, more than the {MAX_RECORD_BYTES}"
    ):
        read_record_bytes(backend, key)


def test_the_local_backend_reads_a_value_at_its_bound_and_refuses_one_byte_more(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "store")
    backend.put("objects/aa/x", b"12345")
    assert backend.get("objects/aa/x", max_bytes=5) == b"12345"
    assert backend.get("objects/aa/x") == b"12345"
    with pytest.raises(StoredValueError, match="is 5 bytes, more than the 4"):
        backend.get("objects/aa/x", max_bytes=4)
    with pytest.raises(FileNotFoundError):
        backend.get("objects/aa/nothing", max_bytes=4)


def test_an_object_declaring_more_than_the_limit_is_corrupt_before_it_is_decoded(store: ObjectStore) -> None:
    oid = ObjectId("ab" * 32)
    path = Path(store.backend.root) / object_key(oid)  # type: ignore[attr-defined]
    path.parent.mkdir(parents=True)
    path.write_bytes(ObjectHeader(0, MAX_RAW_LENGTH + 1, b"").pack() + b"x" * 100)
    with pytest.raises(
        ObjectCorruptError, match=f"declares {MAX_RAW_LENGTH + 1} decoded bytes; the limit is"
    ):
        store.get(oid)


def test_an_object_longer_than_its_header_allows_is_corrupt(store: ObjectStore) -> None:
    oid, path, good = _stored(store, os.urandom(5000))
    path.write_bytes(good + bytes(MAX_CODEC_OVERHEAD + 1))
    with pytest.raises(ObjectCorruptError, match="bytes stored for 5000 declared"):
        store.get(oid)
    with pytest.raises(ObjectCorruptError, match="bytes stored for 5000 declared"):
        store.fill(oid, memoryview(bytearray(5000)))


def test_the_store_reads_no_object_longer_than_the_format_allows(store: ObjectStore) -> None:
    oid, path, good = _stored(store, os.urandom(5000))
    with open(path, "r+b") as fh:
        fh.truncate(MAX_STORED_SIZE + 1)
    with pytest.raises(
        ObjectCorruptError, match=f"is {MAX_STORED_SIZE + 1} bytes, more than the {MAX_STORED_SIZE}"
    ):
        store.get_stored(oid)


@pytest.mark.parametrize("kind", HOSTILE)
def test_quarantine_sets_a_hostile_entry_aside_without_reading_it(store: ObjectStore, kind: str) -> None:
    oid, path, good = _stored(store, os.urandom(5000))
    plant(path, kind, good)
    aside: list[str | None] = []
    assert not raised_within(
        lambda: aside.append(store.quarantine(oid, "20260101T000000Z")), DEADLINE, "quarantine"
    )
    assert aside[0] == f"{QUARANTINE_PREFIX}/{oid}.20260101T000000Z"
    note = (Path(store.backend.root) / aside[0]).read_text()  # type: ignore[attr-defined]
    assert note.startswith("not kept: ") and HOSTILE[kind] in note
    assert not os.path.lexists(path)  # the entry itself is gone (a link's target is never touched)
    store.put(os.urandom(10))  # the store still works
    assert os.path.exists("/dev/zero")
