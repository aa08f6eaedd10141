"""push hf:// downloads several files at once (``--jobs``), each still bounded and verified; an interrupt stops every
download at once and leaves nothing behind; a terminal shows a download bar."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ArchiveCli
from hubserver import HubServer
from safetensors.numpy import save_file

SHARDS = 4


def sharded_model(folder: Path, shards: int = SHARDS, floats: int = 4096, config: bool = True) -> Path:
    """A model in ``shards`` safetensors files (as the Hub serves large ones) and a config."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(11)
    for n in range(shards):
        tensors = {f"layers.{n}.weight": rng.standard_normal(floats).astype(np.float32)}
        save_file(tensors, str(folder / f"model-{n + 1:05d}-of-{shards:05d}.safetensors"))
    if config:
        (folder / "config.json").write_text('{"model_type": "llama"}\n')
    return folder


@pytest.fixture
def sharded(tmp_path: Path, hub: HubServer) -> Path:
    folder = sharded_model(tmp_path / "served")
    hub.add("org/sharded", folder)
    return folder


def _is_shard(path: str) -> bool:
    return path.endswith(".safetensors")


def test_the_shards_download_at_the_same_time(arc: ArchiveCli, hub: HubServer, sharded: Path) -> None:
    """Each shard's answer waits until all four are asked for: one at a time, the first would wait in vain."""
    everyone = threading.Barrier(SHARDS, timeout=10)

    def together(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if _is_shard(path):
            everyone.wait()  # broken (an error, no answer) if the four are not in flight at once
        return data

    hub.tamper_file = together
    arc("push", "hf://org/sharded", "org/sharded:v1", "--jobs", "4")
    assert len(arc.json("show", "org/sharded:v1")["files"]) == SHARDS + 1


def test_no_more_than_jobs_downloads_at_once(arc: ArchiveCli, hub: HubServer, sharded: Path) -> None:
    lock = threading.Lock()
    now = [0]
    most = [0]

    def count(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.3)
        with lock:
            now[0] -= 1
        return data

    hub.tamper_file = count
    arc("push", "hf://org/sharded", "org/sharded:v1", "--jobs", "2")
    assert most[0] == 2


def test_one_bad_shard_among_parallel_downloads_refuses_the_import(
    arc: ArchiveCli, hub: HubServer, sharded: Path
) -> None:
    def flip(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if path.startswith("model-00003"):
            return data[:-1] + bytes([data[-1] ^ 1])
        return data

    hub.tamper_file = flip
    line = arc.fail("push", "hf://org/sharded", "org/sharded:v1").stderr.strip().splitlines()[-1]
    assert "model-00003-of-00004.safetensors" in line and "hash to" in line
    assert arc.json("ls") == [] and arc.json("audit", "--action", "import") == []
    assert not any(
        p.name.startswith(".modelarc-import-") for p in (Path(arc.env["HF_HOME"]) / "hub").iterdir()
    )


def _run(arc: ArchiveCli, *args: str, **popen: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelarc.cli.main", *args],
        env={**os.environ, **arc.env},
        **popen,  # type: ignore[call-overload]
    )


@pytest.mark.parametrize(
    ("signum", "code", "word"), [(signal.SIGINT, 130, b"interrupted"), (signal.SIGTERM, 143, b"terminated")]
)
def test_an_interrupt_stops_every_stalled_download_at_once(
    arc: ArchiveCli, hub: HubServer, sharded: Path, signum: int, code: int, word: bytes
) -> None:
    """Four downloads wait on an endpoint that never answers (with the default 60 s read timeout): the signal ends
    the command in moments, every worker thread ended (the process exits), the private folder gone."""
    release = threading.Event()

    def stall(path: str, data: bytes, headers: dict[str, str]) -> bytes:
        if _is_shard(path):
            release.wait(90)
        return data

    hub.tamper_file = stall
    proc = _run(
        arc,
        "push",
        "hf://org/sharded",
        "org/sharded:v1",
        "--no-progress",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(_is_shard(r) for r in hub.requests) < SHARDS and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        assert sum(_is_shard(r) for r in hub.requests) == SHARDS
        signalled = time.monotonic()
        proc.send_signal(signum)
        _stdout, stderr = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code and word in stderr, stderr
    assert b"Traceback" not in stderr
    assert (
        took < 30
    )  # the read timeout is 60 s: a worker left waiting for its answer would hold the exit that long
    assert not [
        p for p in (Path(arc.env["HF_HOME"]) / "hub").iterdir() if p.name.startswith(".modelarc-import-")
    ]
    assert arc.json("ls") == [] and arc.json("audit", "--action", "import") == []


def test_a_terminal_shows_the_download_then_the_push(arc: ArchiveCli, hub: HubServer, sharded: Path) -> None:
    """On a terminal (a pseudo-terminal here) the download has its own bar, named for the source."""
    import pty

    hub.rate = 40_000.0  # about a second for the shards: the bar is drawn more than once
    leader, follower = pty.openpty()
    proc = _run(
        arc,
        "push",
        "hf://org/sharded",
        "org/sharded:v1",
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    seen = bytearray()
    try:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the other end closed: the command has ended
                break
            if not data:
                break
            seen += data
        proc.communicate(timeout=60)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, bytes(seen)
    assert b"download hf://org/sharded" in seen, bytes(seen)
    assert b"push org/sharded:v1" in seen, bytes(seen)


def test_no_bar_when_stderr_is_no_terminal(arc: ArchiveCli, hub: HubServer, sharded: Path) -> None:
    result = arc("push", "hf://org/sharded", "org/sharded:v1")
    assert "download hf://" not in result.stderr


def test_a_trickled_body_ends_at_its_deadline(arc: ArchiveCli, hub: HubServer, tmp_path: Path) -> None:
    """8 bytes a second, well under MODELARC_REMOTE_MIN_RATE: each file's budget is 1 s plus its size at 1000
    bytes/s (a few seconds here), checked at every read. It was checked once per MiB received, so a body smaller
    than that trickled on to its end (here more than ten minutes)."""
    # no small file: one that ended before the first MiB was checked at its end, and refused, all the same
    hub.add("org/slow", sharded_model(tmp_path / "slow", shards=2, floats=1024, config=False))
    hub.rate = 8.0
    arc.env.update({"MODELARC_REMOTE_TIMEOUT": "1", "MODELARC_REMOTE_MIN_RATE": "1000"})
    started = time.monotonic()
    line = arc.fail("push", "hf://org/slow", "org/slow:v1").stderr.strip().splitlines()[-1]
    assert "not received within 1 s plus 1000 bytes/s" in line
    assert time.monotonic() - started < 60
