"""An offer's (or a record's) architecture is used only when the snapshot has no config.json (docs/FORMAT.md
"Transfer"): a config.json that names no architecture, or does not parse, gives none, as at a local push, and never
lets the sender describe the weights as something else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostilekit import HostilePusher, RewritingProxy, rewriting_offer, serve_proxy
from modelfactory import write_model
from transferkit import Home, Server, make_home, trusted_by_server

from modelarc.archive.repository import Archive
from modelarc.archive.snapshot_figures import snapshot_figures

LIE = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_layers": 80, "hidden_size": 8192}
CONFIGS = {"no architecture fields": b'{"_name_or_path": "tiny"}', "unparseable": b"{not json"}


def _model(tmp_path: Path, config: bytes) -> Path:
    folder = write_model(tmp_path / "m")
    (folder / "config.json").write_bytes(config)
    return folder


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_a_received_push_takes_no_stated_architecture_beside_a_config_json(
    server: Server, tmp_path: Path, config: bytes
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", _model(tmp_path, config), "acme/m:v1")
    pusher = HostilePusher(Archive.open(alice.path), server.url, server.push_token)
    answer = pusher.commit_restated("acme/m:v1", lambda offer: offer.update(architecture=LIE))
    assert answer.status_code == 201, answer.text
    assert server.archive.show("acme/m:v1").architecture == {}
    assert alice.json("show", "acme/m:v1")["architecture"] == {}  # type: ignore[index]  # as the push derived


def _bob(tmp_path: Path, alice: Home) -> Home:
    bob = make_home(tmp_path, "bob")
    pem = tmp_path / "alice.pem"
    pem.write_text(alice("keys", "export").stdout)
    bob("keys", "import", pem, "--label", "alice")
    return bob


def test_a_pull_takes_no_stated_architecture_beside_a_config_json(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("push", _model(tmp_path, CONFIGS["no architecture fields"]), "acme/m:v1", "--remote", "origin")
    restate = rewriting_offer(lambda doc: doc.update(architecture=LIE))
    with serve_proxy(RewritingProxy(server.url, rewrite=restate)) as url:
        bob = _bob(tmp_path, alice)
        bob("remote", "add", "evil", url)
        bob("pull", "acme/m:v1", "--remote", "evil")
    assert bob.json("show", "acme/m:v1")["architecture"] == {}  # type: ignore[index]


def test_a_stated_architecture_is_kept_only_without_a_config_json(tmp_path: Path) -> None:
    """What a rebuild and a receiver share (archive/snapshot_figures.py): the record's or offer's architecture
    stands only for a snapshot without config.json (a GGUF-only model's, read from its header at push time)."""
    home = make_home(tmp_path, "alice")
    with_config = _model(tmp_path, CONFIGS["no architecture fields"])
    home("push", with_config, "acme/m:v1")
    (with_config / "config.json").unlink()
    home("push", with_config, "acme/m:v2")
    with home.archive() as a:
        for tag, expected in (("v1", {}), ("v2", LIE)):
            _ref, snap = a.resolve(f"acme/m:{tag}")
            assert snapshot_figures(a.store, a.manifest(snap), LIE).architecture == expected
