"""A catalog row that misdescribes its stored copy (archive/stored_encoding.py): stores repaired by older modelarc
versions hold deltas whose row records them stored on their own, or against another base. gc keeps bases by the
catalog, so it deleted the base such a delta decodes against while fsck said ok. `fsck --read-data` names each
mismatch, `repair --read-data` rewrites the delta on its own (verified first, nothing deleted), and gc afterwards
leaves every snapshot whole. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modelfactory import finetune, tiny_tensors, write_model
from recordkit import catalog_session
from sqlalchemy import delete, update

from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.registry.records import ObjectRecord
from modelarc.registry.store_models import SnapshotObject, StoredObject
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.store import object_key

TENSOR = "model.layers.0.mlp.weight"
WEIGHTS = [f"model.layers.{i}.{part}.weight" for i in (0, 1) for part in ("mlp", "attn")]


def _chunk(store: ObjectStore, arc: Any, ref: str, tensor: str = TENSOR) -> str:
    """The id of the first chunk of ``tensor`` in the snapshot ``ref`` names."""
    digest = arc.json("show", ref)["snapshot"].split(":")[1]
    manifest = json.loads(store.get(ObjectId(digest)))
    return next(
        str(part["chunks"][0]["id"])
        for f in manifest["files"]
        for part in f["parts"]
        if part.get("name") == tensor
    )


def _row(arc: Any, oid: str, monkeypatch: pytest.MonkeyPatch) -> ObjectRecord:
    with catalog_session(arc, monkeypatch) as s:
        return rows.stored_encodings(s, [oid])[oid]


def _restore_as_delta(store: ObjectStore, oid: str, base: str) -> None:
    """What an old repair left: the object's copy replaced by the store's own delta of it against ``base``, its
    catalog row untouched."""
    raw = bytes(store.get(ObjectId(oid)))
    store.delete(ObjectId(oid))
    assert store.put_delta(raw, ObjectId(base), dtype_hint="F32").delta_base == base


def _fsck_mismatch(arc: Any) -> dict[str, str]:
    result = arc("fsck", "--read-data", "--json", ok=False)
    assert result.exit_code == 5, result.output
    return dict(json.loads(result.stdout)["mismatched"])


def _gc_keeps_the_snapshot_whole(arc: Any, tmp_path: Path, ref: str, source: Path) -> None:
    assert arc.json("fsck", "--read-data")["ok"]
    arc("pull", ref, tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    arc("verify", ref)


def test_fsck_names_a_delta_the_catalog_records_on_its_own_and_repair_rewrites_it_so_gc_keeps_the_snapshot(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tiny_tensors()
    source = write_model(tmp_path / "base", base)
    arc("push", source, "acme/base:v1")
    arc("push", write_model(tmp_path / "other", finetune(base, WEIGHTS, scale=1e-5)), "acme/other:v1")  # no --parent
    primary = ObjectStore.open_local(arc.home / "store")
    chunk, other = _chunk(primary, arc, "acme/base:v1"), _chunk(primary, arc, "acme/other:v1")
    recorded = _row(arc, chunk, monkeypatch)
    assert recorded.delta_base is None
    _restore_as_delta(primary, chunk, other)  # acme/base now needs acme/other's chunk; no row says so

    assert arc.json("fsck")["ok"]  # (without --read-data it goes by the catalog's rows)
    mismatched = _fsck_mismatch(arc)
    assert set(mismatched) == {chunk}
    assert f"object {chunk} is stored as a delta against {other}" in mismatched[chunk]
    assert f"catalog records it on its own (codec {recorded.codec})" in mismatched[chunk]
    text = arc("fsck", "--read-data", ok=False).output
    assert f"MISMATCH object {chunk} is stored as a delta against {other}" in text

    report = arc.json("repair", "--read-data")
    assert report["ok"] and set(report["realigned"]) == {chunk} and "rewritten on its own" in report["realigned"][chunk]
    assert report["quarantined"][chunk].startswith(f"quarantine/{chunk}.")  # the delta copy is kept for a look
    assert primary.delta_base(ObjectId(chunk)) is None
    row = _row(arc, chunk, monkeypatch)
    assert (row.codec, row.delta_base, row.stored_size) == (
        primary.stat(ObjectId(chunk)).codec,
        None,
        primary.stored_size(ObjectId(chunk)),
    )
    assert arc.json("repair", "--read-data")["realigned"] == {}  # nothing left to do

    arc("rm", "acme/other:v1", "--reason", "retired")
    arc("gc")
    assert not primary.has(ObjectId(other))
    _gc_keeps_the_snapshot_whole(arc, tmp_path, "acme/base:v1", source)


def test_a_delta_whose_row_names_another_base_is_rewritten_on_its_own(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    child = write_model(tmp_path / "ft", finetune(base, WEIGHTS, scale=1e-5))
    arc("push", child, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    arc("push", write_model(tmp_path / "other", finetune(base, WEIGHTS, scale=2e-5, seed=7)), "acme/other:v1")
    primary = ObjectStore.open_local(arc.home / "store")
    delta, other = _chunk(primary, arc, "acme/ft:v1"), _chunk(primary, arc, "acme/other:v1")
    recorded_base = _row(arc, delta, monkeypatch).delta_base
    assert recorded_base == str(primary.delta_base(ObjectId(delta))) and recorded_base != other
    _restore_as_delta(primary, delta, other)  # the row still names the parent's chunk

    mismatched = _fsck_mismatch(arc)
    assert set(mismatched) == {delta}
    assert f"as a delta against {other}, but the catalog records it as a delta against {recorded_base}" in (
        mismatched[delta]
    )
    assert set(arc.json("repair", "--read-data")["realigned"]) == {delta}
    assert primary.delta_base(ObjectId(delta)) is None and _row(arc, delta, monkeypatch).delta_base is None

    arc("rm", "acme/other:v1", "--reason", "retired")
    arc("rm", "acme/base:v1", "--reason", "retired")
    arc("gc")
    assert not primary.has(ObjectId(other))
    assert not primary.has(ObjectId(recorded_base))  # acme/ft:v1 no longer keeps the base its row named
    _gc_keeps_the_snapshot_whole(arc, tmp_path, "acme/ft:v1", child)


def test_a_row_naming_a_base_for_a_copy_stored_on_its_own_is_corrected_without_rewriting_the_copy(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tiny_tensors()
    source = write_model(tmp_path / "base", base)
    arc("push", source, "acme/base:v1")
    primary = ObjectStore.open_local(arc.home / "store")
    chunk = _chunk(primary, arc, "acme/base:v1")
    other = _chunk(primary, arc, "acme/base:v1", "model.layers.1.mlp.weight")
    with catalog_session(arc, monkeypatch) as s:  # as an old heal left it: the delta rewritten, the row not
        s.execute(update(StoredObject).where(StoredObject.id == chunk).values(codec="delta", delta_base=other))
    stored = (arc.home / "store" / object_key(ObjectId(chunk))).read_bytes()

    assert set(_fsck_mismatch(arc)) == {chunk}
    report = arc.json("repair", "--read-data")
    assert "its row now describes the stored copy" in report["realigned"][chunk] and not report["quarantined"]
    assert (arc.home / "store" / object_key(ObjectId(chunk))).read_bytes() == stored
    row = _row(arc, chunk, monkeypatch)
    assert (row.codec, row.delta_base) == (primary.stat(ObjectId(chunk)).codec, None)
    _gc_keeps_the_snapshot_whole(arc, tmp_path, "acme/base:v1", source)


def test_a_healing_push_that_rewrites_a_delta_on_its_own_records_it_so(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rewrite paths (a push's heal here, repair in test_cli_repair_mirror_deltas.py) leave no stale base in
    the row; the snapshot's reference to the old base, which kept it from gc for good, goes at `repair --read-data`."""
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    child = write_model(tmp_path / "ft", finetune(base, WEIGHTS, scale=1e-5))
    arc("push", child, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    primary = ObjectStore.open_local(arc.home / "store")
    delta = _chunk(primary, arc, "acme/ft:v1")
    old_base = _row(arc, delta, monkeypatch).delta_base
    assert old_base is not None
    arc("rm", "acme/base:v1", "--reason", "retired")
    arc("gc")
    assert primary.has(ObjectId(old_base))  # acme/ft:v1 keeps it: its chunk decodes against it
    path = arc.home / "store" / object_key(ObjectId(delta))
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(damaged))
    arc("scrub", ok=False)

    arc("push", child, "acme/ft:v2")  # no --parent: the heal writes the chunk on its own
    assert primary.delta_base(ObjectId(delta)) is None
    row = _row(arc, delta, monkeypatch)
    assert (row.codec, row.delta_base, row.standalone_size) == (primary.stat(ObjectId(delta)).codec, None, None)
    assert arc.json("fsck", "--read-data")["ok"]
    arc("gc")
    assert primary.has(ObjectId(old_base))  # still referenced: a heal cannot tell that nothing else needs it
    released = arc.json("repair", "--read-data")  # which reads every header, and releases it
    assert released["ok"] and released["base_references_released"] == 1
    arc("gc")
    assert not primary.has(ObjectId(old_base))
    assert arc.json("fsck", "--read-data")["ok"]
    arc("pull", "acme/ft:v1", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (child / "model.safetensors").read_bytes()


def test_a_rewrite_that_cannot_write_leaves_the_delta_copy_for_the_next_repair_to_put_back(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store never overwrites a key: the delta copy is set aside before the copy on its own is written. On a
    disk that fills up in between, the object is missing and its only copy is in quarantine/ (no mirror here): the
    next repair takes it from there, verified, on its own."""
    from diskfull import FullDisk

    base = tiny_tensors()
    source = write_model(tmp_path / "base", base)
    arc("push", source, "acme/base:v1")
    arc("push", write_model(tmp_path / "other", finetune(base, WEIGHTS, scale=1e-5)), "acme/other:v1")
    primary = ObjectStore.open_local(arc.home / "store")
    chunk, other = _chunk(primary, arc, "acme/base:v1"), _chunk(primary, arc, "acme/other:v1")
    _restore_as_delta(primary, chunk, other)
    delta_size = primary.stored_size(ObjectId(chunk))

    with FullDisk(arc.home / "store", capacity=delta_size + 64):  # room to set the delta aside, no more
        result = arc("repair", "--read-data", "--json", ok=False)
    assert result.exit_code == 5
    report = json.loads(result.stdout)
    assert set(report["unrepaired"]) == {chunk} and "could not be rewritten on its own" in report["unrepaired_why"][chunk]
    assert [label.split("@")[0] for label in report["unrepaired"][chunk]] == ["acme/base"]  # what it leaves broken
    assert not primary.has(ObjectId(chunk)) and primary.quarantined()  # set aside, kept

    report = arc.json("repair")  # the disk has room again
    assert report["ok"] and report["repaired"][chunk].startswith(f"quarantine/{chunk}.")
    assert primary.delta_base(ObjectId(chunk)) is None and _row(arc, chunk, monkeypatch).delta_base is None
    arc("rm", "acme/other:v1", "--reason", "retired")
    arc("gc")
    assert not primary.has(ObjectId(other))
    _gc_keeps_the_snapshot_whole(arc, tmp_path, "acme/base:v1", source)


def test_repair_never_releases_a_base_reference_a_stored_delta_decodes_against(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acme/ft's chunk, once a delta against the parent's chunk, is stored on its own now, so acme/ft's reference
    to that base looks stale; but acme/ft2's chunk decodes against it, and acme/ft2's own reference was lost (as an
    older modelarc's rows could be). repair --read-data keeps acme/ft's reference: a stored header names the base."""
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    for name, seed in (("ft", 1), ("ft2", 2)):
        tuned = write_model(tmp_path / name, finetune(base, WEIGHTS, scale=1e-5, seed=seed))
        arc("push", tuned, f"acme/{name}:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    primary = ObjectStore.open_local(arc.home / "store")
    first, second = _chunk(primary, arc, "acme/ft:v1"), _chunk(primary, arc, "acme/ft2:v1")
    shared = str(primary.delta_base(ObjectId(first)))
    assert str(primary.delta_base(ObjectId(second))) == shared
    raw = bytes(primary.get(ObjectId(first)))
    primary.delete(ObjectId(first))
    assert primary.put(raw, dtype_hint="F32").delta_base is None  # on its own, its row still naming the base
    with catalog_session(arc, monkeypatch) as s:
        (ft2,) = [sn for sn in q.snapshots_using(s, [shared])[shared] if sn.model == "acme/ft2"]
        s.execute(
            delete(SnapshotObject).where(SnapshotObject.snapshot_id == ft2.row_id, SnapshotObject.object_id == shared)
        )

    assert set(arc.json("repair", "--read-data")["realigned"]) == {first}
    arc("rm", "acme/base:v1", "--reason", "retired")
    arc("gc")
    assert primary.has(ObjectId(shared))
    assert arc.json("fsck", "--read-data")["ok"]
    arc("pull", "acme/ft2:v1", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (tmp_path / "ft2/model.safetensors").read_bytes()


def test_a_repair_that_dies_before_recording_its_rows_releases_no_base_reference(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows a repair corrects and the base references it releases commit together: recorded apart, a repair
    killed in between left acme/ft's row naming the parent's chunk as its base while no snapshot kept that chunk,
    gc deleted it, and a push to a remote (which reads bases from the rows) failed on the missing object."""
    import modelarc.archive.repair as repair_module

    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    child = write_model(tmp_path / "ft", finetune(base, WEIGHTS, scale=1e-5))
    arc("push", child, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    primary = ObjectStore.open_local(arc.home / "store")
    delta = _chunk(primary, arc, "acme/ft:v1")
    parent_chunk = str(primary.delta_base(ObjectId(delta)))
    raw = bytes(primary.get(ObjectId(delta)))
    primary.delete(ObjectId(delta))
    assert primary.put(raw, dtype_hint="F32").delta_base is None  # on its own; its row still names the base
    arc("rm", "acme/base:v1", "--reason", "retired")

    def dies(*_args: object) -> None:
        raise KeyboardInterrupt  # (the process killed as it records the rows)

    with monkeypatch.context() as patched:
        patched.setattr(repair_module.rows, "record_replaced", dies)
        arc("repair", "--read-data", ok=False)
    arc("gc")
    if _row(arc, delta, monkeypatch).delta_base == parent_chunk:
        assert primary.has(ObjectId(parent_chunk))  # a row naming a base keeps it
    assert set(arc.json("repair", "--read-data")["realigned"]) == {delta}
    arc("gc")
    assert not primary.has(ObjectId(parent_chunk))  # released once the row says the copy is on its own
    _gc_keeps_the_snapshot_whole(arc, tmp_path, "acme/ft:v1", child)


def test_on_an_s3_store_fsck_names_the_mismatch_and_repair_rewrites_it(
    bare_arc: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on a bucket, where the rewrite is a conditional create after the delta copy is set aside."""
    arc = bare_arc
    arc("init", "--store", f"s3://{s3_bucket}/archive/main/")
    store = ObjectStore.open_location(f"s3://{s3_bucket}/archive/main")
    base = tiny_tensors()
    source = write_model(tmp_path / "base", base)
    arc("push", source, "acme/base:v1")
    arc("push", write_model(tmp_path / "other", finetune(base, WEIGHTS, scale=1e-5)), "acme/other:v1")
    chunk, other = _chunk(store, arc, "acme/base:v1"), _chunk(store, arc, "acme/other:v1")
    _restore_as_delta(store, chunk, other)

    assert set(_fsck_mismatch(arc)) == {chunk}
    assert set(arc.json("repair", "--read-data")["realigned"]) == {chunk}
    assert store.delta_base(ObjectId(chunk)) is None and _row(arc, chunk, monkeypatch).delta_base is None
    arc("rm", "acme/other:v1", "--reason", "retired")
    arc("gc")
    assert not store.has(ObjectId(other))
    _gc_keeps_the_snapshot_whole(arc, tmp_path, "acme/base:v1", source)
