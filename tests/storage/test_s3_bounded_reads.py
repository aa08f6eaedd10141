"""Bounded reads on the S3 backend (a real S3 API: moto's server on 127.0.0.1): the length a GET response declares
is checked against the reader's bound before its body is read, and an object that decodes but is longer than its
header allows is corrupt, as on a local store."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from s3server import raw_client

from modelarc.errors import ObjectCorruptError, StoredValueError
from modelarc.storage import ObjectStore
from modelarc.storage.objectformat import MAX_CODEC_OVERHEAD
from modelarc.storage.store import object_key

if TYPE_CHECKING:
    from modelarc.storage.s3 import S3Backend


def _backend(bucket: str) -> S3Backend:
    from modelarc.storage.s3 import S3Backend  # boto3 is loaded by the tests that use it

    return S3Backend(bucket, "store")


def test_get_refuses_a_value_longer_than_the_bound_by_its_declared_length(s3_bucket: str) -> None:
    backend = _backend(s3_bucket)
    backend.put("records/x", b"x" * 1000)
    assert backend.get("records/x", max_bytes=1000) == b"x" * 1000
    assert backend.get("records/x", max_bytes=10_000) == b"x" * 1000
    assert backend.get("records/x") == b"x" * 1000
    with pytest.raises(StoredValueError, match="records/x in bucket .* is 1000 bytes, more than the 999"):
        backend.get("records/x", max_bytes=999)
    with pytest.raises(FileNotFoundError):
        backend.get("records/nothing", max_bytes=999)
    backend.put("records/empty", b"")
    assert backend.get("records/empty", max_bytes=0) == b""


def test_an_s3_object_longer_than_its_header_allows_is_corrupt(s3_bucket: str, s3_endpoint: str) -> None:
    backend = _backend(s3_bucket)
    store = ObjectStore(backend)
    oid = store.put(os.urandom(5000)).id
    name = f"store/{object_key(oid)}"
    client = raw_client(s3_endpoint)
    good = client.get_object(Bucket=s3_bucket, Key=name)["Body"].read()
    client.put_object(Bucket=s3_bucket, Key=name, Body=good + bytes(MAX_CODEC_OVERHEAD + 1))
    with pytest.raises(
        ObjectCorruptError, match=f"object {oid} is corrupt: .* bytes stored for 5000 declared"
    ):
        store.get(oid)
