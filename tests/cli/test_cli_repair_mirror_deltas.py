"""Repair takes a mirror's copy of an object as the object, never as a dependency: a copy the mirror stores as a delta
against a base of its own choosing is written into the primary on its own, and the catalog records what was written.
Only a delta against the base the primary's catalog already records for that object is put back as it is. On SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modelfactory import finetune, tiny_tensors, write_model

from modelarc.registry.records import ObjectRecord
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


def _near(raw: bytes, seed: int) -> bytes:
    """Float32 bytes a hair away from ``raw``: what a mirror may hold and store ``raw`` as a delta against."""
    values = np.frombuffer(raw, dtype=np.float32)
    noise = np.random.default_rng(seed).standard_normal(values.shape).astype(np.float32) * 1e-5
    return (values + noise).astype(np.float32).tobytes()


def _catalog_row(arc: Any, oid: str, monkeypatch: pytest.MonkeyPatch) -> ObjectRecord:
    from modelarc.archive.repository import Archive
    from modelarc.registry import integrity as rows

    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive, archive.catalog.session() as s:
        return rows.stored_encodings(s, [oid])[oid]


def test_a_mirror_delta_is_repaired_on_its_own_and_no_other_model_holds_it_up(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tiny_tensors()
    source = write_model(tmp_path / "base", base)
    arc("push", source, "acme/base:v1")
    arc("push", write_model(tmp_path / "other", finetune(base, WEIGHTS, scale=1e-5)), "acme/other:v1")  # no --parent
    primary = ObjectStore.open_local(arc.home / "store")
    lost, other = _chunk(primary, arc, "acme/base:v1"), _chunk(primary, arc, "acme/other:v1")
    arc("mirror", "add", "usb", tmp_path / "mirror")
    # the mirror (someone else's disk) holds the chunk as a delta against the unrelated model's chunk
    mirror = ObjectStore.open_local(tmp_path / "mirror")
    mirror.put(primary.get(ObjectId(other)))
    assert mirror.put_delta(primary.get(ObjectId(lost)), ObjectId(other), dtype_hint="F32").delta_base == other
    (arc.home / "store" / object_key(ObjectId(lost))).unlink()

    assert arc.json("repair")["repaired"] == {lost: "usb"}
    assert primary.delta_base(ObjectId(lost)) is None  # on its own: it needs nothing of acme/other
    row = _catalog_row(arc, lost, monkeypatch)
    assert row.delta_base is None and row.stored_size == primary.stored_size(ObjectId(lost))
    arc("rm", "acme/other:v1", "--reason", "retired")
    arc("gc")
    assert not primary.has(ObjectId(other))
    assert arc.json("fsck", "--read-data")["ok"]
    arc("pull", "acme/base:v1", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()


def test_repair_mends_from_a_mirror_whose_delta_base_the_primary_never_held(arc: Any, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "base", tiny_tensors()), "acme/base:v1")
    primary = ObjectStore.open_local(arc.home / "store")
    lost = _chunk(primary, arc, "acme/base:v1")
    arc("mirror", "add", "m1", tmp_path / "m1")
    arc("mirror", "add", "m2", tmp_path / "m2")
    arc("mirror", "sync", "m2")  # m2: an intact copy of everything
    m1 = ObjectStore.open_local(tmp_path / "m1")  # m1: the chunk as a delta against an object only m1 holds
    alien = m1.put(_near(bytes(primary.get(ObjectId(lost))), seed=3), dtype_hint="F32").id
    assert m1.put_delta(primary.get(ObjectId(lost)), alien, dtype_hint="F32").delta_base == alien
    (arc.home / "store" / object_key(ObjectId(lost))).unlink()

    repaired = arc.json("repair")
    assert repaired["ok"] and repaired["repaired"] == {lost: "m1"}
    assert primary.delta_base(ObjectId(lost)) is None and not primary.has(alien)
    assert arc.json("repair")["ok"]
    assert arc.json("fsck", "--read-data")["ok"]


def test_a_delta_the_catalog_records_is_put_back_as_a_delta_or_on_its_own_when_its_base_cannot_be(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "base", base), "acme/base:v1")
    child = write_model(tmp_path / "ft", finetune(base, WEIGHTS, scale=1e-5))
    assert arc.json("push", child, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")[
        "delta_objects"
    ]
    primary = ObjectStore.open_local(arc.home / "store")
    delta = _chunk(primary, arc, "acme/ft:v1")
    base_id = str(primary.delta_base(ObjectId(delta)))
    assert base_id == _chunk(primary, arc, "acme/base:v1")
    arc("mirror", "add", "usb", tmp_path / "mirror")
    arc("mirror", "sync")
    stored = arc.home / "store" / object_key(ObjectId(delta))
    recorded = _catalog_row(arc, delta, monkeypatch)

    stored.unlink()  # its base is intact: the mirror's delta is put back as it is, as the catalog records it
    assert arc.json("repair")["repaired"] == {delta: "usb"}
    assert primary.delta_base(ObjectId(delta)) == base_id and _catalog_row(arc, delta, monkeypatch) == recorded

    stored.unlink()  # ... and with its base unwritable (a non-empty folder under its key), it is put back on its own
    base_path = arc.home / "store" / object_key(ObjectId(base_id))
    base_path.unlink()
    (base_path / "x").mkdir(parents=True)
    result = arc("repair", "--json", ok=False)
    assert result.exit_code == 5
    report = json.loads(result.stdout)
    assert report["repaired"] == {delta: "usb"} and set(report["unrepaired"]) == {base_id}
    assert delta not in report["quarantined"]  # the mirror's delta it first wrote was good: nothing to keep aside
    assert primary.delta_base(ObjectId(delta)) is None
    row = _catalog_row(arc, delta, monkeypatch)
    assert row.delta_base is None and row.stored_size == stored.stat().st_size
    arc("pull", "acme/ft:v1", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (child / "model.safetensors").read_bytes()
