"""Every request ``push hf://`` makes to the endpoint has an overall deadline, headers and redirect hops included.

httpx's timeouts are per read, so an endpoint that trickles a byte now and then never trips them: a listing body
trickled to its 64 MiB cap, or ~100 KiB of headers (what h11 accepts, per redirect hop) at a byte a second, held the
command for a day. The endpoint here is a raw socket server on 127.0.0.1 that does exactly that; each import must end
within moments of its deadline (MODELARC_REMOTE_TIMEOUT, plus the listed size at MODELARC_REMOTE_MIN_RATE), with one
line naming what was late, nothing recorded and nothing left behind. Without the deadline each run would hang (the
subprocess timeout fails the test) or, for the redirect chain, succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ArchiveCli

from modelarc.errors import SourceError

TIMEOUT = 2.0  # MODELARC_REMOTE_TIMEOUT
MIN_RATE = 1000  # MODELARC_REMOTE_MIN_RATE
DATA = b'{"model_type": "llama"}\n'
FILE_DEADLINE = TIMEOUT + len(DATA) / MIN_RATE
MARGIN = 20.0  # interpreter start-up and a busy machine; a hang is hours
BIG = b"b" * 1_000_000  # 1000 s at the minimum rate: its own deadline is far off
HOPS = 4  # redirects before the file, each within the deadline on its own, not together


class TricklingHub:
    """A Hub endpoint that answers one repo (``org/m``, one file) and trickles the part ``mode`` names:
    ``listing-body`` (one byte of chunked JSON whitespace at a time, forever), ``listing-headers``, ``file-headers``
    (~90 KB of headers, a byte at a time), ``more-files`` (that, while three other files' bodies arrive within their own deadlines), ``listing-slow`` (an honest
    listing, slower than the timeout), or ``redirects`` (the file behind ``HOPS`` redirects, each hop's headers
    trickled for 1.5 s; the last hop serves the right bytes)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.stop = threading.Event()
        self.requests: list[str] = []
        bigs = [(f"big-{n}.bin", BIG) for n in range(3)] if mode == "more-files" else []
        files = [("config.json", DATA), *bigs]
        self.listing = json.dumps(
            {
                "sha": "a" * 40,
                "siblings": [
                    {
                        "rfilename": name,
                        "size": len(data),
                        "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                    }
                    for name, data in files
                ],
            }
        ).encode()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket, data: bytes, every: float) -> None:
        for byte in data:
            if self.stop.wait(every):
                return
            conn.sendall(bytes([byte]))

    def _handle(self, conn: socket.socket) -> None:
        # one answer per connection, each saying so (Connection: close): a client that reused one raced its close,
        # and a reset, not the code under test, ended the import on a busy machine
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    got = conn.recv(4096)
                    if not got:
                        return
                    request += got
                path = request.split(b" ")[1].decode()
                self.requests.append(path)
                self._answer(conn, path)
            except OSError:  # the client shut its end: the deadline worked
                pass

    def _answer(self, conn: socket.socket, path: str) -> None:
        padding = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 90_000
        if path.startswith("/api/models/"):
            if self.mode == "listing-headers":
                self._trickle(conn, padding, 0.5)
            elif self.mode == "listing-body":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                while not self.stop.wait(0.5):
                    conn.sendall(b"1\r\n \r\n")
            # listing-slow: 8 KB in 3 s, slower than the timeout, faster than the minimum rate
            elif self.mode == "listing-slow":
                body = self.listing.ljust(8000)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
                for at in range(0, len(body), 400):
                    if self.stop.wait(0.15):
                        return
                    conn.sendall(body[at : at + 400])
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(self.listing) + self.listing
                )
        elif self.mode == "file-headers" or (self.mode == "more-files" and path.endswith("/config.json")):
            self._trickle(conn, padding, 0.5)
        # more-files: a big file, 1 KB every 10 ms, so its worker is reading when the stop comes
        elif self.mode == "more-files":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(BIG))
            for at in range(0, len(BIG), 1000):
                if self.stop.wait(0.01):
                    return
                conn.sendall(BIG[at : at + 1000])
        elif self.mode == "redirects":
            hop = int(path.rsplit("/", 1)[1]) if path.startswith("/hop/") else 0
            if hop == HOPS:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(DATA) + DATA)
                return
            # each hop closes its connection, and says so: a client reusing it raced the close (a reset, not the
            # deadline, ended the import on a busy machine)
            conn.sendall(
                b"HTTP/1.1 302 Found\r\nLocation: /hop/%d\r\nContent-Length: 0\r\nConnection: close\r\n"
                % (hop + 1)
            )
            self._trickle(conn, b"X-Padding: " + b"a" * 14 + b"\r\n\r\n", 0.05)  # 1.45 s: under the deadline
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(DATA) + DATA)


@pytest.fixture
def hostile(arc: ArchiveCli, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TricklingHub]:
    hub = TricklingHub(request.param)
    arc.env.update(
        {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "MODELARC_REMOTE_TIMEOUT": str(TIMEOUT),
            "MODELARC_REMOTE_MIN_RATE": str(MIN_RATE),
            "MODELARC_DISK_RESERVE": "0",
        }
    )
    yield hub
    hub.close()


def _push(arc: ArchiveCli, wait: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """``push hf://org/m`` in its own process, as a user runs it; a run longer than ``wait`` fails the test."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "modelarc.cli.main", "push", "hf://org/m", "org/m:v1", "--no-progress"],
        env={**os.environ, **arc.env},
        capture_output=True,
        text=True,
        timeout=wait,
    )
    return done, time.monotonic() - started


def _left_nothing(arc: ArchiveCli) -> None:
    assert arc.json("ls") == [] and arc.json("audit", "--action", "import") == []
    hub_cache = Path(arc.env["HF_HOME"]) / "hub"
    assert not [p for p in hub_cache.glob(".modelarc-import-*")]


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == SourceError.exit_code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("hostile", ["listing-body", "listing-headers"], indirect=True)
def test_a_trickled_listing_ends_at_its_deadline(arc: ArchiveCli, hostile: TricklingHub) -> None:
    """Nothing of the listing's JSON arrives, so its deadline stays the timeout, whether the body or the headers
    trickle."""
    done, took = _push(arc, TIMEOUT + MARGIN + 10)
    line = _one_error_line(done)
    assert "the listing (" in line and "/api/models/org/m/revision/main" in line, line
    assert f"not received within {TIMEOUT:g} s plus its size at {MIN_RATE:g} bytes/s" in line
    assert took < TIMEOUT + MARGIN
    _left_nothing(arc)


@pytest.mark.parametrize("hostile", ["listing-slow"], indirect=True)
def test_a_listing_slower_than_the_timeout_but_above_the_minimum_rate_is_read(
    arc: ArchiveCli, hostile: TricklingHub
) -> None:
    """The listing's deadline grows with what arrives: a large listing is not cut off at the timeout."""
    done, _took = _push(arc, TIMEOUT + MARGIN + 10)
    assert done.returncode == 0, done.stderr
    assert [m["model"] for m in arc.json("ls")] == ["org/m"]


@pytest.mark.parametrize("hostile", ["file-headers", "more-files", "redirects"], indirect=True)
def test_a_file_whose_headers_trickle_ends_at_its_deadline(arc: ArchiveCli, hostile: TricklingHub) -> None:
    """The file's deadline covers its whole request: headers a byte at a time, or a chain of redirects each of which
    alone is within it. With other downloads in flight, whose connections the expiry breaks too (and whose workers
    may end first), the line is still the late file's."""
    done, took = _push(arc, FILE_DEADLINE + MARGIN + 10)
    line = _one_error_line(done)
    assert "'config.json'" in line, line
    assert (
        f"not received within {TIMEOUT:g} s plus {MIN_RATE:g} bytes/s, {FILE_DEADLINE:.6g} s for its" in line
    )
    assert took < FILE_DEADLINE + MARGIN
    if hostile.mode == "redirects":
        hops = [p for p in hostile.requests if p.startswith("/hop/")]
        assert hops and f"/hop/{HOPS}" not in hops  # ended mid-chain: the file was never asked for
    _left_nothing(arc)


@pytest.mark.parametrize("hostile", ["listing-headers"], indirect=True)
def test_an_interrupt_still_ends_a_trickled_listing_at_once(arc: ArchiveCli, hostile: TricklingHub) -> None:
    """With a deadline far off, Ctrl-C while the listing's headers trickle ends the command in moments, exit 130."""
    arc.env["MODELARC_REMOTE_TIMEOUT"] = "600"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelarc.cli.main", "push", "hf://org/m", "org/m:v1", "--no-progress"],
        env={**os.environ, **arc.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waited = time.monotonic() + 60
        while not hostile.requests and time.monotonic() < waited:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(1.0)  # a few header bytes in
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert took < 10
    _left_nothing(arc)
