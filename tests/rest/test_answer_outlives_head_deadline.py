"""A connection's head deadline (cli/http_protocol.py: closed ``MODELARC_RECEIVE_TIMEOUT`` after its last answer
unless a next request's head came) never cuts an answer that is still going out to a client taking it: the deadline
moves on while the client takes the send floor. One that takes nothing is reset, its unsent bytes dropped.

The answer is one 12 MiB message, more than the sockets' buffers hold, so most of it waits in uvicorn's own write
buffer when the deadline comes (a 2 s timeout against a client reading ~2 MB/s). The app is a stand-in that sends
that message; the protocol, uvicorn and the sockets are the ones ``modelarc serve`` runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from liveserver import free_port

TIMEOUT = 2  # MODELARC_RECEIVE_TIMEOUT of the server: the smallest it takes is 1
BODY = 12 << 20

APP = textwrap.dedent(
    f"""
    import sys
    import uvicorn
    from modelarc.cli.http_protocol import ServeHTTPProtocol

    BODY = b"x" * {BODY}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        head = [(b"content-length", str(len(BODY)).encode())]
        await send({{"type": "http.response.start", "status": 200, "headers": head}})
        await send({{"type": "http.response.body", "body": BODY}})

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=ServeHTTPProtocol, log_level="warning")
    """
)


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "MODELARC_RECEIVE_TIMEOUT": str(TIMEOUT)}
    proc = subprocess.Popen([sys.executable, "-c", APP, str(port)], env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        yield port
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)


def _asked(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    return s


def _body_bytes(got: bytearray) -> int:
    head, sep, _ = bytes(got[:512]).partition(b"\r\n\r\n")
    return len(got) - len(head) - len(sep) if sep else 0


def test_a_slow_reader_gets_the_whole_answer_past_the_deadline(port: int) -> None:
    s = _asked(port)
    s.settimeout(10)
    got = bytearray()
    began = time.monotonic()
    try:
        while block := s.recv(64 << 10):
            got += block
            if _body_bytes(got) >= BODY:
                break
            time.sleep(0.03)  # about 2 MB/s: the answer takes several timeouts
    except ConnectionResetError:
        pass
    finally:
        s.close()
    took = time.monotonic() - began
    body_bytes = _body_bytes(got)
    assert body_bytes == BODY, f"cut after {body_bytes} of {BODY} bytes, {took:.1f} s in"
    assert took > TIMEOUT  # it did outlive the deadline


def test_a_client_that_takes_nothing_of_its_answer_is_reset(port: int) -> None:
    s = _asked(port)
    try:
        time.sleep(2 * TIMEOUT + 1)
        s.settimeout(5)
        got, ended = 0, False
        try:
            while block := s.recv(1 << 20):
                got += len(block)
            ended = True
        except ConnectionResetError:
            ended = True
        except TimeoutError:
            pass
    finally:
        s.close()
    assert ended and got < BODY, f"still being sent to a client that took nothing ({got} bytes came)"
