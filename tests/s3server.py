"""A real S3 API on 127.0.0.1 for the tests: moto's server in a thread, one per pytest worker, a bucket per test.

``s3_bucket`` points the standard AWS variables at the server (``AWS_ENDPOINT_URL``, dummy credentials, no
profile or config file from the machine), so code under test builds its client exactly as it would for AWS or
MinIO. ``FaultProxy`` sits between a client and the server and answers chosen requests with an error, for
retry and failure tests. ``moto_auth`` makes the server check signatures for one block (it checks none by default).
"""

from __future__ import annotations

import functools
import http.client
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import pytest

REGION = "us-east-1"
DUMMY_KEY_ID = "AKIAMODELARCTESTKEY0"
DUMMY_SECRET = "modelarc-test-secret-not-a-real-one"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on 127.0.0.1 (a port the OS picked), stopped when the session ends."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Point the standard AWS sources at ``endpoint`` and nothing of this machine's own AWS setup."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL_S3",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
        "AWS_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/modelarc-tests/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/modelarc-tests/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata probe for credentials
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)


@functools.cache
def raw_client(endpoint: str) -> Any:
    """A plain boto3 client for checking what is really in the bucket, independent of the code under test
    (one per endpoint: building a client costs a good part of a second)."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=DUMMY_KEY_ID, aws_secret_access_key=DUMMY_SECRET, region_name=REGION
    ).client("s3", endpoint_url=endpoint)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a new, empty bucket; the AWS environment points at the test server for this test.

    Emptied and deleted afterwards: moto keeps every object in this process's memory.
    """
    aws_env(monkeypatch, s3_endpoint)
    client = raw_client(s3_endpoint)
    name = f"modelarc-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        drop_bucket(client, name)


def drop_bucket(client: Any, name: str) -> None:
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for entry in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=entry["Key"])
    client.delete_bucket(Bucket=name)


@contextmanager
def moto_auth(endpoint: str) -> Iterator[None]:
    """Make the moto server check signatures and IAM permissions for this block only.

    moto checks nothing by default; its /moto-api/reset-auth switches checking on after N more requests (here 0).
    The switch is global to this process, which is one pytest worker running one test at a time.
    """
    import httpx

    httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()


class ProxiedRequest(NamedTuple):
    method: str
    path: str  # with the query string, e.g. /bucket/key?partNumber=2&uploadId=...
    headers: dict[str, str]  # names in lower case
    number: int  # 0 for the first request through the proxy


FaultRule = Callable[[ProxiedRequest], bool]

_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy'
    "</Message><RequestId>fault</RequestId></Error>"
)


class FaultProxy:
    """An HTTP reverse proxy on 127.0.0.1 in front of ``upstream`` that answers the requests ``fail`` picks with
    ``status`` and an S3 error body, and forwards every other one.

    ``requests`` lists (method, path, status) of everything it saw, so a test can tell what the client did.
    """

    def __init__(self, upstream: str, fail: FaultRule, *, status: int = 503, code: str = "SlowDown") -> None:
        self.upstream = upstream.removeprefix("http://")
        self.fail = fail
        self.status = status
        self.code = code
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="s3-fault-proxy", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def failures(self) -> int:
        return sum(1 for _m, _p, status in self.requests if status == self.status)

    def _decide(self, method: str, path: str, headers: dict[str, str]) -> bool:
        with self._lock:
            failing = self.fail(ProxiedRequest(method, path, headers, len(self.requests)))
            self.requests.append((method, path, self.status if failing else 0))
            return failing

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = {k.lower(): v for k, v in self.headers.items()}
                if proxy._decide(self.command, self.path, seen):
                    payload = _S3_ERROR.format(code=proxy.code).encode()
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(name, value)
                    declared = response.getheader("Content-Length")
                    length_out = declared if self.command == "HEAD" and declared else str(len(payload))
                    self.send_header("Content-Length", length_out)
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler
