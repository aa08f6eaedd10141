"""push hf://org/name[@revision]: the real huggingface_hub client against a Hub-compatible server on 127.0.0.1."""

import filecmp
from pathlib import Path

import pytest
from hubserver import HubServer
from modelfactory import tiny_tensors, write_model

CARD = "---\nlicense: apache-2.0\nbase_model: acme/base\nbase_model_relation: finetune\ndatasets:\n- the-pile\n---\n# tiny\n"


@pytest.fixture
def hub(tmp_path: Path, arc):
    server = HubServer().start()
    arc.env.update(
        {
            "HF_ENDPOINT": server.url,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
        }
    )
    yield server
    server.stop()


def test_import_by_url_records_provenance_and_is_byte_identical(arc, hub, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "base", tiny_tensors(seed=1)), "acme/base:v1")
    served = write_model(tmp_path / "served", tiny_tensors(seed=2), extra_files={"README.md": CARD.encode()})
    commit = hub.add("org/tiny", served)
    pushed = arc.json("push", "hf://org/tiny", "org/tiny:v1")
    arc("pull", "org/tiny:v1", tmp_path / "out")
    for p in served.rglob("*"):
        if p.is_file():
            assert filecmp.cmp(p, tmp_path / "out" / p.relative_to(served), shallow=False), p
    shown = arc.json("show", "org/tiny:v1")
    assert shown["license"] == "apache-2.0"
    assert commit in shown["source_url"] and hub.url in shown["source_url"]
    assert [(p["model"], p["relation"]) for p in shown["parents"]] == [("acme/base", "finetune")]
    [event] = arc.json("audit", "--action", "import")
    assert event["details"]["commit"] == commit and event["details"]["datasets"] == ["the-pile"]
    import hashlib

    assert (
        event["details"]["etags"]["model.safetensors"]
        == hashlib.sha256((served / "model.safetensors").read_bytes()).hexdigest()
    )
    assert pushed["snapshot"].startswith("sha256:")


def test_revision_pinning_and_offline_cache(arc, hub, tmp_path: Path) -> None:
    hub.add("org/tiny", write_model(tmp_path / "main", tiny_tensors(seed=3)))
    hub.add("org/tiny", write_model(tmp_path / "v2", tiny_tensors(seed=4)), revision="v2")
    main = arc.json("push", "hf://org/tiny", "org/tiny:main")["snapshot"]
    v2 = arc.json("push", "hf://org/tiny@v2", "org/tiny:v2")["snapshot"]
    assert main != v2
    hub.stop()  # the endpoint is gone; the warm cache must do
    arc.env["HF_HUB_OFFLINE"] = "1"
    again = arc.json("push", "hf://org/tiny@v2", "org/tiny:v2-offline")
    assert again["snapshot"] == v2 and again["stored_bytes_added"] == 0


def test_unknown_repo_or_revision_leaves_catalog_unchanged(arc, hub, tmp_path: Path) -> None:
    hub.add("org/tiny", write_model(tmp_path / "m"))
    before = arc.json("ls")
    assert "no repository org/nope" in arc.fail("push", "hf://org/nope", "org/nope:v1").stderr
    assert "no revision 'v9'" in arc.fail("push", "hf://org/tiny@v9", "org/tiny:v9").stderr
    assert "invalid Hub source" in arc.fail("push", "hf://just-a-name", "org/x:v1").stderr
    assert arc.json("ls") == before
