"""``serve`` refuses, before opening the archive or binding anything, a port outside 1-65535 (a traceback from the
socket), an empty host (which bound every interface), a shutdown grace that is not a number of seconds from 0 to
an hour (NaN compares false with both bounds, so a plain range let it through) and a public URL that is not
http(s)://HOST[:PORT]; and a public URL given either way reaches the server of one process and every worker.

Each runs in a process of its own with a deadline: were the check gone, ``serve`` would start serving and never
return, and the deadline turns that into a failure rather than a stuck suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ArchiveCli
from liveserver import serve_process

DEADLINE = 60  # seconds; the refusal comes in well under one


def serve(home: ArchiveCli, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "modelarc.cli.main", "serve", *args],
            env={**os.environ, **home.env},
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve {' '.join(args)} was not refused: it started serving")


@pytest.fixture
def home(tmp_path: Path, sqlite_url: str) -> ArchiveCli:
    archive = ArchiveCli(tmp_path / "home", sqlite_url)
    archive("init")
    return archive


@pytest.mark.parametrize("port", ["-1", "0", "65536", "99999"])
def test_a_port_outside_1_to_65535_is_refused(home: ArchiveCli, port: str) -> None:
    done = serve(home, "--host", "127.0.0.1", "--port", port)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: invalid value for '--port': {port} is not in the range 1<=x<=65535 (see 'modelarc serve --help')"
    )


@pytest.mark.parametrize("host", ["", " "])
def test_an_empty_host_is_refused_rather_than_binding_every_interface(home: ArchiveCli, host: str) -> None:
    done = serve(home, "--host", host, "--port", "1")  # port 1: were it not refused, binding fails, not serves
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: invalid value for '--host': give a host name or address (0.0.0.0 for every interface), "
        "not an empty one (see 'modelarc serve --help')"
    )


@pytest.mark.parametrize(
    "grace, why",
    [
        ("nan", "'nan' is not a finite number"),
        ("inf", "inf is not in the range 0<=x<=3600.0"),
        ("-1", "-1.0 is not in the range 0<=x<=3600.0"),
        ("3601", "3601.0 is not in the range 0<=x<=3600.0"),
        ("soon", "'soon' is not a valid finite float range"),
    ],
)
def test_a_shutdown_grace_that_is_not_0_to_3600_seconds_is_refused(home: ArchiveCli, grace: str, why: str) -> None:
    done = serve(home, "--host", "127.0.0.1", "--port", "1", "--shutdown-grace", grace)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: invalid value for '--shutdown-grace': {why} (see 'modelarc serve --help')"
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_error_line_with_its_own_exit_code(home: ArchiveCli, workers: str) -> None:
    """Not "serving ..." then uvicorn's own ERROR line and its exit 3 (modelarc's "not found"): the socket is
    bound before the banner, and a failure is ``ListenError``, exit 16."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = serve(home, "--host", "127.0.0.1", "--port", port, "--workers", workers)
    assert done.returncode == 16, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: address already in use"]


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_public_url_that_is_not_scheme_host_and_port_is_refused(
    home: ArchiveCli, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://models.example.org/modelarc"
    if how == "option":
        done = serve(home, "--host", "127.0.0.1", "--port", "1", "--public-url", url)
    else:
        monkeypatch.setenv("MODELARC_PUBLIC_URL", url)  # read by the process serve() starts
        done = serve(home, "--host", "127.0.0.1", "--port", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    source = " (from MODELARC_PUBLIC_URL)" if how == "environment" else ""  # where to look for the typo
    assert done.stderr.strip().splitlines() == [
        "error: invalid value for '--public-url': give the URL clients reach this server at as "
        f"http(s)://HOST[:PORT], not {url!r} (no path: serve at the root of a host name){source} "
        "(see 'modelarc serve --help')"
    ]


@pytest.mark.parametrize(
    "workers, how", [("1", "option"), ("2", "option"), ("2", "environment")], ids=["one", "workers", "workers-env"]
)
def test_a_public_url_reaches_every_server_process(home: ArchiveCli, workers: str, how: str) -> None:
    """The option reaches the one-process app directly and the workers through the environment, which ``serve``
    also sets when the option is not given: a shell's stale MODELARC_PUBLIC_URL must not outlive ``--public-url``."""
    public = "https://models.example.org:8443"
    env = {**os.environ, **home.env, "MODELARC_PUBLIC_URL": public if how == "environment" else "http://stale:1"}
    args = ("--workers", workers, *(("--public-url", public) if how == "option" else ()))
    with serve_process(home.home, env, *args) as served:
        for _ in range(4):  # with two workers, either may answer each: every one must have been told
            answer = httpx.get(f"{served.url}/v1/models/", headers={"Host": "evil.example"})
            assert answer.status_code == 307 and answer.headers["location"] == f"{public}/v1/models"
