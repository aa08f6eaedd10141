"""One suite, every backend: the local folder and S3 (a real S3 API, moto's server on 127.0.0.1).

Each test runs once per backend through the methods the ``Backend`` protocol promises (put/open/get/read_range/
has/size/mtime/iterate/delete/sync/clean_tmp/temp_count), so a behaviour the local backend has and S3 lacks (or
the other way round) fails here. Locks are not part of this suite: the store lock is moving to the catalog.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from s3server import raw_client

from modelarc.errors import ObjectMissingError
from modelarc.storage.ids import ObjectId
from modelarc.storage.location import open_backend
from modelarc.storage.store import ObjectStore, object_key

MiB = 1 << 20
# small enough that a test object goes through multipart, as large as S3 allows for parts (5 MiB)
THRESHOLD = 6 * MiB
PART = 5 * MiB
LARGE = 12 * MiB + 12345  # three parts: 5 + 5 + 2 MiB and a bit
A_LONG_TIME_AGO = 946684800.0  # 2000-01-01; moto dates every multipart upload 2010-11-10


@dataclass
class Target:
    """A backend kind under test: ``make(prefix)`` opens a backend rooted at ``prefix`` of the same place."""

    kind: str
    make: Callable[[str], Any]
    abandon_write: Callable[[Any, str], None]  # leave what a writer killed mid-write leaves, under a prefix
    s3_bucket: str | None = None
    s3_endpoint: str | None = None


def _local(tmp_path: Path) -> Target:
    def make(prefix: str) -> Any:
        return open_backend(str(tmp_path / prefix))

    def abandon(backend: Any, prefix: str) -> None:
        (tmp_path / prefix / "tmp" / f"{'ab' * 32}.{os.urandom(16).hex()}.tmp").write_bytes(b"half an object")

    return Target("local", make, abandon)


def _s3(bucket: str, endpoint: str) -> Target:
    from modelarc.storage.s3 import S3Backend

    def make(prefix: str) -> Any:
        return S3Backend(bucket, prefix, multipart_threshold=THRESHOLD, part_size=PART, max_workers=3)

    def abandon(backend: Any, prefix: str) -> None:
        client = raw_client(endpoint)
        key = f"{prefix}/objects/ab/{'ab' * 32}"
        upload = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1000
        )

    return Target("s3", make, abandon, bucket, endpoint)


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "local":
        return _local(tmp_path)
    return _s3(request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_endpoint"))


@pytest.fixture
def backend(target: Target) -> Any:
    return target.make("store")


def test_put_then_get_has_size_and_open(backend: Any) -> None:
    backend.put("objects/ab/one", b"hello world")
    assert backend.get("objects/ab/one") == b"hello world"
    assert backend.has("objects/ab/one")
    assert backend.size("objects/ab/one") == 11
    with backend.open("objects/ab/one") as reader:
        assert reader.read(5) == b"hello"
        assert reader.read() == b" world"
    backend.sync()


def test_put_accepts_bytearray_and_memoryview_slices(backend: Any) -> None:
    buffer = bytearray(b"0123456789")
    backend.put("objects/aa/ba", buffer)
    backend.put("objects/aa/mv", memoryview(buffer)[2:6])
    assert backend.get("objects/aa/ba") == b"0123456789"
    assert backend.get("objects/aa/mv") == b"2345"


def test_empty_value_round_trips(backend: Any) -> None:
    backend.put("objects/00/empty", b"")
    assert backend.get("objects/00/empty") == b""
    assert backend.size("objects/00/empty") == 0
    assert backend.read_range("objects/00/empty", 0, 10) == b""


def test_mtime_is_when_the_key_was_written(backend: Any) -> None:
    before = time.time()
    backend.put("objects/ab/timed", b"x")
    after = time.time()
    # S3 keeps whole seconds; a little slack either side for that rounding, not for speed
    assert before - 2 <= backend.mtime("objects/ab/timed") <= after + 2


def test_iterate_lists_keys_under_a_prefix_relative_to_the_store(backend: Any) -> None:
    keys = {"objects/ab/1", "objects/ab/2", "objects/cd/3", "snapshots/x"}
    for key in keys:
        backend.put(key, key.encode())
    assert set(backend.iterate("objects")) == {"objects/ab/1", "objects/ab/2", "objects/cd/3"}
    assert set(backend.iterate("objects/cd")) == {"objects/cd/3"}
    assert set(backend.iterate("snapshots")) == {"snapshots/x"}
    assert list(backend.iterate("nothing-here")) == []


def test_iterate_does_not_match_a_longer_sibling_name(backend: Any) -> None:
    backend.put("objects/ab/1", b"1")
    backend.put("objectsextra/ab/2", b"2")
    assert list(backend.iterate("objects")) == ["objects/ab/1"]


def test_delete_removes_and_a_missing_key_is_not_an_error(backend: Any) -> None:
    backend.put("objects/ab/gone", b"x")
    backend.delete("objects/ab/gone")
    assert not backend.has("objects/ab/gone")
    backend.delete("objects/ab/gone")
    backend.delete("objects/ff/never-there")


def test_missing_keys_raise_file_not_found(backend: Any) -> None:
    missing = "objects/ab/missing"
    assert not backend.has(missing)
    for read in (
        backend.get,
        backend.open,
        backend.size,
        backend.mtime,
        lambda key: backend.read_range(key, 0, 10),
        lambda key: backend.read_range(key, 0, 0),
    ):
        with pytest.raises(FileNotFoundError):
            read(missing)


def test_invalid_keys_are_refused(backend: Any) -> None:
    from modelarc.errors import UsageError

    for key in ("", "/objects/ab", "objects//ab", "objects/../x", "./x"):
        with pytest.raises(UsageError):
            backend.put(key, b"x")


def test_a_second_put_of_a_key_leaves_the_first_value(backend: Any) -> None:
    """Atomic create: writers of one key race harmlessly because an existing key is never replaced."""
    backend.put("objects/ab/first", b"first value")
    backend.put("objects/ab/first", b"another value")
    assert backend.get("objects/ab/first") == b"first value"


def test_large_values_round_trip_through_multipart(target: Target, backend: Any) -> None:
    data = os.urandom(LARGE)
    backend.put("objects/bb/large", data)
    assert backend.size("objects/bb/large") == LARGE
    assert backend.get("objects/bb/large") == data
    with backend.open("objects/bb/large") as reader:
        assert zlib.crc32(reader.read()) == zlib.crc32(data)
    # across the first part boundary, and the tail of the last part
    assert backend.read_range("objects/bb/large", PART - 100, 200) == data[PART - 100 : PART + 100]
    assert backend.read_range("objects/bb/large", LARGE - 10, 100) == data[-10:]
    assert backend.temp_count() == 0  # no incomplete upload (S3), no temp file (local)
    if target.kind == "s3":
        head = raw_client(str(target.s3_endpoint)).head_object(
            Bucket=target.s3_bucket, Key="store/objects/bb/large"
        )
        assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # three parts, so multipart it was


def test_a_second_large_put_of_a_key_leaves_the_first_and_no_debris(backend: Any) -> None:
    first = os.urandom(THRESHOLD + MiB)
    backend.put("objects/bb/twice", first)
    backend.put("objects/bb/twice", os.urandom(THRESHOLD + MiB))
    assert backend.get("objects/bb/twice") == first
    assert backend.temp_count() == 0  # the refused upload was aborted


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, 100, slice(0, 100)),  # start
        (5000, 300, slice(5000, 5300)),  # middle
        (10200, 100, slice(10200, 10240)),  # runs over the end: what is there
        (10239, 1, slice(10239, 10240)),  # the last byte
        (10240, 10, slice(0, 0)),  # at the end: nothing
        (20000, 5, slice(0, 0)),  # past the end: nothing
        (100, 0, slice(0, 0)),  # nothing asked
    ],
)
def test_read_range(backend: Any, offset: int, length: int, expected: slice) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    backend.put("objects/cc/ranged", data)
    assert backend.read_range("objects/cc/ranged", offset, length) == data[expected]


def test_read_range_refuses_negative_arguments(backend: Any) -> None:
    backend.put("objects/cc/x", b"abc")
    with pytest.raises(ValueError):
        backend.read_range("objects/cc/x", -1, 2)
    with pytest.raises(ValueError):
        backend.read_range("objects/cc/x", 0, -2)


def test_keys_under_one_prefix_do_not_leak_into_another(target: Target) -> None:
    a, ab, parent = target.make("stores/a"), target.make("stores/ab"), target.make("stores")
    a.put("objects/ab/k", b"from a")
    ab.put("objects/ab/k", b"from ab")
    a.put("objects/ab/only-a", b"a")
    assert a.get("objects/ab/k") == b"from a"
    assert ab.get("objects/ab/k") == b"from ab"
    assert not ab.has("objects/ab/only-a")
    assert set(a.iterate("objects")) == {"objects/ab/k", "objects/ab/only-a"}
    assert set(ab.iterate("objects")) == {"objects/ab/k"}
    # the same keys, one level up: the layout under a prefix is the layout of a folder
    assert set(parent.iterate("a")) == {"a/objects/ab/k", "a/objects/ab/only-a"}
    ab.delete("objects/ab/k")
    assert a.get("objects/ab/k") == b"from a"


def test_object_store_round_trip(backend: Any) -> None:
    store = ObjectStore(backend)
    text = b"a compressible line of text\n" * 5000
    noise = os.urandom(THRESHOLD + 2 * MiB)  # stored raw: above the multipart threshold on S3
    ids = []
    for data in (text, noise, b"tiny"):
        result = store.put(data)
        assert result.added
        ids.append(result.id)
        assert store.get(result.id) == data
        store.verify(result.id)
        info = store.stat(result.id)
        assert info.raw_size == len(data)
        assert info.stored_size == backend.size(object_key(result.id)) == store.stored_size(result.id)
        reader, size = store.open_stored(result.id)
        with reader:
            assert reader.read() == store.get_stored(result.id)
        assert size == info.stored_size
    assert store.put(text).added is False
    assert set(store.iter_ids()) == set(ids)
    assert store.temp_count() == 0
    store.sync()
    store.delete(ids[0])
    assert not store.has(ids[0])
    with pytest.raises(ObjectMissingError):
        store.get(ids[0])
    with pytest.raises(ObjectMissingError):
        store.stat(ObjectId("0" * 64))


def test_clean_tmp_removes_what_killed_writers_left(target: Target) -> None:
    backend = target.make("store")
    other = target.make("other")
    backend.put("objects/ab/kept", b"complete objects are not debris")
    target.abandon_write(backend, "store")
    target.abandon_write(other, "other")
    assert backend.temp_count() == 1
    assert backend.clean_tmp(A_LONG_TIME_AGO) == 0  # younger than the cutoff: left alone
    assert backend.temp_count() == 1
    assert backend.clean_tmp(time.time() + 60) == 1
    assert backend.temp_count() == 0
    assert backend.get("objects/ab/kept") == b"complete objects are not debris"
    assert other.temp_count() == 1  # another prefix's debris is not this store's
