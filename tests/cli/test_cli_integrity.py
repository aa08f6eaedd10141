"""A flipped byte, a missing object, a killed push: each is caught, named, and never handed out."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from modelfactory import big_model, write_model
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from modelarc.archive.repository import Archive
from modelarc.archive.signing.bundles import FileDigest, sign_snapshot
from modelarc.archive.signing.keys import load_private_key
from modelarc.registry.models import Signature


def _objects(home: Path) -> list[Path]:
    return sorted(p for p in (home / "store" / "objects").rglob("*") if p.is_file())


def _flip_byte(path: Path, offset_from_end: int = 5) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


def _largest_object(home: Path) -> Path:
    return max(_objects(home), key=lambda p: p.stat().st_size)


def test_flipped_byte_in_any_object_is_caught(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    objects = _objects(arc.home)
    for victim in objects:  # every object: chunks, headers, manifest, signature
        original = victim.read_bytes()
        _flip_byte(victim, offset_from_end=min(5, len(original)))
        verify = arc("verify", "acme/tiny:v1", ok=False)
        assert verify.exit_code != 0, victim
        fsck = arc("fsck", "--read-data", ok=False)
        assert fsck.exit_code != 0 and victim.name in fsck.stdout, victim
        assert arc("pull", "acme/tiny:v1", tmp_path / f"out-{victim.name}", ok=False).exit_code != 0
        victim.write_bytes(original)
    arc("verify", "acme/tiny:v1")
    arc("fsck", "--read-data")


def test_pull_refuses_corrupt_object_and_leaves_no_partial_file(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    _flip_byte(_largest_object(arc.home))
    out = tmp_path / "out"
    result = arc.fail("pull", "acme/tiny:v1", out)
    assert "corrupt" in result.stderr
    assert not (out / "model.safetensors").exists()
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def test_fsck_names_missing_object_and_broken_snapshot(arc, tmp_path: Path) -> None:
    snap = arc.json("push", write_model(tmp_path / "m"), "acme/tiny:v1")["snapshot"]
    victim = _largest_object(arc.home)
    victim.unlink()
    result = arc("fsck", "--json", ok=False)
    assert result.exit_code != 0
    import json

    report = json.loads(result.stdout)
    assert victim.name in report["missing"]
    assert report["missing"][victim.name] == [f"acme/tiny@{snap}"]
    assert report["broken_snapshots"] == [f"acme/tiny@{snap}"]
    assert "missing" in arc.fail("verify", "acme/tiny:v1").stderr


def test_fsck_keeps_what_is_wrong_with_a_corrupt_object_apart_from_the_snapshots_needing_it(
    arc, tmp_path: Path
) -> None:
    snap = arc.json("push", write_model(tmp_path / "m"), "acme/tiny:v1")["snapshot"]
    from modelarc.storage import ObjectStore

    orphan = ObjectStore.open_local(arc.home / "store").put(b"an object nothing references" * 10).id
    needed = _largest_object(arc.home)
    for path in (needed, arc.home / "store" / "objects" / orphan[:2] / orphan):
        _flip_byte(path)
    result = arc("fsck", "--read-data", "--json", ok=False)
    report = json.loads(result.stdout)
    assert report["corrupt"] == {needed.name: [f"acme/tiny@{snap}"], orphan: []}
    assert set(report["corrupt_why"]) == {needed.name, orphan}
    assert all("corrupt" in why for why in report["corrupt_why"].values())
    text = arc("fsck", "--read-data", ok=False).stdout
    assert f"CORRUPT  object {orphan} needed by no snapshot (object {orphan} is corrupt" in text
    assert "needed by object" not in text


def test_gc_removes_only_unreferenced_objects(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    kept = set(_objects(arc.home))
    orphan_dir = arc.home / "store" / "objects" / "ab"
    from modelarc.storage import ObjectStore

    orphan = ObjectStore.open_local(arc.home / "store").put(b"an object nothing references" * 10)
    assert orphan.added
    report = arc.json("gc")
    assert report["objects_removed"] == 1
    assert set(_objects(arc.home)) == kept
    assert not (orphan_dir / orphan.id).exists()
    arc("verify", "acme/tiny:v1")


def test_gc_refuses_while_a_push_holds_the_store(arc, tmp_path: Path, monkeypatch) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive, archive.lock(exclusive=False, purpose="push"):
        err = arc.fail("gc").stderr
    assert "busy" in err and "push by" in err, err
    assert arc.json("gc")["objects_removed"] == 0  # released: gc runs again


@contextmanager
def _catalog_commits_held(database_url: str, proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Once ``proc`` (a push) holds the store lock, hold the catalog's write lock, so the push can write objects
    but cannot commit its snapshot until released.

    SQLite (WAL): ``BEGIN IMMEDIATE`` takes the single writer lock; readers go on. PostgreSQL: ``EXCLUSIVE`` table
    locks let reads through and block the push's inserts. Either is taken only after the push's lock row is
    committed (taking the store lock writes to the catalog too), long before its commit: it first ingests 64 MB.
    """
    url = make_url(database_url)
    engine = create_engine(database_url)
    try:
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            with engine.connect() as conn:
                if conn.execute(text("SELECT count(*) FROM store_locks")).scalar():
                    break
            time.sleep(0.005)
    finally:
        engine.dispose()
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(url.database), isolation_level=None, timeout=60)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn, conn.begin() as txn:
            conn.execute(text("LOCK TABLE objects, snapshots IN EXCLUSIVE MODE"))
            try:
                yield
            finally:
                txn.rollback()
    finally:
        engine.dispose()


def test_kill_9_during_push_leaves_catalog_consistent(arc, tmp_path: Path, database_url: str) -> None:
    src = big_model(tmp_path / "big", megabytes=64)
    env = {**os.environ, **arc.env}
    before = arc.json("ls")
    # With the catalog's commits held the push cannot finish, however fast the machine: killing it once it has
    # written some objects always lands between "objects durable" and "snapshot committed".
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelarc.cli.main", "push", str(src), "acme/big:v1", "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with _catalog_commits_held(database_url, proc):
        deadline = time.time() + 120
        while time.time() < deadline and len(_objects(arc.home)) < 6 and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, f"push ended before it was killed: {proc.communicate()[1].decode()[-2000:]}"
        assert len(_objects(arc.home)) >= 6, "push wrote no objects in 120 s"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert arc.json("ls") == before  # no snapshot row, no tag
    fsck = arc.json("fsck", "--read-data")
    assert fsck["ok"] and not fsck["missing"] and not fsck["corrupt"]
    written = set(_objects(arc.home))
    pushed = arc.json("push", src, "acme/big:v1")  # the next push succeeds and reuses what was durable
    assert written <= set(_objects(arc.home))
    assert pushed["stored_bytes_added"] < sum(p.stat().st_size for p in _objects(arc.home))
    arc("verify", "acme/big:v1")
    arc("gc")
    assert arc.json("fsck")["ok"]


def test_concurrent_writers_of_the_same_object_are_safe(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from modelarc.storage import ObjectStore

    store = ObjectStore.open_local(tmp_path / "store")
    payload = os.urandom(1 << 20)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: store.put(payload), range(16)))
    assert len({r.id for r in results}) == 1
    assert store.get(results[0].id) == payload
    assert not list((tmp_path / "store" / "tmp").iterdir())


@pytest.mark.parametrize("mode", ["truncate", "garbage-header"])
def test_damaged_object_file_is_reported_not_crashed(arc, tmp_path: Path, mode: str) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    victim = _largest_object(arc.home)
    if mode == "truncate":
        victim.write_bytes(victim.read_bytes()[:10])
    else:
        victim.write_bytes(b"XXXX" + victim.read_bytes()[4:])
    assert arc("fsck", "--read-data", ok=False).exit_code != 0
    assert "corrupt" in arc.fail("verify", "acme/tiny:v1").stderr


def _replace_signature(arc, monkeypatch, ref: str, files_of: Callable[[list[FileDigest]], list[FileDigest]]) -> None:
    """Re-sign ``ref`` with the archive's own (trusted) key over ``files_of(its files)`` and make that bundle the
    snapshot's only signature, in the store and in the catalog, as an attacker with the key file could."""
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive:
        _ref, snap = archive.resolve(ref)
        manifest = archive.manifest(snap)
        key = load_private_key(arc.home / "keys" / "signing-key.pem")
        files = files_of([FileDigest(f.path, f.sha256) for f in manifest.files])
        bundle = sign_snapshot(files, snap.digest, key, model_name=ref)
        put = archive.store.put(bundle)
        with archive.catalog.session() as s:
            [row] = s.query(Signature).filter_by(snapshot_id=snap.row_id).all()
            row.object_id, row.bundle = put.id, bundle.decode()


def test_a_trusted_signature_over_other_file_digests_is_refused(arc, tmp_path: Path, monkeypatch) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    # the replacement itself is sound: the same files re-signed still verify
    _replace_signature(arc, monkeypatch, "acme/tiny:v1", lambda files: files)
    arc("verify", "acme/tiny:v1")

    def one_digest_altered(files: list[FileDigest]) -> list[FileDigest]:
        other = hashlib.sha256(b"not the config that was archived").hexdigest()
        return [FileDigest(f.path, other) if f.path == "config.json" else f for f in files]

    _replace_signature(arc, monkeypatch, "acme/tiny:v1", one_digest_altered)
    # valid signature, trusted key, right snapshot id: only the signed file digests differ from the manifest
    assert "signed file digests do not match the manifest" in arc.fail("verify", "acme/tiny:v1").stderr
    every = arc("verify", "--all", "--json", ok=False)
    assert every.exit_code != 0
    [failed] = json.loads(every.stdout)["failed"]
    assert "signed file digests do not match" in failed["error"]
    out = tmp_path / "out"
    assert "signed file digests do not match" in arc.fail("pull", "acme/tiny:v1", out).stderr
    assert not out.exists() or not any(out.iterdir())  # a refused pull writes nothing
