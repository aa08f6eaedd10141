"""Clients that send a download request and never read cannot grow a real ``modelarc serve`` process's memory
without bound (docs/API.md, "Serving many clients"): the response memory (MODELARC_SEND_MEMORY) caps what all
responses hold together, and the send timeout (MODELARC_SEND_TIMEOUT) drops a client that stopped reading, so the
memory goes back and a normal client is served again.

Measured as the kernel sees it: the server's peak resident size (VmHWM in /proc/PID/status) before and after the
stalled clients. Without the bound each stalled download holds a decoded chunk (8 MiB here) and the piece on its way
out, each stalled object download its object: 48 of them took the server up by about 430 MB.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from liveserver import free_port
from modelfactory import write_model

from modelarc.archive.repository import Archive

MIB = 1 << 20
SEND_MEMORY = 32 * MIB
SEND_TIMEOUT = 2  # seconds; the smallest MODELARC_SEND_TIMEOUT takes is 1
STALLED_FILE = 24  # Hub file downloads that never read
STALLED_OBJECT = 24  # object downloads (remote pull) that never read
# well under what the stalled clients hold without the bound (48 x 8-10 MiB: about 430 MB) and well over what they may
# hold with it (32 MiB, plus one decode's planes, the allocator's slack and each connection's own small buffers:
# about 100 MB measured)
MAX_GROWTH = 200 * MIB
URL_PATH = "/acme/big/resolve/v1/model.safetensors"


def status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@contextlib.contextmanager
def serving(
    base: Path, env_extra: dict[str, str] | None = None, args: tuple[str, ...] = ()
) -> Iterator[dict[str, Any]]:
    """``modelarc serve ARGS`` in a process of its own over a 32 MiB file of four 8 MiB chunks, in ``base``."""
    rng = np.random.default_rng(5)
    tensors = {f"w{i}": rng.standard_normal(2 * MIB, dtype=np.float32) for i in range(4)}  # 8 MiB each
    src = write_model(base / "src", tensors)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _ = Archive.init(base / "home")
    archive.push(src, "acme/big:v1")
    _ref, snap = archive.resolve("acme/big:v1")
    entry = next(f for f in archive.manifest(snap).files if f.path == "model.safetensors")
    chunk_ids = [str(c.id) for p in entry.parts for c in p.chunks]
    archive.close()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELARC_")},
        "MODELARC_HOME": str(base / "home"),
        "MODELARC_SEND_MEMORY": f"{SEND_MEMORY}",
        "MODELARC_SEND_TIMEOUT": str(SEND_TIMEOUT),
        "MODELARC_DECODE_SLOTS": "1",
        **(env_extra or {}),
    }
    modelarc = Path(sys.executable).with_name("modelarc")
    log = (base / "serve.log").open("w")
    proc = subprocess.Popen([str(modelarc), "serve", "--port", str(port), *args], env=env, stderr=log)
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
        yield {
            "url": url,
            "port": port,
            "pid": proc.pid,
            "data": (src / "model.safetensors").read_bytes(),
            "chunks": chunk_ids,
            "proc": proc,
            "log": base / "serve.log",
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serving(tmp_path_factory.mktemp("stalled")) as running:
        yield running


def stalled_request(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little on the client's side
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def ended(s: socket.socket, seconds: float = 10, most: int = MIB) -> bool:
    """Whether the server has ended this download: a reset or EOF within ``most`` bytes read (what the sockets
    held when it was aborted), or a 503 (turned away before it began). A download still going sends more."""
    s.settimeout(seconds)
    got = 0
    try:
        while got <= most:
            block = s.recv(1 << 16)
            if not block or (got == 0 and block.startswith(b"HTTP/1.1 503 ")):
                return True
            got += len(block)
    except ConnectionResetError:
        return True
    except TimeoutError:
        pass
    return False


def test_stalled_downloads_hold_bounded_memory_and_are_dropped(server) -> None:
    url, pid = server["url"], server["pid"]
    warm = httpx.get(url + URL_PATH, timeout=60)  # one whole download: the allocator's usual arenas exist
    assert warm.status_code == 200 and warm.content == server["data"]
    before = status_bytes(pid, "VmHWM")

    objects = [f"/v1/objects/{server['chunks'][i % len(server['chunks'])]}" for i in range(STALLED_OBJECT)]
    sockets = [stalled_request(server["port"], URL_PATH) for _ in range(STALLED_FILE)]
    sockets += [stalled_request(server["port"], path) for path in objects]
    try:
        # meanwhile a normal client is served, or told to come back (503 with Retry-After), never left hanging
        during = httpx.get(url + URL_PATH, timeout=60)
        assert during.status_code in (200, 503), during.text[:300]
        if during.status_code == 503:
            assert during.headers["retry-after"].isdigit() and during.headers["x-error-code"] == "ServerBusy"
        else:
            assert during.content == server["data"]
        # the send timeout drops every stalled client: none is left holding memory
        time.sleep(SEND_TIMEOUT + 1)
        assert sum(not ended(s) for s in sockets) == 0
        growth = status_bytes(pid, "VmHWM") - before
        assert growth < MAX_GROWTH, (
            f"the server grew by {growth // MIB} MiB for {len(sockets)} stalled clients"
        )
        after = httpx.get(url + URL_PATH, timeout=60)
        assert after.status_code == 200 and after.content == server["data"]
    finally:
        for s in sockets:
            s.close()
    assert server["proc"].poll() is None
    assert "Traceback" not in server["log"].read_text()  # a dropped client is no error of the server's


def test_a_slow_client_that_keeps_reading_is_not_dropped(server) -> None:
    """The timeout is for a client that takes nothing, not for a slow one: one reading 64 KiB/s (a 1 MiB piece
    every 16 s, against a 2 s timeout) was dropped, because the whole send of a piece was timed."""
    s = socket.create_connection(("127.0.0.1", server["port"]))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET {URL_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    s.settimeout(10)
    got = bytearray()
    try:
        until = time.monotonic() + 4 * SEND_TIMEOUT
        while time.monotonic() < until:
            block = s.recv(16 << 10)
            assert block, f"dropped after {len(got)} bytes"
            got += block
            time.sleep(0.25)
    except ConnectionResetError:
        raise AssertionError(f"reset after {len(got)} bytes") from None
    finally:
        s.close()
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and server["data"].startswith(body)
    # and one that never reads is still dropped, once the timeout has passed (reading it now would keep it going)
    stalled = stalled_request(server["port"], URL_PATH)
    try:
        time.sleep(SEND_TIMEOUT + 2)
        assert ended(stalled)
    finally:
        stalled.close()


def _reading(
    port: int, block: int, pause: float, seconds: float, rcvbuf: int | None = 4096
) -> tuple[int, bool]:
    """Download the file reading ``block`` bytes every ``pause`` seconds for ``seconds``: (bytes read, whether the
    server ended it). What the client's kernel still holds when the time is up is read at once: a reset or EOF
    within it means the server had dropped the download. ``rcvbuf``: the client's receive buffer (None: the
    kernel's own, which lets one ``recv`` take a whole ``block``)."""
    s = socket.create_connection(("127.0.0.1", port))
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.sendall(f"GET {URL_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    s.settimeout(10)
    got = 0
    try:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            data = s.recv(block)
            if not data:
                return got, True
            got += len(data)
            time.sleep(pause)
        return got, ended(s, seconds=5, most=512 << 10)
    except ConnectionResetError:
        return got, True
    finally:
        s.close()


def test_a_client_below_the_minimum_rate_is_dropped(tmp_path: Path) -> None:
    """Taking a little in every timeout is not reading. With MODELARC_SEND_MIN_RATE at 1 MiB/s over a 4 s timeout,
    a client reading 64 KiB/s (which the default floor keeps: the test above) is dropped, and one reading at full
    speed gets the whole file. Without a floor any progress at all kept a client, and its share of the send memory,
    for ever: a few bytes acknowledged per timeout were enough."""
    floor = {"MODELARC_SEND_TIMEOUT": "4", "MODELARC_SEND_MIN_RATE": "1MiB"}
    with serving(tmp_path, floor) as running:
        got, dropped = _reading(running["port"], 16 << 10, 0.25, 16)
        assert dropped, f"still served after {got} bytes at 64 KiB/s"
        whole = httpx.get(running["url"] + URL_PATH, timeout=60)
        assert whole.status_code == 200 and whole.content == running["data"]



def test_the_floor_holds_across_pieces_when_it_asks_more_than_a_piece_per_timeout(tmp_path: Path) -> None:
    """With MODELARC_SEND_MIN_RATE at 4 MiB/s over a 2 s timeout (8 MiB a window, more than a 1 MiB piece), a client
    reading at most 1.25 MiB/s is dropped. When each piece had a watcher of its own, whose window restarted with the
    piece and asked at most what was unsent at its start, a client that took each piece within the timeout was
    never judged: the floor was really min(floor, about 1 MiB per timeout)."""
    floor = {"MODELARC_SEND_TIMEOUT": "2", "MODELARC_SEND_MIN_RATE": "4MiB"}
    with serving(tmp_path, floor) as running:
        got, dropped = _reading(running["port"], 64 << 10, 0.05, 8, rcvbuf=None)
        assert dropped, f"still served after {got} bytes at up to 1.25 MiB/s"
        whole = httpx.get(running["url"] + URL_PATH, timeout=60)
        assert whole.status_code == 200 and whole.content == running["data"]

def test_a_stopping_server_does_not_wait_on_a_slow_reader(tmp_path: Path) -> None:
    """SIGTERM with a slow client still reading: the server stops when its grace period (``--shutdown-grace``, 2 s
    here) is over, where it waited for the download to end (the client here would read for minutes), and not
    before: the download goes on through the grace.

    And it says so in one line: uvicorn cancels the download's task when the grace runs out and logged the task's
    CancelledError as "Exception in ASGI application" with a traceback (cli/commands/serve.py StoppingServerLog).
    Once with one process and once with ``--workers 2``, whose worker processes take their logging from uvicorn's
    log_config, not from the parent: the two are stopped together, so the grace is waited once."""
    grace = ("--shutdown-grace", "2")
    with (
        serving(tmp_path / "one", args=grace) as one,
        serving(tmp_path / "two", args=(*grace, "--workers", "2")) as two,
    ):
        for running in (one, two):
            reader = threading.Thread(
                target=_reading, args=(running["port"], 16 << 10, 0.25, 120), daemon=True
            )
            reader.start()
        time.sleep(1)
        started = time.monotonic()
        for running in (one, two):
            running["proc"].terminate()
        for running in (one, two):
            try:
                running["proc"].wait(max(1, 40 - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                raise AssertionError("modelarc serve still running 40 s after SIGTERM") from None
            # the grace given, not the default 10 s: the log line alone would not show it, it names the option
            assert 2 <= time.monotonic() - started < 9.5, running["log"].read_text()
        for running in (one, two):
            log = running["log"].read_text()
            assert "Traceback" not in log and "CancelledError" not in log, log
            assert "stopped 1 request still in flight after the 2 s grace" in log, log
