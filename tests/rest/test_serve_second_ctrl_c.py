"""A second Ctrl-C while downloads are in flight: uvicorn skips the 10 s grace and leaves the requests, and the app's
lifespan, to asyncio's teardown, which cancels them. ``modelarc serve`` then says in one line how many requests it
stopped (cli/stopping_server.py ``StoppingServer``), where each cancelled request and the lifespan printed a
``CancelledError`` traceback, or several.

A real ``modelarc serve`` process (one process: the workers of ``--workers N`` are uvicorn's own servers, and a
signal sent to the ``serve`` process reaches each of them once, as SIGTERM, so they always take the grace; that path
is tests/rest/test_stalled_downloads.py::test_a_stopping_server_does_not_wait_on_a_slow_reader).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

from test_stalled_downloads import _reading, serving

READERS = 2  # downloads in flight, each reading 64 KiB/s of a 32 MiB file: minutes, were the server to wait


def test_a_second_ctrl_c_stops_the_downloads_in_one_line_without_tracebacks(tmp_path: Path) -> None:
    with serving(tmp_path) as running:
        for _ in range(READERS):
            threading.Thread(target=_reading, args=(running["port"], 16 << 10, 0.25, 60), daemon=True).start()
        time.sleep(1)  # both downloads under way
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
    assert "Traceback" not in log and "CancelledError" not in log, log
    stopped = [line for line in log.splitlines() if "still in flight" in line]
    assert stopped == [
        f"WARNING:  stopped {READERS} requests still in flight: a second Ctrl-C skips the 10 s grace"
    ], log
