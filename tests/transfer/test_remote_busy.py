"""A remote that answers "busy" (503 ServerBusy with Retry-After: its memory for bodies is taken, or its catalog is
locked by another change) is asked again after the pause it asks for, so a push or a pull rides out a short rush;
one that stays busy for longer than MODELARC_REMOTE_BUSY_WAIT ends the command with its answer, in one line."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hostilekit import RewritingProxy, serve_proxy
from modelfactory import tiny_tensors, write_model
from transferkit import Home, Server, files_of, make_home, trusted_by_server

BUSY = b'{"detail": "the server is busy, try again"}'


def _busy_for(times: int, where: str, retry_after: str = "1") -> tuple[Any, list[str]]:
    """A rewrite answering 503 ServerBusy to the first ``times`` requests whose path contains ``where``."""
    turned_away: list[str] = []
    lock = threading.Lock()

    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        with lock:
            if where in path and len(turned_away) < times:
                turned_away.append(f"{method} {path}")
                busy = {"content-type": "application/json", "X-Error-Code": "ServerBusy", "Retry-After": retry_after}
                return 503, busy, BUSY
        return status, headers, body

    return rewrite, turned_away


def _trusting(tmp_path: Path, name: str, signer: Home) -> Home:
    """A new home that trusts ``signer``'s key (as the server does), to pull what it pushed."""
    home = make_home(tmp_path, name)
    with signer.archive() as a:
        (tmp_path / f"{signer.path.name}.pem").write_bytes(a.public_key_pem())
    home("keys", "import", tmp_path / f"{signer.path.name}.pem", "--label", signer.path.name)
    return home


def test_a_pull_and_a_push_ride_out_busy_answers(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    model = write_model(tmp_path / "m", tiny_tensors(seed=5))
    alice("push", model, "acme/m:v1")

    # the commit turned away twice: the push is sent again and lands once
    rewrite, turned_away = _busy_for(2, "/v1/transfer/commit")
    with serve_proxy(RewritingProxy(server.url, rewrite=rewrite)) as url:
        alice("remote", "add", "busy", url, "--token", server.push_token, "--no-trust-keys")
        started = time.monotonic()
        alice("push", "acme/m:v1", "--remote", "busy")
        waited = time.monotonic() - started
    assert len(turned_away) == 2 and waited >= 1.9, (turned_away, waited)
    assert server.archive.resolve("acme/m:v1")[1].digest == alice.json("show", "acme/m:v1")["snapshot"]

    # the first object reads turned away: the pull waits and gets every file, byte for byte
    bob = _trusting(tmp_path, "bob", alice)
    rewrite, turned_away = _busy_for(3, "/v1/objects/")
    with serve_proxy(RewritingProxy(server.url, rewrite=rewrite)) as url:
        bob("remote", "add", "origin", url, "--no-trust-keys")
        bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin", "--jobs", "2")
    assert len(turned_away) == 3, turned_away
    assert files_of(tmp_path / "out") == files_of(model)


def test_a_remote_that_stays_busy_ends_the_pull_after_the_wait_allowed(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("push", write_model(tmp_path / "m", tiny_tensors(seed=6)), "acme/m:v1", "--remote", "origin")
    monkeypatch.setenv("MODELARC_REMOTE_BUSY_WAIT", "2")
    bob = _trusting(tmp_path, "bob", alice)
    # it asks for an hour: the client waits at most BUSY_PAUSE_BOUNDS' longest pause, and here not past the 2 s
    rewrite, turned_away = _busy_for(10_000, "/v1/objects/", retry_after="3600")
    with serve_proxy(RewritingProxy(server.url, rewrite=rewrite)) as url:
        bob("remote", "add", "origin", url, "--no-trust-keys")
        started = time.monotonic()
        failed = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin", ok=False)
        waited = time.monotonic() - started
    assert "busy" in failed.stderr.splitlines()[-1], failed.output
    assert turned_away and waited < 30, (len(turned_away), waited)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert bob.json("ls") == []

    # Retry-After: 1 within the 2 s allowed: asked again after 1 s, not a third time (that wait would end past 2 s)
    rewrite, turned_away = _busy_for(10_000, "/v1/objects/")
    with serve_proxy(RewritingProxy(server.url, rewrite=rewrite)) as url:
        bob("remote", "add", "again", url, "--no-trust-keys")
        started = time.monotonic()
        bob("pull", "acme/m:v1", tmp_path / "out2", "--remote", "again", "--jobs", "1", ok=False)
        waited = time.monotonic() - started
    assert len(turned_away) == 2 and 0.9 <= waited < 30, (turned_away, waited)
