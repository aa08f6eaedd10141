"""gc on the server, run in a loop, never breaks remote pushes: uploads are leased until their commit."""

from __future__ import annotations

import threading
from pathlib import Path

from modelfactory import finetune, tiny_tensors, write_model
from transferkit import Server, make_home, trusted_by_server

from modelarc.errors import LockedError


def test_remote_pushes_succeed_while_gc_runs_in_a_loop_on_the_server(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    stop = threading.Event()
    runs = {"gc": 0, "busy": 0, "removed": 0}

    def collect() -> None:
        while not stop.is_set():
            try:
                runs["removed"] += server.archive.gc().objects_removed
                runs["gc"] += 1
            except LockedError:  # an upload or commit holds the store: gc says so and tries again
                runs["busy"] += 1
            # A pause between runs, as any scheduled gc has: back to back, gc won the store lock's race against a
            # waiting upload almost every time (the lock is not fair) and this test took 55-200 s instead of ~3.
            stop.wait(0.01)

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        for i in range(4):
            tensors = finetune(tiny_tensors(), [f"model.layers.{i % 2}.mlp.weight"], seed=i + 1)
            alice("push", write_model(tmp_path / f"m{i}", tensors), f"acme/m:v{i}", "--remote", "origin")
    finally:
        stop.set()
        collector.join(timeout=60)
    assert runs["gc"] > 0, runs
    assert runs["removed"] == 0, runs  # nothing any push needed was garbage at any point
    for i in range(4):
        server.archive.verify(f"acme/m:v{i}")
    assert server.archive.fsck().ok
