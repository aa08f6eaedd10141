"""An object whose stored header cannot be read as the object (a newer format version or codec id, or a flipped
version or codec byte) that no scrub has found is healed by a transfer that brings its bytes, on SQLite and
PostgreSQL: a remote push replaces the server's copy, a pull from a remote replaces the puller's own, each keeping
the unreadable one in quarantine/ and recording a ``heal`` (archive/heal.py), instead of failing with exit 17."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelfactory import big_model
from transferkit import Home, Server, files_of, make_home, trusted_by_server

from modelarc.registry import integrity as rows
from modelarc.registry import queries as q

UNREADABLE = pytest.mark.parametrize(("offset", "value"), [(4, 2), (5, 4)], ids=["version", "codec"])


def _objects(store: Path) -> list[Path]:
    return [p for p in (store / "objects").rglob("*") if p.is_file()]


def _as_newer(path: Path, offset: int, value: int) -> bytes:
    """The object at ``path`` as a later modelarc might write it: format version (offset 4) or codec id (5)."""
    blob = bytearray(path.read_bytes())
    blob[offset] = value
    path.write_bytes(bytes(blob))
    return bytes(blob)


def _alice(server: Server, tmp_path: Path) -> tuple[Home, Path]:
    """A home the server trusts, which has pushed acme/big:v1 to it: (the home, the model's folder)."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    src = big_model(tmp_path / "big", megabytes=12)
    alice("push", src, "acme/big:v1", "--remote", "origin")
    return alice, src


def _server_healed(server: Server, victim: Path, unreadable: bytes, refs: list[str]) -> None:
    store = server.archive.settings.store_path
    assert [p.read_bytes() for p in (store / "quarantine").glob(f"{victim.name}.*")] == [unreadable]
    assert victim.read_bytes() != unreadable
    for ref in refs:
        server.archive.verify(ref)  # raises unless every file rebuilds to its sha256
    report = server.archive.fsck(read_data=True)
    assert report.ok and not report.unsupported
    with server.archive.catalog.session() as s:
        assert rows.objects_found_bad(s, rows.REPLACEABLE) == {}
        heal = q.audit_events(s, action="heal")
    assert len(heal) == 1 and heal[0].details["objects"] == [victim.name]


@UNREADABLE
def test_a_remote_push_of_the_same_bytes_replaces_a_weight_the_server_cannot_read(
    server: Server, tmp_path: Path, offset: int, value: int
) -> None:
    """No scrub ran on the server: it finds the unreadable header when it checks which objects it has, asks for
    the bytes, and the upload puts a copy it verifies in the unreadable one's place."""
    alice, src = _alice(server, tmp_path)
    victim = max(_objects(server.archive.settings.store_path), key=lambda p: p.stat().st_size)
    unreadable = _as_newer(victim, offset, value)
    pushed = alice.json("push", src, "acme/copy:v1", "--remote", "origin")
    assert pushed["new_snapshot"] and pushed["objects_sent"] >= 1
    _server_healed(server, victim, unreadable, ["acme/big:v1", "acme/copy:v1"])


@UNREADABLE
def test_a_remote_re_push_of_a_snapshot_the_server_holds_replaces_its_unreadable_manifest(
    server: Server, tmp_path: Path, offset: int, value: int
) -> None:
    """The snapshot is already recorded there (the commit only moves a tag) and the copy it cannot read is the
    manifest, which the server reads before any weight moves."""
    alice, _src = _alice(server, tmp_path)
    snapshot = server.archive.resolve("acme/big:v1")[1].digest
    victim = next(p for p in _objects(server.archive.settings.store_path) if p.name == snapshot.split(":")[1])
    unreadable = _as_newer(victim, offset, value)
    alice("tag", "acme/big:v1", "stable")
    pushed = alice.json("push", "acme/big:stable", "--remote", "origin")
    # (sent once for /v1/objects/missing, and again for the check: until the commit the catalog calls it damaged)
    assert pushed["new_snapshot"] is False and pushed["objects_sent"] >= 1
    _server_healed(server, victim, unreadable, ["acme/big:v1", "acme/big:stable"])


@UNREADABLE
@pytest.mark.parametrize("into_folder", [False, True], ids=["archive", "folder"])
def test_a_pull_from_a_remote_replaces_a_local_copy_this_archive_cannot_read(
    server: Server, tmp_path: Path, offset: int, value: int, into_folder: bool
) -> None:
    """The puller holds the snapshot already, and one of its objects has a header it cannot read: the pull fetches
    that object from the remote as if it were missing, and its verified bytes replace the local copy."""
    alice, src = _alice(server, tmp_path)
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    with alice.archive() as a:
        (tmp_path / "alice.pem").write_bytes(a.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob("pull", "acme/big:v1", "--remote", "origin")
    victim = max(_objects(bob.path / "store"), key=lambda p: p.stat().st_size)
    unreadable = _as_newer(victim, offset, value)
    out = [tmp_path / "out"] if into_folder else []
    pulled = bob.json("pull", "acme/big:v1", *out, "--remote", "origin")
    assert pulled["new_snapshot"] is False and pulled["objects_sent"] == 1
    if into_folder:
        assert files_of(tmp_path / "out") == files_of(src)
    quarantine = bob.path / "store" / "quarantine"
    assert [p.read_bytes() for p in quarantine.glob(f"{victim.name}.*")] == [unreadable]
    assert victim.read_bytes() != unreadable
    assert bob.json("verify", "acme/big:v1")["ok"] and bob.json("fsck", "--read-data")["ok"]
    heal = bob.json("audit", "--action", "heal")
    assert len(heal) == 1 and heal[0]["details"]["objects"] == [victim.name]
    assert bob.json("scrub")["ok"]
