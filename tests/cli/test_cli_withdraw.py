"""Tombstones: weights go, record and provenance stay; pull refuses with the reason; the audit log has it all."""

import hashlib
import re
from pathlib import Path

from catalogkit import drop_catalog
from modelfactory import tiny_tensors, write_model

from modelarc.archive.repository import Archive


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
    assert "reason" in arc.fail("rm", "acme/tiny:v1").stderr
    arc("rm", "acme/tiny:v1", "--reason", "bad weights")
    err = arc.fail("rm", "acme/tiny:v1", "--reason", "again").stderr
    assert "already withdrawn" in err and "bad weights" in err, err
    assert "nothing of its weights is left" in err, err
    assert "no model" in arc.fail("rm", "acme/none:v1", "--reason", "x").stderr


def test_rm_again_finishes_a_withdrawal_whose_deletion_did_not_run(arc, tmp_path: Path, monkeypatch) -> None:
    """`rm` commits the withdrawal (catalog row and record) before it deletes; a kill between them, or a push
    holding the store then, leaves the freed weights on disk. README: running it again finishes the work. The
    state is made here by a push holding the store (rm defers the deletion, as after a kill: tombstoned, nothing
    deleted); /tmp/crash-probe/rm_tomb.py makes the same state with SIGKILL."""
    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=4)), "acme/tiny:v1")
    before = _object_count(arc.home)
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive, archive.lock(exclusive=False, purpose="push"):
        first = arc.json("rm", "acme/tiny:v1", "--reason", "bad weights")
    assert first["deferred_to_gc"] and first["objects_deleted"] == 0 and first["objects_released"] > 0
    assert _object_count(arc.home) == before  # withdrawn, but its weights still on disk

    again = arc("rm", "acme/tiny:v1")  # no reason needed: the withdrawal has one
    assert again.exit_code == 0, again.output
    assert "already withdrawn" in again.stdout and "finished that interrupted withdrawal" in again.stdout
    assert "bad weights" in again.stdout
    assert _object_count(arc.home) == before - first["objects_released"]
    shown = arc.json("show", "acme/tiny:v1")["withdrawn"]
    assert shown["reason"] == "bad weights"  # the withdrawal keeps its first reason and date
    assert [e["action"] for e in arc.json("audit", "--action", "tombstone")] == ["tombstone"]  # recorded once
    assert arc.json("gc")["objects_removed"] == 0  # nothing left for gc
    assert arc.json("fsck")["ok"]
    err = arc.fail("rm", "acme/tiny:v1", "--reason", "again").stderr  # done now: the old answer
    assert "already withdrawn" in err and "nothing of its weights is left" in err, err


def test_rm_again_keeps_weights_another_snapshot_uses(arc, tmp_path: Path, monkeypatch) -> None:
    """A re-run deletes only what no snapshot uses, like the first run."""
    src = write_model(tmp_path / "m", tiny_tensors(seed=5))
    arc("push", src, "acme/a:v1")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive, archive.lock(exclusive=False, purpose="push"):
        arc("rm", "acme/a:v1", "--reason", "duplicate")
    arc("push", src, "acme/b:v1")  # the same weights, now used by b
    assert "nothing of its weights is left" in arc.fail("rm", "acme/a:v1").stderr
    arc("pull", "acme/b:v1", tmp_path / "out")


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


# weights in formats an older suffix list missed, and public metadata that a withdrawal keeps (archive/weights.py)
OTHER_WEIGHTS = {
    "model.pkl": b"PICKLED WEIGHTS " * 64,
    "embeddings.npy": b"NUMPY WEIGHTS " * 64,
    "onnx/model.onnx_data": b"ONNX EXTERNAL DATA " * 64,
    "rust_model.ot": b"RUST-BERT WEIGHTS " * 64,
}
METADATA = {"tokenizer.model": b"SENTENCEPIECE MODEL " * 64, "LICENSE": b"the licence text\n" * 20}


def _stored(home: Path, content: bytes) -> Path:
    oid = hashlib.sha256(content).hexdigest()  # a small file is one chunk, stored under its sha256
    return home / "store" / "objects" / oid[:2] / oid


def test_rm_frees_weights_in_every_format_and_keeps_public_metadata(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m", extra_files={**OTHER_WEIGHTS, **METADATA}), "acme/w:v1")
    arc("rm", "acme/w:v1", "--reason", "takedown")
    assert [p for p, data in OTHER_WEIGHTS.items() if _stored(arc.home, data).exists()] == []
    assert all(_stored(arc.home, data).exists() for data in METADATA.values())
    assert arc.json("verify", "acme/w:v1")["withdrawn"] is True  # the kept files still verify
    assert arc.json("fsck")["ok"] and arc.json("gc")["objects_removed"] == 0


def test_rm_says_objects_are_shared_only_when_some_are(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=21)), "acme/a:v1")
    alone = arc("rm", "acme/a:v1", "--reason", "alone").stdout
    assert "other snapshots" not in alone and "shared" not in alone
    src = write_model(tmp_path / "b", tiny_tensors(seed=22))
    arc("push", src, "acme/b:v1")
    arc("push", src, "acme/c:v1")
    shared = arc("rm", "acme/b:v1", "--reason", "duplicate").stdout
    assert " 0 deleted " in shared and re.search(r"the other \d+ are used by other snapshots", shared)


def test_a_rebuild_replays_an_older_withdrawal_with_todays_weights(arc, tmp_path: Path, database_url: str) -> None:
    """A withdraw record written when fewer formats counted as weights left them in the store; replayed now, it
    releases them and gc frees them (docs/FORMAT.md "Weights and public metadata")."""
    arc("push", write_model(tmp_path / "m", extra_files={**OTHER_WEIGHTS, **METADATA}), "acme/w:v1")
    left = {p: _stored(arc.home, data).read_bytes() for p, data in OTHER_WEIGHTS.items()}
    arc("rm", "acme/w:v1", "--reason", "takedown")
    for p, data in OTHER_WEIGHTS.items():  # what the older rule left in the store
        _stored(arc.home, data).write_bytes(left[p])
    drop_catalog(database_url)
    assert arc.json("rebuild-catalog")["replayed"]["withdraw"] == 1
    assert arc.json("gc")["objects_removed"] == len(OTHER_WEIGHTS)
    assert not any(_stored(arc.home, data).exists() for data in OTHER_WEIGHTS.values())
    assert all(_stored(arc.home, data).exists() for data in METADATA.values())
    assert arc.json("verify", "acme/w:v1")["withdrawn"] is True


def test_gc_releases_what_an_older_withdrawal_left_referenced(arc, tmp_path: Path, monkeypatch) -> None:
    """A snapshot withdrawn when only a few suffixes counted as weights still references its pickles, NumPy arrays,
    ...: gc kept them for good. gc now releases them by today's definition, without a rebuild, and frees them."""
    from modelarc.archive import weights
    from modelarc.archive.provenance import withdrawal

    def older_rule(manifest):  # the suffix list withdrawals used before archive/weights.py
        older = (".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack", ".npz", ".safetensors")
        return {
            c.id
            for f in manifest.files
            if f.path.endswith(older)
            for p in f.parts
            if p.kind == "tensor" or f.kind not in weights.WEIGHT_KINDS
            for c in p.chunks
        }

    arc("push", write_model(tmp_path / "m", extra_files={**OTHER_WEIGHTS, **METADATA}), "acme/w:v1")
    with monkeypatch.context() as m:
        m.setattr(withdrawal, "weight_object_ids", older_rule)
        arc("rm", "acme/w:v1", "--reason", "takedown")
    assert all(_stored(arc.home, data).exists() for data in OTHER_WEIGHTS.values())  # what the older rule left
    dry = arc.json("gc", "--dry-run")  # changes nothing, and says what it would release first
    assert dry["objects_removed"] == 0 and dry["withdrawn_weights_released"] == len(OTHER_WEIGHTS)
    assert "would release 4 references of withdrawn snapshots" in arc("gc", "--dry-run").stdout
    assert arc.json("gc")["objects_removed"] == len(OTHER_WEIGHTS)
    assert not any(_stored(arc.home, data).exists() for data in OTHER_WEIGHTS.values())
    assert all(_stored(arc.home, data).exists() for data in METADATA.values())
    assert arc.json("verify", "acme/w:v1")["withdrawn"] is True
    assert arc.json("fsck")["ok"] and arc.json("gc")["objects_removed"] == 0
