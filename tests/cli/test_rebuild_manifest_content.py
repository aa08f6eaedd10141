"""rebuild-catalog checks each snapshot's files against its manifest, as a received commit is checked: a manifest
written straight into the store whose file sha256 or tensor table disagrees with its chunks is refused, however
validly it is signed (a signature covers paths and sha256s, not the chunks a manifest names). On SQLite and
PostgreSQL.

Each lie is planted as someone who can write the store would: the manifest and a bundle signed by this archive's
own key as objects, and an intact snapshot record naming them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from modelfactory import tiny_tensors, write_model
from recordkit import plant, rebuild, records

from modelarc.archive.manifest import canonical_json
from modelarc.archive.repository import Archive
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.bundles import FileDigest, sign_snapshot
from modelarc.storage import ObjectId
from modelarc.storage.store import object_key

ArchiveCli = Any  # tests/cli/conftest.py


def _file(doc: dict[str, Any], suffix: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in doc["files"] if f["path"].endswith(suffix))
    return found


def _plant_snapshot(arc: ArchiveCli, monkeypatch: Any, model: str, doc: dict[str, Any]) -> str:
    """Put ``doc`` as a manifest and a bundle this archive's key signs over it into the store, and a snapshot
    record of ``model`` naming them (the genuine record's other fields); the snapshot id."""
    genuine = records(arc, "snapshot")[0]
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            manifest = archive.store.put(canonical_json(doc))
            key = keyring.load_private_key(archive.settings.keys_path / "signing-key.pem")
            digests = [FileDigest(f["path"], f["sha256"]) for f in doc["files"]]
            bundle = archive.store.put(sign_snapshot(digests, f"sha256:{manifest.id}", key, model_name=model))
    fingerprint = genuine["signatures"][0]["key"]
    plant(
        arc,
        genuine,
        model=model,
        snapshot=f"sha256:{manifest.id}",
        manifest=str(manifest.id),
        signatures=[{"key": fingerprint, "object": str(bundle.id)}],
    )
    return f"sha256:{manifest.id}"


def _honest(arc: ArchiveCli, monkeypatch: Any) -> dict[str, Any]:
    snapshot = records(arc, "snapshot")[0]["snapshot"]
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            doc: dict[str, Any] = json.loads(bytes(archive.store.get(ObjectId(snapshot.split(":")[1]))))
    return doc


def test_manifests_whose_files_do_not_rebuild_to_what_they_state_are_refused(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=2)), "acme/m:v1")
    honest = _honest(arc, monkeypatch)

    sha_lie = copy.deepcopy(honest)
    _file(sha_lie, "config.json")["sha256"] = "ab" * 32
    tensor_lie = copy.deepcopy(honest)
    part = next(p for p in _file(tensor_lie, ".safetensors")["parts"] if p.get("name"))
    part["name"] = part["name"] + ".renamed"
    lies = {
        "acme/shalie": _plant_snapshot(arc, monkeypatch, "acme/shalie", sha_lie),
        "acme/tensorlie": _plant_snapshot(arc, monkeypatch, "acme/tensorlie", tensor_lie),
    }
    report = rebuild(arc, database_url)
    refused = " ".join(report["refused"].values())
    assert f"acme/shalie@{lies['acme/shalie']}: config.json does not rebuild to its declared size and sha256" in refused
    assert f"acme/tensorlie@{lies['acme/tensorlie']}" in refused and "do not match the file's own header" in refused
    listed = {m["model"] for m in arc.json("ls")}
    assert "acme/m" in listed and not listed & set(lies)
    arc("verify", "acme/m:v1")


def test_a_snapshot_whose_chunk_is_corrupt_is_left_out_with_how_to_bring_it_back(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    """Its files cannot be checked, so it is not recorded: as for a missing object, repair from a mirror first."""
    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=3)), "acme/m:v1")
    doc = _honest(arc, monkeypatch)
    victim = next(p for p in _file(doc, ".safetensors")["parts"] if p["kind"] == "tensor")["chunks"][0]["id"]
    path = arc.home / "store" / object_key(ObjectId(victim))
    damaged = bytearray(path.read_bytes())
    damaged[-3] ^= 0xFF
    path.write_bytes(bytes(damaged))
    report = rebuild(arc, database_url)
    (reason,) = report["refused"].values()
    assert victim in reason and "repair --read-data" in reason
    assert [m["model"] for m in arc.json("ls")] == []


def test_verify_finds_a_tensor_table_its_header_does_not_list_in_a_catalog_rebuilt_unchecked(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    """A catalog rebuilt before the content check may hold such a manifest: its files' bytes and sha256 are right,
    so only the header against the tensor table tells, and `verify` (one snapshot or all) says so."""
    from modelarc.archive import rebuild as rebuild_module

    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=4)), "acme/m:v1")
    tensor_lie = _honest(arc, monkeypatch)
    part = next(p for p in _file(tensor_lie, ".safetensors")["parts"] if p.get("name"))
    part["name"] = part["name"] + ".renamed"
    _plant_snapshot(arc, monkeypatch, "acme/tensorlie", tensor_lie)
    monkeypatch.setattr(rebuild_module._Replay, "_check_content", lambda self, manifest, digest, label: None)
    assert rebuild(arc, database_url)["refused"] == {}
    failed = arc("verify", "acme/tensorlie:v1", ok=False)
    assert failed.exit_code == 5 and "Traceback" not in failed.output
    assert "model.safetensors: the manifest's tensor entries do not match the file's own header" in failed.output
    everything = arc("verify", "--all", ok=False)
    assert everything.exit_code != 0 and "acme/tensorlie" in everything.output
    arc("verify", "acme/m:v1")


def test_rehash_never_carries_a_tensor_table_the_files_header_does_not_list(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    """The push index names a snapshot whose manifest (replayed by a rebuild before the content check) lists the
    file's bytes under other tensor names: the bytes prove equal, but the table is the header's, as a read gives."""
    from modelarc.archive import push_index
    from modelarc.archive import rebuild as rebuild_module

    monkeypatch.setattr(push_index, "SETTLE_SECONDS", 0.0)
    src = write_model(tmp_path / "m", tiny_tensors(seed=6))
    honest_id = arc.json("push", src, "acme/m:v1")["snapshot"]
    honest = _honest(arc, monkeypatch)
    lie = copy.deepcopy(honest)
    parts = [p for p in _file(lie, ".safetensors")["parts"] if p.get("name")]
    first, second = next(
        (a, b) for i, a in enumerate(parts) for b in parts[i + 1 :] if (a["shape"], a["dtype"]) == (b["shape"], b["dtype"])
    )
    first["name"], second["name"] = second["name"], first["name"]
    lie_id = _plant_snapshot(arc, monkeypatch, "acme/tensorlie", lie)
    monkeypatch.setattr(rebuild_module._Replay, "_check_content", lambda self, manifest, digest, label: None)
    assert rebuild(arc, database_url)["refused"] == {}
    index_path = arc.home / push_index.INDEX_FILE
    doc = json.loads(index_path.read_text())
    for entry in doc["files"].values():
        entry["snapshot"] = lie_id.split(":")[1]
    index_path.write_text(json.dumps(doc))
    again = arc.json("push", src, "acme/m:v2", "--rehash")
    assert again["snapshot"] == honest_id
    arc("verify", "acme/m:v2")


def test_a_file_several_snapshots_share_is_rebuilt_once(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    from modelarc.archive import rebuild as rebuild_module

    src = write_model(tmp_path / "m", tiny_tensors(seed=7))
    arc("push", src, "acme/m:v1")
    (src / "config.json").write_text('{"model_type": "llama", "revision": 2}\n')
    arc("push", src, "acme/m:v2")
    arc("push", src, "acme/other:v1")  # the same snapshot under another model
    checked: list[str] = []
    real = rebuild_module.check_manifest_content

    def counting(store, manifest, label, **kw):  # type: ignore[no-untyped-def]
        checked.extend(f.path for f in manifest.files)
        return real(store, manifest, label, **kw)

    monkeypatch.setattr(rebuild_module, "check_manifest_content", counting)
    report = rebuild(arc, database_url)
    assert report["ok"] and report["replayed"]["snapshot"] == 3
    assert sorted(checked) == sorted(["config.json", "config.json", "model.safetensors", "tokenizer.json"])


def test_a_withdrawn_snapshot_is_checked_on_the_files_it_keeps(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: Any
) -> None:
    """A snapshot withdrawn by a record (its weights gone from the store) was replayed without any content check:
    the files it keeps (config, tokenizer, model card) could state a sha256 their chunks do not have. Now those are
    checked as any snapshot's files are."""
    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=5)), "acme/m:v1")
    sha_lie = copy.deepcopy(_honest(arc, monkeypatch))
    _file(sha_lie, "config.json")["sha256"] = "cd" * 32
    lie = _plant_snapshot(arc, monkeypatch, "acme/shalie", sha_lie)
    arc("rm", "acme/m:v1", "--reason", "licence")  # its weights leave the store: the lie's are the same ones
    genuine = records(arc, "withdraw")[0]
    plant(arc, genuine, model="acme/shalie", snapshot=lie, ref=f"acme/shalie@{lie}")
    report = rebuild(arc, database_url)
    refused = " ".join(report["refused"].values())
    assert f"acme/shalie@{lie}: config.json does not rebuild to its declared size and sha256" in refused, report
    assert arc.json("show", "acme/m:v1")["withdrawn"]["reason"] == "licence"  # the honest one is back, withdrawn
    assert arc("show", f"acme/shalie@{lie}", ok=False).exit_code != 0
