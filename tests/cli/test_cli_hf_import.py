"""push hf://org/name[@revision]: the real huggingface_hub client against a Hub-compatible server on 127.0.0.1."""

import filecmp
from pathlib import Path

import pytest
from liveserver import serve
from modelfactory import tiny_tensors, write_model

from modelarc.api.hub import commit_id
from modelarc.archive.repository import Archive

CARD = "---\nlicense: apache-2.0\nbase_model: acme/base\nbase_model_relation: finetune\ndatasets:\n- the-pile\n---\n# tiny\n"


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


def test_import_from_another_archives_hub_routes_is_byte_identical(arc, tmp_path: Path) -> None:
    """Archive to archive: B imports hf://ns/name@v1 from A's `modelarc serve` (the routes the real
    huggingface_hub is tested against), not from our imitation of the Hub."""
    with pytest.MonkeyPatch.context() as mp:  # A: a home and SQLite catalog of its own
        mp.setenv("MODELARC_DATABASE_URL", f"sqlite:///{tmp_path / 'a-home' / 'registry.db'}")
        source, _ = Archive.init(tmp_path / "a-home")
    card = b"---\nlicense: apache-2.0\n---\n# served by archive A\n"
    served = write_model(tmp_path / "served", tiny_tensors(seed=5),
                         extra_files={"README.md": card, "tokenizer/vocab.txt": b"a\nb\n"})
    v1 = source.push(served, "ns/name:v1").snapshot
    source.push(write_model(tmp_path / "newer", tiny_tensors(seed=6)), "ns/name:latest")  # @v1 must not get this
    with source, serve(source) as url:
        arc.env.update({"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "0",
                        "HF_HUB_DISABLE_XET": "1"})
        imported = arc.json("push", "hf://ns/name@v1", "dest/ref:v1")
        a_files = {f.path: f.sha256 for f in source.show("ns/name:v1").files}
    arc("verify", "dest/ref:v1")
    shown = arc.json("show", "dest/ref:v1")
    assert {f["path"]: f["sha256"] for f in shown["files"]} == a_files
    assert imported["snapshot"] == v1  # same files, same manifest: the snapshot id survives the trip
    assert shown["license"] == "apache-2.0" and commit_id(v1) in shown["source_url"] and url in shown["source_url"]
    arc("pull", "dest/ref:v1", tmp_path / "out")
    for p in served.rglob("*"):
        if p.is_file():
            assert filecmp.cmp(p, tmp_path / "out" / p.relative_to(served), shallow=False), p
