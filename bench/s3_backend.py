"""S3 backend throughput against moto's S3 server on 127.0.0.1, with the local backend as the baseline.

Measures puts/s of 1 KB objects (one thread, then 16 threads) and MB/s of one 64 MiB put (a parallel multipart
upload with the default 8 MiB parts) and get, through ``S3Backend``, through plain boto3 calls on the same client
(one unconditional PUT, the floor) and through ``LocalBackend``, in the same run. moto runs
as its own process (``moto_server``), so the client and the server do not share one GIL; on 2 cores they still
share the CPUs, so the S3 figures are mostly moto's own speed (Python and Werkzeug, a new connection per request),
not what S3 or MinIO would give. Not part of ``make bench``: there is no target to hold, only figures to report.

    python bench/s3_backend.py [--small 1000] [--threads 16] [--large-mib 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from modelarc.storage.local import LocalBackend

MiB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/moto-api/", timeout=1)
            return server, url
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"moto_server did not come up on {url}") from None
            time.sleep(0.2)


def _timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _small_puts(backend: Any, count: int, threads: int) -> float:
    """puts/s of ``count`` distinct 1 KB values."""
    payloads = [(f"objects/{i % 256:02x}/{uuid.uuid4().hex}", os.urandom(1024)) for i in range(count)]
    if threads == 1:
        elapsed = _timed(lambda: [backend.put(key, data) for key, data in payloads])
    else:
        with ThreadPoolExecutor(threads) as pool:
            elapsed = _timed(lambda: list(pool.map(lambda kv: backend.put(*kv), payloads)))
    return count / elapsed


def _large(backend: Any, size: int, repeat: int) -> tuple[float, float]:
    """Median MB/s of putting and of getting one ``size``-byte value, a new key each time."""
    data = os.urandom(size)
    puts, gets = [], []
    for _ in range(repeat):
        key = f"objects/ff/{uuid.uuid4().hex}"
        start = time.perf_counter()
        backend.put(key, data)
        puts.append(size / MiB / (time.perf_counter() - start))
        start = time.perf_counter()
        got = backend.get(key)
        gets.append(size / MiB / (time.perf_counter() - start))
        assert got == data
    return statistics.median(puts), statistics.median(gets)


class PlainBoto3:
    """The floor for the S3 figures: boto3's put_object/get_object with no conditional header, one PUT whatever
    the size, on the same client configuration."""

    def __init__(self, backend: Any) -> None:
        self.client, self.bucket, self.root = backend._client, backend.bucket, backend.prefix + "/"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.root + key, Body=data)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=self.root + key)["Body"].read())


def _measure(name: str, backend: Any, args: argparse.Namespace) -> dict[str, float]:
    row = {
        "1 KB puts/s, 1 thread": _small_puts(backend, args.small, 1),
        f"1 KB puts/s, {args.threads} threads": _small_puts(backend, args.small, args.threads),
    }
    put, get = _large(backend, args.large_mib * MiB, args.repeat)
    row[f"{args.large_mib} MiB put MB/s"] = put
    row[f"{args.large_mib} MiB get MB/s"] = get
    print(f"{name}: " + ", ".join(f"{k} {v:,.1f}" for k, v in row.items()), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="1 KB puts per run")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    server, url = _start_moto()
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
        from modelarc.storage.s3 import S3Backend

        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        import boto3

        boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
        backend = S3Backend(bucket, "bench")
        s3 = _measure("S3Backend (moto)", backend, args)
        plain = _measure("plain boto3 (moto)", PlainBoto3(backend), args)
        with tempfile.TemporaryDirectory() as tmp:
            local = _measure("LocalBackend", LocalBackend(Path(tmp)), args)
    finally:
        server.terminate()
        server.wait(10)
    print()
    print("| measure | S3Backend on moto | plain boto3 on moto | LocalBackend | S3Backend / plain boto3 |")
    print("|---|---|---|---|---|")
    for key in s3:
        print(
            f"| {key} | {s3[key]:,.1f} | {plain[key]:,.1f} | {local[key]:,.1f} | {s3[key] / plain[key]:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
