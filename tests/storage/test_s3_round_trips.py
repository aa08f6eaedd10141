"""Each S3 upload is one round trip: the body follows the request's headers at once, without asking the server for
"100 Continue" first (botocore's default for every PUT and UploadPart), which costs one more round trip per object
(storage/s3.py ``default_client``). Checked on what the client sends, through a real proxy in front of moto's
server (tests/s3server.py), rather than by timing.
"""

from __future__ import annotations

import os

import pytest
from s3server import FaultProxy, ProxiedRequest, raw_client

MiB = 1 << 20


def _asked_to_continue(seen: list[ProxiedRequest]) -> list[str]:
    return [f"{r.method} {r.path}" for r in seen if r.headers.get("expect", "").lower() == "100-continue"]


def test_a_put_sends_its_body_without_waiting_for_100_continue(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelarc.storage.s3 import S3Backend

    seen: list[ProxiedRequest] = []
    with FaultProxy(s3_endpoint, lambda r: seen.append(r) is not None) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = S3Backend(s3_bucket, "store")
        held = bytearray(os.urandom(3000))  # as the store hands over an encoded object: not bytes
        backend.put("objects/ab/small", memoryview(held))
        backend.put("objects/ab/bytes", b"plain bytes")
    assert [r.method for r in seen] == ["PUT", "PUT"]
    assert _asked_to_continue(seen) == []
    stored = raw_client(s3_endpoint).get_object(Bucket=s3_bucket, Key="store/objects/ab/small")["Body"].read()
    assert stored == bytes(held)


def test_the_parts_of_a_multipart_upload_do_not_wait_for_100_continue(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelarc.storage.s3 import S3Backend

    seen: list[ProxiedRequest] = []
    data = os.urandom(11 * MiB)
    with FaultProxy(s3_endpoint, lambda r: seen.append(r) is not None) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = S3Backend(s3_bucket, "store", multipart_threshold=6 * MiB, part_size=5 * MiB, max_workers=3)
        backend.put("objects/ab/large", data)
    assert sum(1 for r in seen if "partNumber=" in r.path) == 3
    assert _asked_to_continue(seen) == []
    assert (
        raw_client(s3_endpoint).get_object(Bucket=s3_bucket, Key="store/objects/ab/large")["Body"].read()
        == data
    )
