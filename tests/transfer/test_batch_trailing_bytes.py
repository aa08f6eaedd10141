"""docs/FORMAT.md: a batch stream must end after its last frame, and anything else stops the pull. Bytes after the
last frame were noticed in a prefetch thread and lost (no slot was left to carry the error): the pull went on and
recorded the snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostilekit import RewritingProxy, serve_proxy
from modelfactory import tiny_tensors, write_model
from test_malicious_remote import _bob
from transferkit import Home, Server, make_home, trusted_by_server


@pytest.fixture
def alice(server: Server, tmp_path: Path) -> Home:
    home = make_home(tmp_path, "alice")
    trusted_by_server(server, home)
    home("remote", "add", "origin", server.url, "--token", server.push_token)
    home("push", write_model(tmp_path / "m", tiny_tensors(seed=5)), "acme/m:v1", "--remote", "origin")
    return home


@pytest.mark.parametrize("into", ["archive", "folder"])
def test_bytes_after_the_last_frame_of_a_batch_stop_the_pull(
    server: Server, alice: Home, tmp_path: Path, into: str
) -> None:
    def trailing(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path.endswith("/v1/objects/batch") and status == 200:
            body += b"extra"
            headers = {**headers, "Content-Length": str(len(body))}
        return status, headers, body

    with serve_proxy(RewritingProxy(server.url, rewrite=trailing)) as url:
        bob = _bob(tmp_path, url, alice)
        where = [str(tmp_path / "out")] if into == "folder" else []
        result = bob("pull", "acme/m:v1", *where, "--remote", "evil", ok=False)
    assert "more than the" in result.stderr, result.stderr
    assert not bob.json("ls", "--name", "acme/m")
