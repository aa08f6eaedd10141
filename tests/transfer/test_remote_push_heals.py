"""A served archive whose scrub found an object corrupt or missing heals it when a push brings its bytes: the
server names the damaged object as one to send, the upload replaces the damaged copy (set aside in quarantine/),
and the commit records it healed; the server's catalog runs on SQLite and PostgreSQL (archive/heal.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelfactory import big_model
from transferkit import Server, files_of, make_home, trusted_by_server

from modelarc.archive.scrub import scrub
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q


def _largest_object(server: Server) -> Path:
    store = server.archive.settings.store_path
    return max((p for p in (store / "objects").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_push_of_the_good_bytes_heals_what_the_servers_scrub_found_damaged(
    server: Server, tmp_path: Path, damage: str
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    src = big_model(tmp_path / "big", megabytes=12)
    alice("push", src, "acme/big:v1", "--remote", "origin")
    victim = _largest_object(server)
    damaged = bytearray(victim.read_bytes())
    if damage == "corrupt":
        damaged[-5] ^= 0xFF
        victim.write_bytes(bytes(damaged))
    else:
        victim.unlink()
    assert victim.name in getattr(scrub(server.archive), damage)

    # the same bytes under a new name: recorded whole, not broken from birth
    pushed = alice.json("push", src, "acme/copy:v1", "--remote", "origin")
    assert pushed["new_snapshot"]
    for ref in ("acme/big:v1", "acme/copy:v1"):
        server.archive.verify(ref)  # raises unless every file rebuilds to its sha256
    kept = list((server.archive.settings.store_path / "quarantine").glob(f"{victim.name}.*"))
    assert [p.read_bytes() for p in kept] == ([bytes(damaged)] if damage == "corrupt" else [])
    with server.archive.catalog.session() as s:
        assert rows.objects_found_bad(s) == {}
        heal = q.audit_events(s, action="heal")
    assert len(heal) == 1 and heal[0].details["objects"] == [victim.name]

    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    with alice.archive() as a:
        (tmp_path / "alice.pem").write_bytes(a.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob("pull", "acme/big:v1", tmp_path / "out", "--remote", "origin")
    assert files_of(tmp_path / "out") == files_of(src)


def _damaged_object_and_a_delta_of_it(server: Server, tmp_path: Path) -> tuple[str, bytes, bytes, bytes]:
    """An object of a served snapshot that a scrub found corrupt, its good bytes, and a pusher's delta blob of it
    against a base the server holds too (as a fine-tune's push sends it)."""
    from modelarc.storage import ObjectId, ObjectStore

    src = big_model(tmp_path / "big", megabytes=12)
    server.archive.push(src, "srv/x:v1")
    victim = _largest_object(server)
    oid = ObjectId(victim.name)
    store = server.archive.store
    good = bytes(store.get(oid))
    base_raw = bytearray(good)
    base_raw[100:200] = bytes(100)  # same length, a few bytes apart: the delta is far smaller than the object
    base = store.put(bytes(base_raw)).id
    scratch = ObjectStore.open_local(tmp_path / "scratch")
    scratch.put(bytes(base_raw))
    assert scratch.put_delta(good, base, object_id=oid).delta_base == base
    blob = bytes(scratch.get_stored(oid))
    damaged = bytearray(victim.read_bytes())
    damaged[-5] ^= 0xFF
    victim.write_bytes(bytes(damaged))
    assert victim.name in scrub(server.archive).corrupt
    return victim.name, good, blob, bytes(damaged)


def test_a_heal_from_a_pushers_delta_is_stored_on_its_own(server: Server, tmp_path: Path) -> None:
    """Stored as the pusher's delta, the healed object would depend on a base only the pushed snapshot keeps: the
    snapshots that held it before name no such base, so withdrawing the new one and gc would break them."""
    from modelarc.archive.remote.receive import receive_object
    from modelarc.storage import ObjectId

    oid, good, blob, _damaged = _damaged_object_and_a_delta_of_it(server, tmp_path)
    receive_object(server.archive, ObjectId(oid), blob, holder="token:1:ci-push", stored=True)
    store = server.archive.store
    assert store.delta_base(ObjectId(oid)) is None
    assert bytes(store.get(ObjectId(oid))) == good


def test_uploads_of_an_object_already_healed_quarantine_nothing_more(server: Server, tmp_path: Path) -> None:
    """Until a commit records the heal the catalog still calls the object damaged: each further upload of it
    finds the good copy in place and neither sets it aside again nor rewrites it (a pusher that never commits could
    otherwise fill the disk with quarantined copies)."""
    from modelarc.archive.remote.receive import receive_object
    from modelarc.storage import ObjectId

    oid, _good, blob, damaged = _damaged_object_and_a_delta_of_it(server, tmp_path)
    for _ in range(3):
        receive_object(server.archive, ObjectId(oid), blob, holder="token:1:ci-push", stored=True)
    quarantine = server.archive.settings.store_path / "quarantine"
    # one copy set aside, and it is the damaged one (not a good copy put over it in the same second)
    assert [p.read_bytes() for p in quarantine.glob(f"{oid}.*")] == [damaged]
