"""Where push hf:// sends the user's Hugging Face token (HF_TOKEN): to the endpoint only; never over plain http to a
host that is not this machine; never after a redirect to another origin; never to a proxy in the clear. Two Hub
imitations on 127.0.0.1 (different ports: different origins), one also standing in for a remote host's proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ArchiveCli
from hubserver import HubServer
from modelfactory import tiny_tensors, write_model

TOKEN = "hf_modelarcTestTokenNotReal0123456789"
BEARER = f"Bearer {TOKEN}"


@pytest.fixture
def served(tmp_path: Path, hub: HubServer, arc: ArchiveCli) -> Path:
    folder = write_model(tmp_path / "served", tiny_tensors(seed=9), extra_files={"config.json": b"{}\n"})
    hub.add("org/tiny", folder)
    arc.env["HF_TOKEN"] = TOKEN
    return folder


@pytest.fixture
def other(served: Path) -> Iterator[HubServer]:
    """A second Hub imitation serving the same repo, on another port."""
    server = HubServer().start()
    server.add("org/tiny", served)
    yield server
    server.stop()


def _auth(server: HubServer) -> list[str | None]:
    return [h.get("authorization") for h in server.headers]


def test_the_token_is_sent_to_a_loopback_endpoint(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    arc("push", "hf://org/tiny", "org/tiny:v1")
    assert hub.requests and _auth(hub) == [BEARER] * len(hub.requests)


def test_a_redirect_to_another_origin_does_not_carry_the_token(
    arc: ArchiveCli, hub: HubServer, served: Path, other: HubServer
) -> None:
    commit = hub.commit("org/tiny", "main")
    hub.redirect_file = lambda path: f"{other.url}/org/tiny/resolve/{commit}/{path}"
    arc("push", "hf://org/tiny", "org/tiny:v1")
    assert [r for r in other.requests if "/resolve/" in r], "no file was fetched from the redirect's target"
    assert _auth(other) == [None] * len(other.requests)
    assert _auth(hub) == [BEARER] * len(hub.requests)


def test_a_plain_http_endpoint_on_another_host_gets_no_token(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    """http://hub.invalid, reached through a proxy (the imitation, which answers absolute-form requests as a
    forward proxy does): whoever is on the path would read the token, so it is not sent, and the user is told."""
    arc.env.update(
        {
            "HF_ENDPOINT": "http://hub.invalid",
            "HTTP_PROXY": hub.url,
            "http_proxy": hub.url,
            "NO_PROXY": "",
            "no_proxy": "",
        }
    )
    result = arc("push", "hf://org/tiny", "org/tiny:v1")
    assert [r for r in hub.requests if "/resolve/" in r], "the import did not go through the proxy"
    assert _auth(hub) == [None] * len(hub.requests)
    assert "token is not sent" in result.stderr


def test_a_loopback_endpoint_is_not_reached_through_a_proxy(
    arc: ArchiveCli, hub: HubServer, served: Path, other: HubServer
) -> None:
    """A proxy from the environment would get the loopback endpoint's requests, token and all, in the clear."""
    arc.env.update({"HTTP_PROXY": other.url, "http_proxy": other.url, "NO_PROXY": "", "no_proxy": ""})
    arc("push", "hf://org/tiny", "org/tiny:v1")
    assert other.requests == []
    assert hub.requests and _auth(hub) == [BEARER] * len(hub.requests)


def test_the_endpoint_is_asked_for_the_listing_and_the_files_only(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    """huggingface_hub's headers fetched ``/api/agent-harnesses`` from the endpoint (to match the user's environment
    variables against its answer). A fresh process: huggingface_hub fetches that once per process and HF_HOME."""
    import os
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "modelarc.cli.main", "push", "hf://org/tiny", "org/tiny:v1", "--no-progress"],
        env={**os.environ, **arc.env},
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert hub.requests and all(
        r.startswith(("/api/models/org/tiny/", "/org/tiny/resolve/")) for r in hub.requests
    ), hub.requests
