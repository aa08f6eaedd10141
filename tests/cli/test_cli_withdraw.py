"""Tombstones: weights go, record and provenance stay; pull refuses with the reason; the audit log has it all."""

from pathlib import Path

from modelfactory import tiny_tensors, write_model


def _object_count(home: Path) -> int:
    return sum(1 for p in (home / "store" / "objects").rglob("*") if p.is_file())


def test_rm_frees_weights_but_keeps_provenance(arc, tmp_path: Path) -> None:
    snap = arc.json(
        "push", write_model(tmp_path / "m"), "acme/tiny:v1", "--cutoff", "2022-05", "--license", "mit"
    )["snapshot"]
    before = _object_count(arc.home)
    result = arc.json("rm", "acme/tiny:v1", "--reason", "license revoked by the author")
    assert result["objects_deleted"] > 0 and result["bytes_freed"] > 0
    assert _object_count(arc.home) == before - result["objects_deleted"]
    shown = arc.json("show", "acme/tiny:v1")
    assert shown["snapshot"] == snap
    assert shown["withdrawn"]["reason"] == "license revoked by the author"
    assert shown["cutoff"] == "2022-05" and shown["license"] == "mit"
    assert {f["path"] for f in shown["files"]} == {"config.json", "model.safetensors", "tokenizer.json"}
    assert "WITHDRAWN" in arc("show", "acme/tiny:v1").stdout
    err = arc.fail("pull", "acme/tiny:v1", tmp_path / "out").stderr
    assert "withdrawn" in err and "license revoked by the author" in err
    assert not (tmp_path / "out").exists()
    assert (
        arc.json("verify", "acme/tiny:v1")["withdrawn"] is True
    )  # manifest, signature and kept files still verify
    assert arc.json("fsck")["ok"]


def test_rm_keeps_objects_shared_with_other_snapshots(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    arc("push", src, "acme/a:v1")
    arc("push", src, "acme/b:v1")
    result = arc.json("rm", "acme/a:v1", "--reason", "duplicate upload")
    assert result["objects_deleted"] == 0
    arc("pull", "acme/b:v1", tmp_path / "out")
    arc("verify", "--all")


def test_rm_needs_a_reason_and_a_live_snapshot(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=3)), "acme/tiny:v1")
    assert "reason" in arc.fail("rm", "acme/tiny:v1", "--reason", "  ").stderr
    arc("rm", "acme/tiny:v1", "--reason", "bad weights")
    assert "already withdrawn" in arc.fail("rm", "acme/tiny:v1", "--reason", "again").stderr
    assert "no model" in arc.fail("rm", "acme/none:v1", "--reason", "x").stderr


def test_audit_log_records_push_tag_and_tombstone(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    arc("tag", "acme/tiny:v1", "stable")
    arc("rm", "acme/tiny:v1", "--reason", "withdrawn for the test")
    events = arc.json("audit")
    actions = [e["action"] for e in events]
    assert actions[:3] == ["tombstone", "tag", "push"]
    assert all(e["actor"] == "tester" for e in events)
    assert events[0]["details"]["reason"] == "withdrawn for the test"
    assert [e["action"] for e in arc.json("audit", "--action", "push")] == ["push"]
    assert "invalid date" in arc.fail("audit", "--since", "yesterday").stderr
