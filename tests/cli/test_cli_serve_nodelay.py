"""``modelarc serve`` turns Nagle's algorithm off on every connection it accepts, with one process and with workers.

Why it matters (cli/http_protocol.py): uvicorn sends a response's head and body in two writes, and with Nagle on a
small body waits for the client's delayed ACK, 40 ms a request on Linux: a pull's manifest, bundles and batches
each waited so. asyncio would set TCP_NODELAY itself only on a socket created with ``proto=IPPROTO_TCP``, which the
socket ``serve`` binds is not. The option is read from the server's own socket: the test takes a duplicate of the
server process's descriptor for the connection it opened (``pidfd_getfd``, Linux 5.6+, allowed on a child of ours),
found through /proc/net/tcp by the pair of ports, rather than timing requests.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import socket
import sys
from pathlib import Path

import pytest
from conftest import ArchiveCli
from liveserver import serve_process

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the server's socket via /proc"
)

SYS_PIDFD_GETFD = {"x86_64": 438, "aarch64": 438}


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            todo.extend(int(child) for child in children)
    return found


def _socket_inode(server_port: int, client_port: int) -> str:
    """The inode of the server's end of the TCP connection between the two ports (127.0.0.1)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return fields[9]
    raise AssertionError(f"no connection 127.0.0.1:{server_port} <- :{client_port} in /proc/net/tcp")


def _server_nodelay(server_pid: int, inode: str) -> int:
    """TCP_NODELAY as the server process holding the socket ``inode`` has it set."""
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in _descendants(server_pid):
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(entry) != f"socket:[{inode}]":
                    continue
            except OSError:  # closed meanwhile
                continue
            pidfd = os.pidfd_open(pid)
            try:
                fd = libc.syscall(SYS_PIDFD_GETFD[os.uname().machine], pidfd, int(entry.name), 0)
                assert fd >= 0, f"pidfd_getfd: {os.strerror(ctypes.get_errno())}"
            finally:
                os.close(pidfd)
            with socket.socket(fileno=fd) as dup:
                return dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    raise AssertionError(f"no process of the server holds socket {inode}")


@pytest.mark.skipif(os.uname().machine not in SYS_PIDFD_GETFD, reason="pidfd_getfd's number is known here")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_sends_small_answers_without_waiting_for_an_ack(
    tmp_path: Path, sqlite_url: str, workers: str
) -> None:
    home = ArchiveCli(tmp_path / "home", sqlite_url)
    home("init")
    with serve_process(home.home, {**os.environ, **home.env}, "--workers", workers) as served:
        port = int(served.url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(2):  # a kept-alive connection, as a pull's
                conn.request("GET", "/readyz")
                answer = conn.getresponse()
                answer.read()
                assert answer.status == 200
            assert conn.sock is not None
            inode = _socket_inode(port, conn.sock.getsockname()[1])
            assert _server_nodelay(served.process.pid, inode) == 1, "the server's connection has Nagle on"
        finally:
            conn.close()
