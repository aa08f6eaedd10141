"""A second Ctrl-C while downloads are in flight: uvicorn skips the 10 s grace and leaves the requests, and the app's
lifespan, to asyncio's teardown, which cancels them, and each printed a ``CancelledError`` traceback, or several.
``modelarc serve`` says in one line how many requests it stopped (cli/stopping_server.py ``StoppingServer``); a
worker of ``--workers N``, whose server is uvicorn's own, says one line per request (cli/commands/serve.py
``StoppingServerLog``).

Real ``modelarc serve`` processes. A single stop signal is tests/rest/test_stalled_downloads.py
::test_a_stopping_server_does_not_wait_on_a_slow_reader.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from test_stalled_downloads import _reading, serving

READERS = 2  # downloads in flight, each reading 64 KiB/s of a 32 MiB file: minutes, were the server to wait


def _start_downloads(port: int) -> None:
    for _ in range(READERS):
        threading.Thread(target=_reading, args=(port, 16 << 10, 0.25, 60), daemon=True).start()
    time.sleep(1)  # both under way


def _in_flight_lines(log: str) -> list[str]:
    assert "Traceback" not in log and "CancelledError" not in log, log
    return [line for line in log.splitlines() if "still in flight" in line]


def test_a_second_ctrl_c_stops_the_downloads_in_one_line_without_tracebacks(tmp_path: Path) -> None:
    with serving(tmp_path) as running:
        _start_downloads(running["port"])
        proc: subprocess.Popen[bytes] = running["proc"]
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # the server is waiting out its grace on the two downloads
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            raise AssertionError("modelarc serve still running 8 s after a second Ctrl-C") from None
        assert time.monotonic() - started < 8  # not the 10 s grace: the second Ctrl-C cut it short
        log = running["log"].read_text()
    assert _in_flight_lines(log) == [
        f"WARNING:  stopped {READERS} requests still in flight: a second Ctrl-C skips the 10 s grace"
    ], log


def test_a_second_ctrl_c_stops_a_workers_downloads_in_a_line_each_without_tracebacks(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group, so each worker gets both. Sent here to the workers
    alone, with uvicorn's supervisor held still (SIGSTOP): signalled, it sends each worker one SIGTERM, which, landing
    between the two Ctrl-Cs, ends the worker on the spot; running, it would replace the workers as they end and then
    wait on the new ones' start-up to stop."""
    with serving(tmp_path, args=("--workers", "2")) as running:
        _start_downloads(running["port"])
        supervisor: subprocess.Popen[bytes] = running["proc"]
        workers = _worker_pids(supervisor.pid)
        assert len(workers) == 2, workers
        os.kill(supervisor.pid, signal.SIGSTOP)
        try:
            for sent in range(2):
                time.sleep(0.3 * sent)  # the second while the workers wait out their grace
                for pid in workers:
                    os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 8
            while any(_running(pid) for pid in workers):
                assert time.monotonic() < deadline, "a worker still running 8 s after a second Ctrl-C"
                time.sleep(0.05)
        finally:
            supervisor.terminate()
            os.kill(supervisor.pid, signal.SIGCONT)
        supervisor.wait(10)
        log = running["log"].read_text()
    assert _in_flight_lines(log) == ["WARNING:  stopped a request still in flight"] * READERS, log


def _worker_pids(parent: int) -> list[int]:
    """The server processes uvicorn's supervisor spawned (multiprocessing's spawn marks them on the command line;
    its resource tracker, also a child, is not one)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # ended, and not reaped by the supervisor (stopped)
