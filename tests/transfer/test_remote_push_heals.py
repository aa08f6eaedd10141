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
