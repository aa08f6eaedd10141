"""The S3 backend when things go wrong: injected 5xx answers (retried, or not recoverable), a failing multipart
upload, an upload aborted under its writer, a missing bucket, a closed port, a stalled or truncated answer, refused
or missing credentials, and a server without conditional writes. Each failure is one line naming the bucket and
endpoint: ``StoreAccessError``, or ``StoreWriteLostError`` for the aborted upload.

Faults come from a real proxy or socket server on 127.0.0.1 (tests/s3server.py), in front of moto's S3 server.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from liveserver import free_port
from s3server import DUMMY_KEY_ID, DUMMY_SECRET, FaultProxy, ProxiedRequest, moto_auth, raw_client

from modelarc.errors import StoreAccessError, StoreWriteLostError

if TYPE_CHECKING:
    from modelarc.storage.s3 import S3Backend

MiB = 1 << 20
LARGE = 12 * MiB + 1


def _backend(*args: Any, **kwargs: Any) -> S3Backend:
    """Imported here, not at collection: boto3 is loaded by the tests that use it (as by the code, lazily)."""
    from modelarc.storage.s3 import S3Backend

    return S3Backend(*args, **kwargs)


def _small_parts(bucket: str, prefix: str = "store") -> S3Backend:
    return _backend(bucket, prefix, multipart_threshold=6 * MiB, part_size=5 * MiB, max_workers=3)


def _one_line_without_secrets(error: StoreAccessError, *, secret: str = DUMMY_SECRET) -> str:
    message = str(error)
    assert "\n" not in message
    assert secret not in message and DUMMY_KEY_ID not in message
    return message


def _no_uploads_left(endpoint: str, bucket: str) -> bool:
    return not raw_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads")


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError")])
def test_transient_server_errors_are_retried(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, status: int, code: str
) -> None:
    with FaultProxy(s3_endpoint, lambda r: r.number < 2, status=status, code=code) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = _backend(s3_bucket, "store")
        backend.put("objects/ab/k", b"made it")
        assert proxy.failures() == 2
        assert backend.get("objects/ab/k") == b"made it"


def test_a_part_that_fails_once_is_retried_and_the_upload_completes(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed: list[ProxiedRequest] = []

    def second_part_once(request: ProxiedRequest) -> bool:
        if request.method == "PUT" and "partNumber=2" in request.path and not failed:
            failed.append(request)
            return True
        return False

    data = os.urandom(LARGE)
    with FaultProxy(s3_endpoint, second_part_once, status=500, code="InternalError") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = _small_parts(s3_bucket)
        backend.put("objects/ab/large", data)
        assert proxy.failures() == 1
    assert (
        raw_client(s3_endpoint).get_object(Bucket=s3_bucket, Key="store/objects/ab/large")["Body"].read()
        == data
    )
    assert _no_uploads_left(s3_endpoint, s3_bucket)


def test_an_endpoint_that_keeps_failing_is_one_store_access_error(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # the standard variable; keeps the backoff short
    with FaultProxy(s3_endpoint, lambda r: True) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = _backend(s3_bucket, "store")
        with pytest.raises(StoreAccessError) as caught:
            backend.put("objects/ab/k", b"never stored")
        assert proxy.failures() == 2
    message = _one_line_without_secrets(caught.value)
    assert f"the S3 endpoint {proxy.url} failed for bucket '{s3_bucket}'" in message
    assert "SlowDown (HTTP 503) after 2 attempts" in message


def test_a_failed_multipart_upload_leaves_nothing_under_the_key_and_is_aborted(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with FaultProxy(
        s3_endpoint,
        lambda r: r.method == "PUT" and "partNumber=2" in r.path,
        status=500,
        code="InternalError",
    ) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = _small_parts(s3_bucket)
        with pytest.raises(StoreAccessError, match="InternalError"):
            backend.put("objects/ab/large", os.urandom(LARGE))
        assert any(method == "DELETE" and "uploadId=" in path for method, path, _ in proxy.requests)
        assert not backend.has("objects/ab/large")
        assert backend.temp_count() == 0
    assert _no_uploads_left(s3_endpoint, s3_bucket)


def test_an_upload_aborted_before_it_completes_is_a_lost_write(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gc's clean_tmp aborts incomplete uploads (this backend's tmp/) under a writer that lost the store lock; S3
    then answers the writer's next part 404 NoSuchUpload (moto answers 500, so the proxy gives S3's answer). The
    writer says what happened (``StoreWriteLostError``, which a push turns into its lost lock), not "S3 error"."""
    with FaultProxy(
        s3_endpoint,
        lambda r: r.method == "PUT" and "partNumber=2" in r.path,
        status=404,
        code="NoSuchUpload",
    ) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = _small_parts(s3_bucket)
        with pytest.raises(StoreWriteLostError, match="upload of objects/ab/large .* was aborted before it complet"):
            backend.put("objects/ab/large", os.urandom(LARGE))
        assert not backend.has("objects/ab/large")
    assert _no_uploads_left(s3_endpoint, s3_bucket)


def test_no_such_upload_at_completion_with_the_key_there_is_a_stored_write(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion retried after it had succeeded finds S3 no longer knows the upload, and the object there."""
    data = os.urandom(LARGE)
    raw_client(s3_endpoint).put_object(Bucket=s3_bucket, Key="store/objects/ab/large", Body=data)
    with FaultProxy(
        s3_endpoint, lambda r: r.method == "POST" and "uploadId=" in r.path, status=404, code="NoSuchUpload"
    ) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = _small_parts(s3_bucket)
        backend.put("objects/ab/large", data)
        assert any(method == "POST" and status == 404 for method, _path, status in proxy.requests)
        assert backend.get("objects/ab/large") == data


def test_a_missing_bucket_is_named_with_its_endpoint(s3_bucket: str, s3_endpoint: str) -> None:
    backend = _backend("modelarc-no-such-bucket", "store")
    for call in (
        lambda: backend.get("objects/ab/k"),
        lambda: backend.has("objects/ab/k"),  # a HEAD: its bare 404 does not say which is missing
        lambda: backend.size("objects/ab/k"),
        lambda: backend.put("objects/ab/k", b"x"),
        lambda: list(backend.iterate("objects")),
        lambda: backend.temp_count(),
    ):
        with pytest.raises(StoreAccessError) as caught:
            call()
        assert _one_line_without_secrets(caught.value).startswith(
            f"no bucket 'modelarc-no-such-bucket' at {s3_endpoint}"
        )


def test_a_closed_port_is_a_network_error(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    backend = _backend(s3_bucket, "store")
    with pytest.raises(StoreAccessError) as caught:
        backend.get("objects/ab/k")
    message = _one_line_without_secrets(caught.value)
    assert f"cannot reach the S3 endpoint http://127.0.0.1:{port} for bucket '{s3_bucket}'" in message
    assert "the connection failed after 2 attempts" in message


@contextmanager
def _socket_server(answer: bytes | None) -> Iterator[str]:
    """A server on 127.0.0.1 that reads a request and sends ``answer`` then closes, or (None) never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            if answer is None:
                held.append(conn)  # keep it open and silent
            else:
                conn.sendall(answer)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def _impatient_client(endpoint: str) -> object:
    import boto3
    from botocore.config import Config

    config = Config(
        read_timeout=0.5, connect_timeout=0.5, retries={"mode": "standard", "total_max_attempts": 1}
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def test_a_stalled_server_is_a_read_timeout(s3_bucket: str) -> None:
    with _socket_server(None) as url:
        backend = _backend(s3_bucket, "store", client=_impatient_client(url))  # type: ignore[arg-type]
        with pytest.raises(StoreAccessError) as caught:
            backend.get("objects/ab/k")
    assert f"cannot reach the S3 endpoint {url}" in _one_line_without_secrets(caught.value)
    assert "the read timed out" in str(caught.value)


def test_an_answer_cut_short_is_a_store_access_error(s3_bucket: str) -> None:
    truncated = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: binary/octet-stream\r\n\r\nonly this"
    )
    with _socket_server(truncated) as url:
        backend = _backend(s3_bucket, "store", client=_impatient_client(url))  # type: ignore[arg-type]
        with pytest.raises(StoreAccessError) as caught:
            backend.get("objects/ab/k")
    assert f"cannot reach the S3 endpoint {url}" in _one_line_without_secrets(caught.value)


def test_wrong_credentials_are_refused_in_one_line(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-do-not-print")
    backend = _backend(s3_bucket, "store")
    with moto_auth(s3_endpoint):
        for call in (lambda: backend.put("objects/ab/k", b"x"), lambda: backend.get("objects/ab/k")):
            with pytest.raises(StoreAccessError) as caught:
                call()
            message = _one_line_without_secrets(caught.value, secret="wrong-secret-do-not-print")
            assert (
                f"S3 refused access to bucket '{s3_bucket}' at {s3_endpoint}: InvalidAccessKeyId" in message
            )
            assert "AKIAWRONGWRONGWRONG0" not in message


def test_a_user_without_permission_gets_access_denied(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    iam = boto3.session.Session().client("iam")
    iam.create_user(UserName="no-rights")
    key = iam.create_access_key(UserName="no-rights")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    backend = _backend(s3_bucket, "store")
    try:
        with moto_auth(s3_endpoint):
            with pytest.raises(StoreAccessError) as caught:
                backend.get("objects/ab/k")
            assert "AccessDenied" in _one_line_without_secrets(caught.value, secret=key["SecretAccessKey"])
            with pytest.raises(StoreAccessError, match="403 Forbidden"):
                backend.has("objects/ab/k")  # a HEAD: no body, no code, just the status
    finally:
        iam.delete_access_key(UserName="no-rights", AccessKeyId=key["AccessKeyId"])
        iam.delete_user(UserName="no-rights")


def test_no_credentials_at_all_is_one_line(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    backend = _backend(s3_bucket, "store")
    with pytest.raises(StoreAccessError, match="no AWS credentials found; set AWS_PROFILE"):
        backend.put("objects/ab/k", b"x")


def test_an_unknown_profile_is_one_line(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "modelarc-no-such-profile")
    with pytest.raises(StoreAccessError, match="modelarc-no-such-profile"):
        _backend(s3_bucket, "store").get("objects/ab/k")


def test_a_server_without_conditional_writes_falls_back_once_per_backend(
    s3_bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultProxy(
        s3_endpoint, lambda r: "if-none-match" in r.headers, status=501, code="NotImplemented"
    ) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        backend = _small_parts(s3_bucket)
        # a memoryview goes up as a file-like body, which the plain retry must send again from its start
        backend.put("objects/ab/k", memoryview(b"first value")[:5])
        backend.put("objects/ab/k", b"second")  # a HEAD first now: the existing key is still left alone
        backend.put("objects/ab/j", b"other")
        assert backend.get("objects/ab/k") == b"first"
        assert proxy.failures() == 1  # remembered: asked once

        large = _small_parts(s3_bucket)  # a new backend asks again, here at CompleteMultipartUpload
        data = os.urandom(LARGE)
        large.put("objects/ab/large", data)
        large.put("objects/ab/large", os.urandom(LARGE))
        assert large.get("objects/ab/large") == data
        assert large.temp_count() == 0
        assert proxy.failures() == 2
