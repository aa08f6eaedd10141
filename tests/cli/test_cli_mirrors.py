"""Mirrors, scrub and repair from the CLI, on SQLite and PostgreSQL: damage in the primary store is found by scrub,
mended from a mirror (a folder, or a bucket on a real S3 API), and every snapshot verifies again."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from modelfactory import big_model, finetune, tiny_tensors, write_model
from s3server import raw_client

from modelarc.cli.main import cli as cli_main


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _two_models(arc: Any, tmp_path: Path) -> dict[str, Path]:
    base = tiny_tensors()
    sources = {
        "acme/m:v1": write_model(tmp_path / "v1", base),
        "acme/m:v2": write_model(tmp_path / "v2", finetune(base, ["model.layers.1.mlp.weight"], seed=5)),
        "acme/big:v1": big_model(tmp_path / "big", megabytes=20),
    }
    for ref, src in sources.items():
        arc("push", src, ref)
    return sources


def test_scrub_finds_damage_and_repair_mends_it_from_a_folder_mirror(arc: Any, tmp_path: Path) -> None:
    sources = _two_models(arc, tmp_path)
    store = arc.home / "store"
    arc("mirror", "add", "backup", tmp_path / "mirror")
    synced = arc.json("mirror", "sync")
    assert synced[0]["objects_copied"] == len(_objects(store)) and synced[0]["ok"]
    assert arc.json("mirror", "ls")[0]["objects_behind"] == 0
    assert arc.json("mirror", "sync")[0]["objects_copied"] == 0  # incremental: nothing left to copy

    victims = sorted(_objects(store), key=lambda p: p.stat().st_size)[-2:]
    _flip(victims[0])
    victims[1].unlink()
    scrub = arc("scrub", "--json", ok=False)
    assert scrub.exit_code == 5
    found = json.loads(scrub.stdout)
    assert set(found["corrupt"]) == {victims[0].name} and set(found["missing"]) == {victims[1].name}
    assert found["corrupt"][victims[0].name]  # names the snapshots the damage breaks
    assert arc.json("mirror", "ls")[0]["objects_behind"] == 0  # the mirror is whole

    repaired = arc.json("repair")
    assert repaired["ok"] and set(repaired["repaired"]) == {v.name for v in victims}
    kept = store / repaired["quarantined"][victims[0].name]
    assert kept.is_file()  # the damaged copy is set aside, not overwritten in place
    assert arc.json("verify", "--all")["ok"]
    assert arc.json("scrub")["ok"]
    for ref, src in sources.items():
        out = tmp_path / "out" / ref.replace("/", "_")
        arc("pull", ref, out)
        assert _tree(out) == _tree(src)


def test_repair_says_what_it_cannot_mend_and_touches_nothing(arc: Any, tmp_path: Path) -> None:
    snap = arc.json("push", write_model(tmp_path / "m"), "acme/tiny:v1")["snapshot"]
    arc("mirror", "add", "backup", tmp_path / "mirror")
    arc("mirror", "sync")
    victim = max(_objects(arc.home / "store"), key=lambda p: p.stat().st_size)
    _flip(victim)
    _flip(tmp_path / "mirror" / victim.relative_to(arc.home / "store"))
    damaged = victim.read_bytes()
    result = arc("repair", "--read-data", "--json", ok=False)
    assert result.exit_code == 5
    report = json.loads(result.stdout)
    assert report["unrepaired"] == {victim.name: [f"acme/tiny@{snap}"]}
    assert report["broken_snapshots"] == [f"acme/tiny@{snap}"]
    assert victim.read_bytes() == damaged and not report["quarantined"]
    text = arc("repair", ok=False).stdout
    assert "NOT REPAIRED" in text and victim.name in text


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_repair_without_read_data_mends_a_damaged_manifest_that_fsck_names(
    arc: Any, tmp_path: Path, damage: str
) -> None:
    """fsck reads every manifest without --read-data and names a damaged one (its snapshot broken, exit 5); repair
    without --read-data found nothing to do ("0 repaired", exit 0) and left the snapshot broken."""
    src = write_model(tmp_path / "m")
    snap = arc.json("push", src, "acme/tiny:v1")["snapshot"]
    arc("mirror", "add", "backup", tmp_path / "mirror")
    arc("mirror", "sync")
    manifest = next(p for p in _objects(arc.home / "store") if p.name == snap.removeprefix("sha256:"))
    if damage == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:30])
    else:
        _flip(manifest)
    assert arc("fsck", ok=False).exit_code == 5

    repaired = arc.json("repair")
    assert repaired["ok"] and set(repaired["repaired"]) == {manifest.name}, repaired
    assert arc.json("fsck")["ok"] and arc.json("verify", "--all")["ok"]
    arc("pull", "acme/tiny:v1", tmp_path / "out")
    assert _tree(tmp_path / "out") == _tree(src)


def test_sync_never_copies_a_damaged_object(arc: Any, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    victim = max(_objects(arc.home / "store"), key=lambda p: p.stat().st_size)
    _flip(victim)
    arc("mirror", "add", "backup", tmp_path / "mirror")
    result = arc("mirror", "sync", "--json", ok=False)
    assert result.exit_code == 5
    assert victim.name in json.loads(result.stdout)[0]["not_copied"]
    assert not (tmp_path / "mirror" / victim.relative_to(arc.home / "store")).exists()


def test_scrub_budgets_cover_the_store_oldest_first(arc: Any, tmp_path: Path) -> None:
    _two_models(arc, tmp_path)
    total = len(_objects(arc.home / "store"))
    first = arc.json("scrub", "--max-bytes", "1")
    assert first["stopped_by"] == "max-bytes" and first["objects_checked"] == 1
    seen = first["objects_ever_verified"]
    while seen < total:  # each bounded run starts where the oldest checks are, so coverage only grows
        run = arc.json("scrub", "--max-bytes", "1")
        assert run["objects_ever_verified"] == seen + 1
        seen = run["objects_ever_verified"]
    assert arc.json("scrub", "--max-seconds", "60")["stopped_by"] == "done"


def test_mirror_on_s3_repairs_the_primary(arc: Any, tmp_path: Path, s3_bucket: str, s3_endpoint: str) -> None:
    sources = _two_models(arc, tmp_path)
    arc("mirror", "add", "cloud", f"s3://{s3_bucket}/mirror")
    arc("mirror", "sync", "cloud")
    keys = raw_client(s3_endpoint).list_objects_v2(Bucket=s3_bucket, Prefix="mirror/objects/")["KeyCount"]
    assert keys == len(_objects(arc.home / "store"))
    for victim in _objects(arc.home / "store")[:3]:
        victim.unlink()
    assert arc.json("mirror", "ls")[0]["objects_behind"] == 0
    assert len(arc.json("repair")["repaired"]) == 3
    scrub = arc.json("scrub", "--mirrors")
    assert scrub["ok"] and scrub["mirrors"] == {"cloud": {"corrupt": [], "missing": []}}
    assert arc.json("mirror", "ls")[0]["verified_at"] is not None
    out = tmp_path / "out"
    arc("pull", "acme/big:v1", out)
    assert _tree(out) == _tree(sources["acme/big:v1"])


def test_mirror_errors_are_one_line(arc: Any, tmp_path: Path) -> None:
    assert "invalid mirror name" in arc.fail("mirror", "add", "../x", tmp_path / "m").stderr
    assert "own store" in arc.fail("mirror", "add", "self", arc.home / "store").stderr
    assert "no mirror named" in arc.fail("mirror", "sync", "nope").stderr
    arc("mirror", "add", "backup", tmp_path / "m")
    assert "already exists" in arc.fail("mirror", "add", "backup", tmp_path / "other").stderr
    assert "already the mirror" in arc.fail("mirror", "add", "again", tmp_path / "m").stderr
    arc("mirror", "rm", "backup")
    assert arc.json("mirror", "ls") == []


def _run_until(arc: Any, args: list[str], done: Any) -> None:
    """Start ``modelarc ARGS`` and kill -9 it as soon as ``done()`` says it is partway."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelarc.cli.main", *args],
        env={**os.environ, **arc.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not done():
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_9_during_sync_and_repair_then_rerun(arc: Any, tmp_path: Path) -> None:
    sources = {f"acme/big:v{i}": big_model(tmp_path / f"big{i}", megabytes=24, seed=i) for i in range(2)}
    for ref, src in sources.items():
        arc("push", src, ref)
    store, mirror = arc.home / "store", tmp_path / "mirror"
    arc("mirror", "add", "backup", mirror)
    total = len(_objects(store))
    _run_until(arc, ["mirror", "sync", "--no-progress"], lambda: len(_objects(mirror)) >= 2)
    assert len(_objects(mirror)) < total or True  # however far it got
    rerun = arc.json("mirror", "sync")[0]
    assert rerun["ok"] and rerun["objects_copied"] + rerun["already_there"] == total
    assert arc.json("mirror", "ls")[0]["objects_behind"] == 0

    chunks = sorted(_objects(store), key=lambda p: p.stat().st_size)[-8:]
    for victim in chunks:
        victim.unlink()
    _run_until(arc, ["repair"], lambda: sum(v.exists() for v in chunks) >= 2)
    again = arc.json("repair")
    assert again["ok"] and not again["unrepaired"]
    assert all(v.exists() for v in chunks)
    assert arc.json("verify", "--all")["ok"]
    assert arc.json("fsck", "--read-data")["ok"]


def test_push_with_mirror_keeps_the_mirror_in_step(arc: Any, tmp_path: Path) -> None:
    arc("mirror", "add", "backup", tmp_path / "mirror")
    unknown = arc.fail("push", write_model(tmp_path / "m0", tiny_tensors()), "acme/m:v0", "--mirror", "nope")
    assert "nope" in unknown.stderr and arc.json("ls") == []  # an unknown mirror fails before a byte is archived
    pushed = arc.json("push", write_model(tmp_path / "m1", tiny_tensors()), "acme/m:v1", "--mirror", "backup")
    assert pushed["snapshot"].startswith("sha256:") and pushed["mirrors"][0]["ok"]
    assert arc.json("mirror", "ls")[0]["objects_behind"] == 0
    assert sorted(p.name for p in _objects(tmp_path / "mirror")) == sorted(p.name for p in _objects(arc.home / "store"))
    again = arc.json("push", write_model(tmp_path / "m2", tiny_tensors()), "acme/m:v2", "--mirror", "all")
    assert again["mirrors"][0]["objects_copied"] == 0  # the same bytes: nothing new to copy


def test_repair_puts_back_lost_and_damaged_catalog_records_from_a_mirror(
    arc: Any, tmp_path: Path, database_url: str
) -> None:
    _two_models(arc, tmp_path)
    arc("mirror", "add", "backup", tmp_path / "mirror")
    arc("mirror", "sync")
    records = sorted((arc.home / "store" / "records").glob("*.json"))
    assert len(records) >= 3
    lost, damaged = records[0], records[1]
    lost.unlink()
    damaged.write_bytes(damaged.read_bytes().replace(b"acme", b"ACME", 1))
    plain = arc.json("repair")  # a listing finds the lost one; only --read-data re-hashes the rest
    assert list(plain["records_repaired"]) == [f"records/{lost.name}"]
    full = arc.json("repair", "--read-data")
    assert full["ok"] and full["records_repaired"] == {f"records/{damaged.name}": "backup"}
    assert lost.exists() and (arc.home / "store" / "quarantine" / "records").is_dir()
    before = arc.json("ls")
    from catalogkit import drop_catalog

    drop_catalog(database_url)
    assert arc.json("rebuild-catalog")["ok"]
    assert arc.json("ls") == before


def _store_as_deltas(home: Path, new_ref: str, base_ref: str) -> list[tuple[str, str]]:
    """Re-store the chunks ``new_ref`` does not share with ``base_ref`` as deltas against the base's chunk of the
    same tensor, recorded so in the catalog (what a family push writes): (delta id, base id) pairs."""
    from modelarc.archive.repository import Archive
    from modelarc.registry import integrity as rows
    from modelarc.registry.records import ObjectRecord
    from modelarc.storage import ObjectId

    def tensor_chunks(archive: Any, ref: str) -> dict[tuple[str, int], Any]:
        _ref, snap = archive.resolve(ref)
        return {
            (p.name, i): c
            for f in archive.manifest(snap).files
            for p in f.parts
            if p.kind == "tensor"
            for i, c in enumerate(p.chunks)
        }

    pairs = []
    with Archive.open(home) as archive:
        new, base = tensor_chunks(archive, new_ref), tensor_chunks(archive, base_ref)
        for key, chunk in new.items():
            other = base.get(key)
            if other is None or other.id == chunk.id or other.length != chunk.length:
                continue
            raw = archive.store.get(chunk.id)
            archive.store.delete(chunk.id)
            put = archive.store.put_delta(raw, ObjectId(other.id), dtype_hint="F32")
            assert put.codec == "delta" and archive.store.delta_base(chunk.id) == other.id
            with archive.catalog.session() as s:  # (the base is a chunk of base_ref's: kept by that snapshot)
                rows.record_replaced(s, [ObjectRecord(put.id, put.raw_size, put.stored_size, put.codec, other.id)])
            pairs.append((str(chunk.id), str(other.id)))
    return pairs


def test_delta_objects_are_mirrored_scrubbed_and_repaired_with_their_bases(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_tensors = tiny_tensors()
    layers = [f"model.layers.{i}.{part}.weight" for i in (0, 1) for part in ("mlp", "attn")]
    sources = {
        "acme/m:v1": write_model(tmp_path / "v1", base_tensors),
        "acme/m:v2": write_model(tmp_path / "v2", finetune(base_tensors, layers, seed=5)),
    }
    for ref, src in sources.items():
        arc("push", src, ref)
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    pairs = _store_as_deltas(arc.home, "acme/m:v2", "acme/m:v1")
    assert len(pairs) == 4
    # a delta whose id sorts before its base's is repaired first, and reads back only after its base: the
    # second pass of repair is what mends it (this model has such a pair; the test needs one)
    delta, base = next((d, b) for d, b in pairs if d < b)
    arc("mirror", "add", "backup", tmp_path / "mirror")
    assert arc.json("mirror", "sync")[0]["ok"]
    assert arc.json("scrub", "--mirrors")["ok"]  # the mirror's delta reads with the mirror's base
    store = arc.home / "store" / "objects"
    (store / base[:2] / base).unlink()  # the delta's own bytes are intact, but it cannot be read without it
    result = arc.runner.invoke(cli_main, ["scrub", "--json"], env=arc.env)
    assert result.exit_code == 5 and set(json.loads(result.stdout)["missing"]) == {delta, base}
    repaired = arc.json("repair")
    assert repaired["ok"] and set(repaired["repaired"]) == {delta, base}
    out = tmp_path / "out"
    arc("pull", "acme/m:v2", out)
    assert _tree(out) == _tree(sources["acme/m:v2"])
    # a delta whose base is gone (and no mirror has it) reads as missing, and repair says so
    arc("mirror", "rm", "backup")
    (store / base[:2] / base).unlink()
    result = arc.runner.invoke(cli_main, ["repair", "--read-data", "--json"], env=arc.env)
    assert result.exit_code == 5 and set(json.loads(result.stdout)["unrepaired"]) == {delta, base}


def test_repair_reports_an_object_it_cannot_replace_and_goes_on_with_the_others(
    arc: Any, tmp_path: Path
) -> None:
    store = arc.home / "store"
    for name in ("a", "b"):
        (tmp_path / f"{name}.bin").write_bytes(os.urandom(3000))
        arc("push", tmp_path / f"{name}.bin", f"acme/{name}:v1")
    arc("mirror", "add", "backup", tmp_path / "mirror")
    arc("mirror", "sync")
    first, second = sorted(_objects(store), key=lambda p: p.name)[:2]  # repair goes in id order
    _flip(first)
    second.unlink()
    (second / "x").mkdir(parents=True)  # a non-empty folder under the object's name: no command removes it
    arc("scrub", ok=False)

    result = arc("repair", "--json", ok=False)
    assert result.exit_code == 5
    report = json.loads(result.stdout)
    assert report["repaired"] == {first.name: "backup"}
    assert set(report["unrepaired"]) == {second.name} and "folder" in report["unrepaired_why"][second.name]
    assert f"NOT REPAIRED  {second.name}: a good copy from backup could not replace it" in arc("repair", ok=False).stdout
    assert arc.json("audit", "--action", "repair")[-1]["details"]["repaired"] == 1  # the first run is audited
    (second / "x").rmdir()
    second.rmdir()
    assert arc.json("repair")["repaired"] == {second.name: "backup"}
    assert arc.json("fsck", "--read-data")["ok"]


def test_mirror_sync_read_data_replaces_a_damaged_mirror_copy_that_scrub_found(arc: Any, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (tmp_path / "w.bin").write_bytes(os.urandom(5000))
    arc("push", tmp_path / "w.bin", "acme/m:v1")
    arc("mirror", "add", "usb", mirror)
    arc("mirror", "sync")
    victim = _objects(mirror)[0]
    _flip(victim)
    scrubbed = arc("scrub", "--mirrors", ok=False)
    assert scrubbed.exit_code == 5 and "run `modelarc mirror sync usb --read-data`" in scrubbed.stdout
    assert "modelarc repair" not in scrubbed.stdout  # repair writes only the primary: it would mend nothing
    assert arc.json("mirror", "sync")[0]["objects_copied"] == 0  # a plain sync lists, it does not re-read

    synced = arc.json("mirror", "sync", "--read-data")[0]
    assert synced["ok"] and list(synced["replaced"]) == [victim.name] and synced["objects_copied"] == 1
    assert (mirror / synced["replaced"][victim.name]).is_file()  # the damaged copy is kept in the mirror
    assert arc.json("scrub", "--mirrors")["ok"]


def test_a_killed_syncs_temp_files_in_a_folder_mirror_are_removed_by_the_next_sync(arc: Any, tmp_path: Path) -> None:
    """A `mirror sync` killed with SIGKILL leaves its half-written objects in the mirror's tmp/; nothing but the next
    sync ever looks there (gc cleans the primary's). An hour-old temp file is debris and goes; a fresh one may be
    another sync's, writing now, and stays."""
    _two_models(arc, tmp_path)
    arc("mirror", "add", "backup", tmp_path / "mirror")
    arc.json("mirror", "sync")
    tmp = tmp_path / "mirror" / "tmp"
    tmp.mkdir(exist_ok=True)
    old, fresh = tmp / ("ab" * 32 + ".dead.tmp"), tmp / ("cd" * 32 + ".live.tmp")
    old.write_bytes(b"x" * 4096)
    fresh.write_bytes(b"y" * 4096)
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    report = arc.json("mirror", "sync")[0]
    assert report["temp_removed"] == 1 and report["ok"], report
    assert not old.exists() and fresh.exists()
    assert "1 temp files of killed syncs removed" not in arc("mirror", "sync").output  # nothing old is left


def test_scrub_calls_a_mirror_behind_behind_not_damaged(arc: Any, tmp_path: Path) -> None:
    """A mirror never synced, or synced before the last push, lacks objects it was never sent: scrub --mirrors
    called each one a missing object, exit 5, advised a --read-data sync, and stamped the never-synced mirror
    verified. A copy lost from a synced mirror is still damage."""
    (tmp_path / "a.bin").write_bytes(os.urandom(5000))
    arc("push", tmp_path / "a.bin", "acme/a:v1")
    arc("mirror", "add", "usb", tmp_path / "mirror")
    fresh = arc("scrub", "--mirrors")
    assert "mirror usb: " in fresh.stdout and "(it was never synced), which is no damage" in fresh.stdout
    assert "MIRROR usb" not in fresh.stdout
    report = arc.json("scrub", "--mirrors")
    assert report["ok"] and report["mirrors_behind"]["usb"] >= 1 and report["mirrors"]["usb"]["missing"] == []
    assert report["mirrors_never_synced"] == ["usb"]
    assert arc.json("mirror", "ls")[0]["verified_at"] is None
    arc("mirror", "sync", "usb")
    (tmp_path / "b.bin").write_bytes(os.urandom(5000))
    arc("push", tmp_path / "b.bin", "acme/b:v1")
    later = arc.json("scrub", "--mirrors")
    assert later["ok"] and later["mirrors_behind"]["usb"] >= 1 and later["mirrors"]["usb"]["missing"] == []
    assert later["mirrors_never_synced"] == [] and "(archived since its last sync)" in arc("scrub", "--mirrors").stdout
    victim = next(p for p in _objects(tmp_path / "mirror"))
    victim.unlink()
    lost = arc("scrub", "--mirrors", ok=False)
    assert lost.exit_code == 5 and f"MIRROR usb: missing object {victim.name}" in lost.stdout
