"""Families: a fine-tune pushed with --parent is stored as deltas against its parent's tensors, restores byte for
byte, and its bases outlive the parent's withdrawal and gc; broken bases are found and named."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from finetunes import LIGHT, MEDIUM, write_family

from modelarc.storage import ObjectId
from modelarc.storage.store import object_key


def family(where: Path, dtype: str) -> tuple[Path, Path, Path]:
    """A tiny Llama base and two genuine fine-tunes of it (tests/finetunes.py), in ``dtype``."""
    made = write_family(where / f"family-{dtype}", strengths=(LIGHT, MEDIUM), dtypes=(dtype,))
    return made.folder("base", dtype), made.folder("light", dtype), made.folder("medium", dtype)


def _pushed_family(arc: Any, tmp_path: Path, dtype: str) -> tuple[Path, Path, Path]:
    """The family's folders, with acme/base:v1 pushed and acme/ft:v1 pushed on it with --parent (as deltas)."""
    base, ft1, ft2 = family(tmp_path, dtype)
    arc("push", base, "acme/base:v1")
    arc("push", ft1, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    return base, ft1, ft2


def _objects(arc: Any) -> set[str]:
    return {p.name for p in (arc.home / "store" / "objects").rglob("*") if p.is_file()}


@pytest.mark.parametrize("dtype", ["BF16", "F32"])
def test_a_fine_tune_is_stored_as_deltas_and_restores_byte_for_byte(
    arc: Any, tmp_path: Path, dtype: str
) -> None:
    base, ft1, ft2 = family(tmp_path, dtype)
    arc("push", base, "acme/base:v1")
    alone = arc.json("push", ft1, "acme/alone:v1", "--no-delta")
    delta = arc.json("push", ft1, "other/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    # the same bytes were already stored on their own: dedup wins, nothing is written again
    assert delta["stored_bytes_added"] == 0 and delta["delta_objects"] == 0

    d2 = arc.json("push", ft2, "acme/ft:v2", "--parent", "acme/base:v1", "--relation", "finetune")
    a2 = arc.json("push", ft2, "acme/ft2-alone:v1", "--no-delta")  # already stored: adds nothing
    assert a2["stored_bytes_added"] == 0
    assert d2["delta_objects"] >= 3 and d2["delta_base"].startswith("acme/base@sha256:")
    assert d2["delta_stored_bytes"] < 0.8 * d2["delta_standalone_bytes"]
    assert d2["stored_bytes_added"] < 0.8 * alone["stored_bytes_added"]
    arc("pull", "acme/ft:v2", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (ft2 / "model.safetensors").read_bytes()
    arc("verify", "acme/ft:v2")
    again = arc.json("push", ft2, "acme/ft:v3", "--parent", "acme/base:v1", "--relation", "finetune")
    assert again["stored_bytes_added"] == 0 and again["snapshot"] == d2["snapshot"]
    (evidence,) = arc.json("lineage", "acme/ft:v2", "--check")
    assert (
        evidence["delta_chunks"] == d2["delta_objects"] and evidence["tensor_chunks"] >= d2["delta_objects"]
    )
    assert evidence["delta_ratio"] < 0.8 and not evidence["no_evidence"]
    # a genuine fine-tune: every compared parameter is close to the base's (docs/PROVENANCE.md, the thresholds)
    assert evidence["verdict"] == "related" and evidence["supported_fraction"] == 1.0
    assert "stored against this parent" in arc("lineage", "acme/ft:v2", "--check").stdout
    stats = arc.json("stats")
    assert stats["deltas"]["objects"] == d2["delta_objects"]
    assert stats["deltas"]["saved_bytes"] == d2["delta_standalone_bytes"] - d2["delta_stored_bytes"]


def test_withdrawn_parent_keeps_the_weights_its_fine_tunes_need_until_they_go(
    arc: Any, tmp_path: Path
) -> None:
    base, ft1, _ft2 = _pushed_family(arc, tmp_path, "BF16")
    out = arc("rm", "acme/base:v1", "--reason", "superseded").stdout
    assert "kept: fine-tunes stored as deltas" in out
    arc.json("gc")
    arc("pull", "acme/ft:v1", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (ft1 / "model.safetensors").read_bytes()
    assert arc.json("fsck")["ok"]
    before = _objects(arc)
    gone = arc.json("rm", "acme/ft:v1", "--reason", "family retired")
    # the fine-tune's weights, then the parent weights nobody needs any more
    assert gone["objects_deleted"] >= gone["objects_released"] - 1 and len(_objects(arc)) < len(before)
    arc.json("gc")
    assert arc.json("fsck")["ok"]
    arc("verify", "--all")


def test_delta_base_and_renamed_tensors(arc: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from modelarc.storage import ObjectStore

    base, ft1, _ = family(tmp_path, "BF16")
    arc("push", base, "acme/base:v1")
    store = ObjectStore.open_local(arc.home / "store")

    def object_of(t: torch.Tensor) -> str:
        return hashlib.sha256(t.contiguous().view(torch.int16).numpy().tobytes()).hexdigest()

    parent_weight = object_of(load_file(base / "model.safetensors")["model.layers.0.mlp.down_proj.weight"])
    tensors = load_file(ft1 / "model.safetensors")
    tensors["model.layers.0.mlp.down.weight"] = tensors.pop("model.layers.0.mlp.down_proj.weight")
    for name, scale in (("plain", 1.0), ("mapped", 1.02)):
        folder = tmp_path / name
        folder.mkdir()
        proj = (tensors["model.layers.0.mlp.down.weight"].float() * scale).to(torch.bfloat16)
        save_file({**tensors, "model.layers.0.mlp.down.weight": proj}, folder / "model.safetensors")
        rename = (
            ["--delta-rename", "model.layers.0.mlp.down.weight=model.layers.0.mlp.down_proj.weight"]
            if name == "mapped"
            else []
        )
        pushed = arc.json("push", folder, f"acme/{name}:v1", "--delta-base", "acme/base:v1", *rename)
        assert pushed["delta_base"].startswith("acme/base@")
        expected = parent_weight if name == "mapped" else None  # unmapped, the renamed tensor has no base
        assert store.delta_base(object_of(proj)) == expected
    shown = arc.json("show", "acme/plain:v1")
    assert not shown.get("parents")  # a delta base is a storage choice, not a declared parent
    err = arc.fail("push", ft1, "acme/x:v1", "--delta-base", "acme/base:v1", "--delta-rename", "oops").stderr
    assert "NEW=OLD" in err
    twice = ("--delta-rename", "w=a", "--delta-rename", "w=b")  # the last one silently won
    err = arc.fail("push", ft1, "acme/x:v1", "--delta-base", "acme/base:v1", *twice).stderr
    assert "--delta-rename names 'w' twice, as 'a' and as 'b'" in err, err
    assert (
        "--no-delta"
        in arc.fail("push", ft1, "acme/x:v1", "--no-delta", "--delta-base", "acme/base:v1").stderr
    )
    assert "acme/none" in arc.fail("push", ft1, "acme/x:v1", "--delta-base", "acme/none:v1").stderr


def _damage(arc: Any, oid: str) -> None:
    path = arc.home / "store" / object_key(ObjectId(oid))
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(blob))


def test_a_corrupt_or_missing_base_is_named_by_pull_verify_and_fsck(arc: Any, tmp_path: Path) -> None:
    base, ft1, _ = _pushed_family(arc, tmp_path, "F32")
    from modelarc.storage import ObjectStore

    store = ObjectStore.open_local(arc.home / "store")
    deltas = {oid: store.delta_base(oid) for oid in store.iter_ids()}
    bases = {b for b in deltas.values() if b}
    assert bases
    victim = sorted(bases)[0]
    _damage(arc, victim)
    err = arc.fail("pull", "acme/ft:v1", tmp_path / "out").stderr
    assert victim in err and "delta against" in err
    assert not (tmp_path / "out/model.safetensors").exists()
    assert victim in arc.fail("verify", "acme/ft:v1").stderr
    fsck = arc("fsck", "--read-data", ok=False)
    assert fsck.exit_code != 0 and victim[:12] in fsck.stdout + fsck.stderr
    (arc.home / "store" / object_key(ObjectId(victim))).unlink()
    missing = arc("fsck", ok=False)
    assert missing.exit_code != 0 and victim[:12] in missing.stdout and "acme/ft" in missing.stdout


def test_fsck_finds_a_delta_chain_that_comes_back_on_itself_from_headers_alone(
    arc: Any, tmp_path: Path
) -> None:
    from modelarc.storage import ObjectStore
    from modelarc.storage.codecs.delta import DeltaCodec
    from modelarc.storage.objectformat import ObjectHeader

    base, ft1, _ = _pushed_family(arc, tmp_path, "BF16")
    assert arc.json("fsck")["ok"]
    store = ObjectStore.open_local(arc.home / "store")
    delta, parent = next((o, b) for o in store.iter_ids() if (b := store.delta_base(o)))
    # the parent's file rewritten as a delta against the delta: a cycle, which no writer makes
    raw = bytes(store.get(parent))
    encoded = DeltaCodec().encode_against(raw, raw, bytes.fromhex(delta), "BF16")
    path = arc.home / "store" / object_key(ObjectId(parent))
    path.chmod(0o644)
    path.write_bytes(ObjectHeader(encoded.codec_id, len(raw), encoded.params).pack() + encoded.payload)
    found = arc("fsck", ok=False)
    assert found.exit_code != 0 and f"CORRUPT  object {delta}" in found.stdout and "acme/ft" in found.stdout


def test_a_rebuilt_catalog_keeps_the_bases_a_withdrawn_parent_left(
    arc: Any, tmp_path: Path, database_url: str
) -> None:
    from catalogkit import drop_catalog

    base, ft1, _ = _pushed_family(arc, tmp_path, "BF16")
    arc("rm", "acme/base:v1", "--reason", "superseded")
    stats = arc.json("stats")["deltas"]
    drop_catalog(database_url)
    assert arc.json("rebuild-catalog")["ok"]
    assert arc.json("gc")["objects_removed"] == 0  # the withdrawn parent's weights the fine-tune needs stay
    arc("pull", "acme/ft:v1", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (ft1 / "model.safetensors").read_bytes()
    rebuilt = arc.json("stats")["deltas"]
    assert rebuilt["objects"] == stats["objects"] and rebuilt["stored_bytes"] == stats["stored_bytes"]
    assert arc.json("fsck")["ok"]


def test_a_long_line_of_fine_tunes_keeps_every_chain_within_the_limit(arc: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from modelarc.storage import ObjectStore
    from modelarc.storage.codecs.delta import MAX_DELTA_DEPTH

    base, _ft1, _ = family(tmp_path, "BF16")
    arc("push", base, "acme/m:g0")
    tensors = load_file(base / "model.safetensors")
    generator = torch.Generator().manual_seed(7)
    generations = MAX_DELTA_DEPTH + 3
    for g in range(1, generations + 1):  # each generation nudges every tensor of the one before
        tensors = {
            k: (v.float() + torch.randn(v.shape, generator=generator) * 0.002).to(torch.bfloat16)
            for k, v in tensors.items()
        }
        folder = tmp_path / f"g{g}"
        folder.mkdir()
        save_file(tensors, folder / "model.safetensors")
        pushed = arc.json(
            "push", folder, f"acme/m:g{g}", "--parent", f"acme/m:g{g - 1}", "--relation", "finetune"
        )
        assert pushed["delta_objects"] > 0  # past the limit too: against an older ancestor
    store = ObjectStore.open_local(arc.home / "store")
    depths = [store.delta_depth(oid) for oid in store.iter_ids()]
    assert max(depths) == MAX_DELTA_DEPTH
    arc("pull", f"acme/m:g{generations}", tmp_path / "out")
    assert (tmp_path / "out/model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    arc("verify", "--all")


def test_a_delta_whose_header_names_a_base_that_does_not_exist_is_corrupt_and_repaired(
    arc: Any, tmp_path: Path
) -> None:
    import json

    from modelarc.storage import ObjectStore

    _pushed_family(arc, tmp_path, "F32")
    arc("mirror", "add", "usb", tmp_path / "mirror")
    arc("mirror", "sync")
    store = ObjectStore.open_local(arc.home / "store")
    delta = next(o for o in sorted(store.iter_ids()) if store.delta_base(o))
    path = arc.home / "store" / object_key(delta)
    data = bytearray(path.read_bytes())
    data[16 + 3 + 5] ^= 1  # one bit of the base id in the codec parameters: that object does not exist
    path.write_bytes(bytes(data))

    for args in ((), ("--read-data",)):
        result = arc("fsck", "--json", *args, ok=False)
        assert result.exit_code == 5, args
        assert list(json.loads(result.stdout)["corrupt"]) == [delta], args
    arc("scrub", ok=False)
    repaired = arc.json("repair")
    assert repaired["ok"] and repaired["repaired"] == {delta: "usb"} and delta in repaired["quarantined"]
    assert arc.json("fsck", "--read-data")["ok"]


def test_a_delta_rename_naming_no_tensor_is_refused(arc: Any, tmp_path: Path) -> None:
    """A typo on either side of NEW=OLD used to be ignored: the tensor was stored on its own, with no word."""
    base, ft1, _ft2 = family(tmp_path, "BF16")
    arc("push", base, "acme/base:v1")
    good = "model.layers.0.mlp.down_proj.weight"
    no_old = arc.fail("push", ft1, "acme/x:v1", "--delta-base", "acme/base:v1", "--delta-rename", f"{good}={good}x").stderr
    assert "the base acme/base@" in no_old and f"has no tensor '{good}x'" in no_old, no_old
    no_new = arc.fail("push", ft1, "acme/x:v1", "--delta-base", "acme/base:v1", "--delta-rename", f"{good}x={good}").stderr
    assert f"the model being pushed has no tensor '{good}x'" in no_new, no_new
    assert "acme/x" not in arc("ls").stdout  # nothing recorded


def test_a_withdrawn_delta_base_is_said_to_be_no_base(arc: Any, tmp_path: Path) -> None:
    """The warning said the base's weights were gone, right after `rm` said some of them were kept."""
    base, ft1, _ft2 = family(tmp_path, "BF16")
    arc("push", base, "acme/base:v1")
    arc("rm", "acme/base:v1", "--reason", "superseded")
    result = arc("push", ft1, "acme/ft:v1", "--delta-base", "acme/base:v1", "--no-progress")
    assert "was withdrawn, so it is no delta base: every tensor is stored on its own" in result.stderr
    assert "weights are gone" not in result.output
    assert arc.json("stats")["deltas"]["objects"] == 0
