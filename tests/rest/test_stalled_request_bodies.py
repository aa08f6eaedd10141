"""Clients that stop sending a request body cannot hold a real ``modelarc serve`` process's memory or time: the
receive timeout (MODELARC_RECEIVE_TIMEOUT, MODELARC_RECEIVE_MIN_RATE) answers them 408 and closes the connection,
and the memory for request bodies (MODELARC_RECEIVE_MEMORY) caps what all bodies being read hold together (503 with
Retry-After beyond it), so a normal client is served again (docs/DEPLOY.md, "Memory").

Found by probing the server (finding 4): 300 anonymous ``POST /v1/objects/missing`` bodies stopped one byte short
pinned 346 MB for over a minute, three stalled uploads from an unrelated namespace's push token 621 MB, with no end.
Real sockets that stop sending, against a server process of its own, with the timeout set low.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from liveserver import free_port
from modelfactory import write_model

from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token
from modelarc.storage import ObjectId
from modelarc.storage.objectformat import ObjectHeader

MIB = 1 << 20
RECEIVE_TIMEOUT = 2  # seconds; the smallest MODELARC_RECEIVE_TIMEOUT takes is 1
RECEIVE_MEMORY = 32 * MIB
UPLOAD = 24 * MIB  # each stalled upload's declared size: one fits the memory for bodies, two do not
STALLED_UPLOADS = 8  # 192 MiB held without the bound
MAX_GROWTH = 100 * MIB  # one admitted upload (24 MiB) and its buffer's growth, with room to spare


def status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``modelarc serve`` in a process of its own, on SQLite, with a push token and a small model."""
    base = tmp_path_factory.mktemp("bodies")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _ = Archive.init(base / "home")
    archive.push(write_model(base / "src"), "acme/base:v1")
    token = create_token(archive, "push", "pusher").token
    archive.close()
    port = free_port()
    env_vars = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELARC_")},
        "MODELARC_HOME": str(base / "home"),
        "MODELARC_RECEIVE_TIMEOUT": str(RECEIVE_TIMEOUT),
        "MODELARC_RECEIVE_MEMORY": str(RECEIVE_MEMORY),
    }
    modelarc = Path(sys.executable).with_name("modelarc")
    log = (base / "serve.log").open("w")
    proc = subprocess.Popen([str(modelarc), "serve", "--port", str(port)], env=env_vars, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "modelarc serve did not start"
            time.sleep(0.1)
        yield {"url": url, "port": port, "pid": proc.pid, "token": token, "proc": proc, "log": base / "serve.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ids_body(count: int) -> bytes:
    return json.dumps({"ids": [f"{i:064x}" for i in range(count)]}).encode()


def started_post(port: int, head: str, body: bytes) -> socket.socket:
    """A request whose headers and ``body`` are sent, and then nothing: its Content-Length says one byte more."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"{head}\r\nHost: x\r\nContent-Length: {len(body) + 1}\r\n\r\n".encode() + body)
    return s


def answer(s: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """The start of what the server said within ``seconds``, and whether it then closed the connection."""
    s.settimeout(seconds)
    got = b""
    try:
        while block := s.recv(1 << 16):
            got += block
    except TimeoutError:
        return got, False
    except ConnectionResetError:
        pass
    return got, True


def whole_answer(s: socket.socket, seconds: float) -> bytes:
    """One whole answer (head and the body its Content-Length gives), however long the server keeps the connection
    open after it; what came within ``seconds`` if less."""
    s.settimeout(seconds)
    got = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while block := s.recv(1 << 16):
            got += block
            head, sep, body = got.partition(b"\r\n\r\n")
            lengths = [ln for ln in head.lower().split(b"\r\n") if ln.startswith(b"content-length:")]
            if sep and lengths and len(body) >= int(lengths[0].split(b":")[1]):
                break
    return got


def test_a_body_that_stops_short_is_answered_408_and_the_connection_closed(server) -> None:
    body = _ids_body(10_000)  # an anonymous caller's largest question
    s = started_post(server["port"], "POST /v1/objects/missing HTTP/1.1\r\nContent-Type: application/json", body)
    try:
        began = time.monotonic()
        got, closed = answer(s, RECEIVE_TIMEOUT + 5)
        waited = time.monotonic() - began
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    assert b"RequestTimeout" in got and closed
    assert RECEIVE_TIMEOUT - 0.5 < waited < RECEIVE_TIMEOUT + 3


def test_a_trickling_body_below_the_minimum_rate_is_answered_408(server) -> None:
    """A byte every half second keeps the connection busy but is far below 4 KiB/s: dropped after one window."""
    body = _ids_body(100)
    s = socket.create_connection(("127.0.0.1", server["port"]))
    try:
        s.sendall(
            "POST /v1/objects/missing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        began = time.monotonic()
        for byte in body:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.5)
            if time.monotonic() - began > 3 * RECEIVE_TIMEOUT:
                break
        got, _closed = answer(s, 5)
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]


def test_a_slow_body_above_the_minimum_rate_is_read_whole(server) -> None:
    """About 100 KiB/s for several timeouts: slow, but not stalled, so the body is read and answered."""
    body = _ids_body(10_000)
    s = socket.create_connection(("127.0.0.1", server["port"]))
    try:
        s.sendall(
            "POST /v1/objects/missing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        began = time.monotonic()
        for at in range(0, len(body), 10_000):
            s.sendall(body[at : at + 10_000])
            time.sleep(0.1)
        assert time.monotonic() - began > 2 * RECEIVE_TIMEOUT
        got, _closed = answer(s, 10)
    finally:
        s.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), got[:300]
    assert len(json.loads(rest)["missing"]) == 10_000


def test_stalled_uploads_hold_bounded_memory_and_are_dropped(server) -> None:
    pid, token = server["pid"], server["token"]
    before = status_bytes(pid, "VmHWM")
    block = os.urandom(MIB)
    sockets = []
    for i in range(STALLED_UPLOADS):
        s = socket.create_connection(("127.0.0.1", server["port"]))
        s.sendall(
            f"PUT /v1/objects/{i + 1:064x} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {UPLOAD + 1}\r\n\r\n".encode()
        )
        sockets.append(s)
    answers = []
    try:
        for s in sockets:  # all of each body but its last byte, then nothing; a refused one may stop reading
            with contextlib.suppress(OSError):
                # a refused upload is answered at once: a send into one the server no longer reads would wait out
                # the timeout, so none is sent once an answer is in, and a send that stalls ends soon
                s.settimeout(1)
                for _ in range(UPLOAD // MIB):
                    if select.select([s], [], [], 0)[0]:
                        break
                    s.sendall(block)
        # the whole answer, not the connection's end: the server may go on reading (and dropping) a refused body
        answers = [whole_answer(s, RECEIVE_TIMEOUT + 5) for s in sockets]
        growth = status_bytes(pid, "VmHWM") - before
    finally:
        for s in sockets:
            s.close()
    statuses = sorted(a[9:12].decode() for a in answers)
    # those the memory for bodies held were dropped by the timeout (408); the others were turned away (503)
    assert set(statuses) <= {"408", "503"} and "408" in statuses and "503" in statuses, statuses
    busy = next(a for a in answers if a.startswith(b"HTTP/1.1 503 "))
    assert b"retry-after: " in busy.lower() and b"request bodies in flight" in busy
    assert growth < MAX_GROWTH, f"the server grew by {growth // MIB} MiB for {STALLED_UPLOADS} stalled uploads"
    # the memory went back: a whole upload is taken now
    data = os.urandom(1 << 16)
    oid, blob = ObjectId.of(data), ObjectHeader(0, len(data), b"").pack() + data  # codec 0: raw
    r = httpx.put(f"{server['url']}/v1/objects/{oid}", content=blob, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (200, 201), r.text
    assert server["proc"].poll() is None
    assert "Traceback" not in server["log"].read_text()


def test_a_download_slower_than_the_receive_timeout_is_not_dropped(server) -> None:
    """The receive timeout is for a body still coming: a GET has none, and its answer may take as long as the
    send timeout allows."""
    s = socket.create_connection(("127.0.0.1", server["port"]))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /acme/base/resolve/v1/model.safetensors HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(10)
    got = bytearray()
    try:
        until = time.monotonic() + 2 * RECEIVE_TIMEOUT + 1
        while time.monotonic() < until:
            block = s.recv(2048)  # about 10 KiB/s: the file takes far longer than the receive timeout
            assert block, f"closed after {len(got)} bytes"
            got += block
            time.sleep(0.2)
    finally:
        s.close()
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    size = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split()[1])
    assert len(body) < size  # still being sent when the read stopped: it outlived the receive timeout


def _answered_before_its_body(port: int, declared: int, sent: int) -> tuple[socket.socket, bytes]:
    """An anonymous upload declaring ``declared`` bytes with ``sent`` of them sent: the server answers 401 without
    reading the body. The socket and the whole answer."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"PUT /v1/objects/{7:064x} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode()
        + bytes(sent)
    )
    return s, whole_answer(s, 10)


def _seconds_until_closed(s: socket.socket, trickle: bytes, since: float) -> float | None:
    """Send ``trickle`` (b"": nothing) every quarter second until the server closes the connection: seconds from
    ``since`` until it did, None if it was still open well past the receive timeout."""
    s.settimeout(1)
    try:
        while time.monotonic() - since < 4 * RECEIVE_TIMEOUT + 5:
            if trickle:
                s.sendall(trickle)
            if select.select([s], [], [], 0.25)[0] and not s.recv(1 << 16):
                return time.monotonic() - since  # the server's FIN
    except (BrokenPipeError, ConnectionResetError):
        return time.monotonic() - since  # the server closed with bytes unread: a reset
    finally:
        s.close()
    return None


@pytest.mark.parametrize("trickle", [b"", b"G"], ids=["nothing-sent", "head-trickled"])
def test_a_request_head_must_arrive_within_the_receive_timeout(server, trickle: bytes) -> None:
    """A connection that sends nothing, or a request's head a byte every quarter second, is closed once the
    receive timeout has passed: either held a connection for ever (a file descriptor each, no credentials)."""
    s = socket.create_connection(("127.0.0.1", server["port"]))
    if trickle:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ")
    closed_after = _seconds_until_closed(s, trickle, time.monotonic())
    assert closed_after is not None, "the server kept a connection that sent no whole request, with no end"
    # not at once, and not long after (a loaded machine may be late by seconds; never early but for the time
    # between the server setting its deadline and the client starting its clock)
    assert RECEIVE_TIMEOUT - 1 < closed_after < RECEIVE_TIMEOUT + 5, closed_after
    assert server["proc"].poll() is None


def test_the_rest_of_a_body_answered_unread_is_not_waited_for_past_the_receive_timeout(server) -> None:
    """A client that declares a huge body, is answered at once, and then trickles the body on (a few bytes every
    quarter second: each one used to restart the server's keep-alive timer) has its connection closed once the
    receive timeout has passed since the answer: no credentials and a byte a second held a connection for ever."""
    s, got = _answered_before_its_body(server["port"], declared=1 << 40, sent=1024)
    closed_after = _seconds_until_closed(s, b"x" * 16, time.monotonic())
    assert got.startswith(b"HTTP/1.1 401 "), got[:200]
    assert closed_after is not None, "the server kept reading a trickled body it had answered, with no end"
    # not at once, and not long after (a loaded machine may be late by seconds; never early but for the time
    # between the server setting its deadline and the client starting its clock)
    assert RECEIVE_TIMEOUT - 1 < closed_after < RECEIVE_TIMEOUT + 5, closed_after
    assert server["proc"].poll() is None


def test_a_client_that_sends_the_rest_of_an_unread_body_keeps_its_connection(server) -> None:
    """The deadline is for clients that do not finish: one that sends the rest of the body it was answered for
    goes on using the connection for its next request, as HTTP/1.1 keep-alive allows."""
    declared, sent = 1 << 20, 64 << 10
    s, got = _answered_before_its_body(server["port"], declared=declared, sent=sent)
    try:
        assert got.startswith(b"HTTP/1.1 401 "), got[:200]
        s.sendall(bytes(declared - sent))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        again = whole_answer(s, 10)
    finally:
        s.close()
    assert again.startswith(b"HTTP/1.1 200 "), again[:200]
