"""A family crosses archives: bases travel before the deltas that need them, a receiver records the bases its own
store says its deltas need, and a delta never carries a parent's bytes to someone who may not read them."""

from __future__ import annotations

from pathlib import Path

import httpx
from finetunes import LIGHT, MEDIUM, write_family
from transferkit import Home, Server, files_of, make_home, trusted_by_server

from modelarc.archive.access import set_policy
from modelarc.archive.repository import Archive
from modelarc.storage import ObjectId
from modelarc.storage.codecs.delta import DeltaCodec
from modelarc.storage.objectformat import ObjectHeader, unpack_header


def family(where: Path, dtype: str) -> tuple[Path, Path, Path]:
    """A tiny Llama base and two genuine fine-tunes of it (tests/finetunes.py), in ``dtype``."""
    made = write_family(where / f"family-{dtype}", strengths=(LIGHT, MEDIUM), dtypes=(dtype,))
    return made.folder("base", dtype), made.folder("light", dtype), made.folder("medium", dtype)


def _alice_with_family(
    server: Server, tmp_path: Path, dtype: str, generations: int
) -> tuple[Home, tuple[Path, Path, Path]]:
    """alice's home, trusted by the server, with the family pushed locally (acme/base:v1, then acme/ft:v1 on it
    and, with two generations, acme/ft:v2 on that) and the server added as remote origin with a push token."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    folders = family(tmp_path, dtype)
    alice("push", folders[0], "acme/base:v1")
    for g in range(1, generations + 1):
        parent = "acme/base:v1" if g == 1 else f"acme/ft:v{g - 1}"
        alice("push", folders[g], f"acme/ft:v{g}", "--parent", parent, "--relation", "finetune")
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    return alice, folders


def _trusts_alice(home: Home, alice: Home, tmp_path: Path) -> None:
    pem = tmp_path / "alice.pem"
    with alice.archive() as a:
        pem.write_bytes(a.public_key_pem())
    home("keys", "import", pem, "--label", "alice")


def _deltas(archive: Archive) -> dict[str, str]:
    """Delta object -> its base, of every object in the store."""
    found = {oid: archive.store.delta_base(oid) for oid in archive.store.iter_ids()}
    return {oid: base for oid, base in found.items() if base}


def _weights(archive: Archive, ref: str) -> set[str]:
    _ref, snap = archive.resolve(ref)
    return {str(c.id) for f in archive.manifest(snap).files for p in f.tensors() for c in p.chunks}


def test_a_fine_tune_goes_to_a_fresh_remote_with_its_bases_and_comes_back_byte_identical(
    server: Server, tmp_path: Path
) -> None:
    alice, (_base, _ft1, ft2) = _alice_with_family(server, tmp_path, "BF16", generations=2)  # a chain of two
    bob = make_home(tmp_path, "bob")
    with alice.archive() as a:
        local = _deltas(a)
        assert local and any(base_id in local for base_id in local.values())  # some base is itself a delta
    # only the newest fine-tune: the remote has never seen its parents, whose objects must go first
    sent = alice.json("push", "acme/ft:v2", "--remote", "origin")
    assert sent["objects_sent"] > len(_weights(server.archive, "acme/ft:v2"))  # its bases went with it
    assert sent["objects_sent"] <= sent["objects"]  # and are counted among what the snapshot needs
    remote = _deltas(server.archive)
    assert set(local.items()) >= set(remote.items()) and remote  # stored as deltas there too, as sent
    with server.archive.catalog.session() as s:
        from modelarc.registry import queries as q

        _ref, snap = server.archive.resolve("acme/ft:v2")
        kept = q.base_object_ids(s, snap.row_id)
    assert kept and kept.isdisjoint(_weights(server.archive, "acme/ft:v2"))
    assert server.archive.fsck().ok
    # bob pulls it with a read token: the parents' weights are no snapshot's content there, so bob receives
    # the fine-tune's objects decoded and encoded on their own, and needs no base
    bob("remote", "add", "origin", server.url, "--token", server.read_token)
    _trusts_alice(bob, alice, tmp_path)
    bob("pull", "acme/ft:v2", tmp_path / "out", "--remote", "origin")
    assert files_of(tmp_path / "out") == files_of(ft2)
    with bob.archive() as b:
        assert not _deltas(b)
        assert b.fsck().ok
    # an admin pulls the whole family from a remote that has it all: deltas arrive as deltas, bases fetched first
    alice("push", "acme/base:v1", "--remote", "origin")
    alice("push", "acme/ft:v1", "--remote", "origin")
    carol = make_home(tmp_path, "carol")
    carol("remote", "add", "origin", server.url, "--token", server.read_token)
    _trusts_alice(carol, alice, tmp_path)
    carol("pull", "acme/ft:v2", tmp_path / "carol-out", "--remote", "origin")
    assert files_of(tmp_path / "carol-out") == files_of(ft2)
    with carol.archive() as c:
        assert _deltas(c)  # the bases are public content now: the deltas came as they are stored
        assert c.fsck().ok
    carol("verify", "--all")


def test_a_public_fine_tune_of_a_gated_parent_never_hands_out_the_parent(
    server: Server, tmp_path: Path
) -> None:
    alice, (_base, ft1, _ft2) = _alice_with_family(server, tmp_path, "F32", generations=1)
    alice("push", "acme/base:v1", "--remote", "origin")
    alice("push", "acme/ft:v1", "--remote", "origin")
    set_policy(server.archive, "acme/base", "gated", reason="the authors' licence")
    bases = set(_deltas(server.archive).values())
    assert bases
    auth = {"Authorization": f"Bearer {server.read_token}"}
    for oid in bases:
        assert httpx.get(f"{server.url}/v1/objects/{oid}", headers=auth).status_code == 403
    for oid in _deltas(server.archive):
        got = httpx.get(f"{server.url}/v1/objects/{oid}", headers=auth)
        assert got.status_code == 200
        # a cache that kept the delta itself while the parent was public (tag "<id>") must not have it confirmed
        assert got.headers["etag"] != f'"{oid}"'
        stale = httpx.get(f"{server.url}/v1/objects/{oid}", headers={**auth, "If-None-Match": f'"{oid}"'})
        assert stale.status_code == 200 and stale.content == got.content
        header = unpack_header(got.content)
        assert header.codec_id != 3  # decoded and encoded on its own: no base needed, none revealed
        assert bytes(server.archive.store.decode_stored(ObjectId(oid), got.content)) == bytes(
            server.archive.store.get(ObjectId(oid))
        )
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url, "--token", server.read_token)
    _trusts_alice(bob, alice, tmp_path)
    bob("pull", "acme/ft:v1", tmp_path / "out", "--remote", "origin")
    assert files_of(tmp_path / "out") == files_of(ft1)
    bob("pull", "acme/base:v1", tmp_path / "base-out", "--remote", "origin", ok=False)


def test_a_pusher_cannot_send_a_delta_against_weights_it_may_not_read(server: Server, tmp_path: Path) -> None:
    alice, _folders = _alice_with_family(server, tmp_path, "BF16", generations=0)
    alice("push", "acme/base:v1", "--remote", "origin")
    set_policy(server.archive, "acme/base", "gated", reason="the authors' licence")
    target = sorted(_weights(server.archive, "acme/base:v1"))[0]
    raw = bytes(server.archive.store.get(ObjectId(target)))
    # the attacker's object: its bytes are the gated chunk with one bit flipped, as a delta against the chunk.
    # Accepted, any reader of a snapshot naming it would get the gated bytes back, one bit away.
    forged = bytearray(raw)
    forged[0] ^= 1
    encoded = DeltaCodec().encode_against(bytes(forged), raw, bytes.fromhex(target), "BF16")
    blob = ObjectHeader(encoded.codec_id, len(forged), encoded.params).pack() + encoded.payload
    oid = ObjectId.of(bytes(forged))
    put = httpx.put(
        f"{server.url}/v1/objects/{oid}",
        content=blob,
        headers={"Authorization": f"Bearer {server.push_token}"},
    )
    assert put.status_code == 403 and "may not read" in put.text
    assert not server.archive.store.has(oid)


def test_with_parents_sends_the_ancestors_first_so_the_remote_records_the_lineage(
    server: Server, tmp_path: Path
) -> None:
    alice, (_base, _ft1, _ft2) = _alice_with_family(server, tmp_path, "BF16", generations=2)
    assert "--remote" in alice("push", "acme/ft:v2", "--with-parents", ok=False).stderr
    out = alice("push", "acme/ft:v2", "--remote", "origin", "--with-parents").stdout
    assert out.count("pushed ") == 3 and "not recorded" not in out
    from modelarc.archive.provenance.lineage import lineage_tree

    tree = str(lineage_tree(server.archive, "acme/ft:v2").to_json()["ancestors"])
    assert "acme/ft" in tree and "acme/base" in tree


def test_a_pull_names_the_pullers_own_damaged_base_not_the_remote(server: Server, tmp_path: Path) -> None:
    """A delta the remote sends against a base the puller holds damaged is the puller's damage to mend: the error
    says so, and what mends it, instead of "remote origin sent a bad object"."""
    alice, _folders = _alice_with_family(server, tmp_path, "F32", generations=1)
    alice("push", "acme/base:v1", "--remote", "origin")
    alice("push", "acme/ft:v1", "--remote", "origin")
    carol = make_home(tmp_path, "carol")
    carol("remote", "add", "origin", server.url, "--token", server.read_token)
    _trusts_alice(carol, alice, tmp_path)
    carol("pull", "acme/base:v1", "--remote", "origin")
    delta, base = next(iter(sorted(_deltas(server.archive).items())))
    with carol.archive() as c:
        assert c.store.has(base) and not c.store.has(delta)
        path = c.store.backend.root / "objects" / base[:2] / base  # type: ignore[attr-defined]
    path.chmod(0o644)
    damaged = bytearray(path.read_bytes())
    damaged[-5] ^= 1
    path.write_bytes(bytes(damaged))

    result = carol("pull", "acme/ft:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert result.exit_code == 5
    assert "sent a bad object" not in result.output
    assert f"this archive's copy of object {base} does not read back" in result.output
    assert "run `modelarc scrub` then `modelarc repair`" in result.output
