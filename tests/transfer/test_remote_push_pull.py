"""Remote push/pull between two modelarc homes through a real `modelarc serve` app on 127.0.0.1.

The server's catalog runs on both SQLite and PostgreSQL (`database_url`); the client homes use embedded SQLite.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest
from modelfactory import big_model, finetune, tiny_tensors, write_model
from transferkit import Server, files_of, make_home, trusted_by_server

from modelarc.archive.remote.client import RemoteArchive
from modelarc.archive.remote.config import Remote
from modelarc.archive.remote.sync import fetch_from_remote, push_to_remote
from modelarc.archive.tokens import create_token
from modelarc.errors import IntegrityError, LockedError
from modelarc.storage import ObjectId
from modelarc.storage.codecs import CODEC_NAMES
from modelarc.storage.objectformat import ObjectHeader


def test_second_home_pulls_what_the_first_pushed_byte_identical_and_verified(
    server: Server, tmp_path: Path
) -> None:
    alice, bob = make_home(tmp_path, "alice"), make_home(tmp_path, "bob")
    trusted_by_server(server, alice)
    base = write_model(tmp_path / "base")
    tuned_tensors = finetune(tiny_tensors(), ["model.layers.0.mlp.weight"])
    tuned = write_model(tmp_path / "tuned", tuned_tensors)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    data = tmp_path / "data.yaml"
    data.write_text("version: 1\ndatasets:\n  - {name: the-pile, version: '1.0', role: pretrain}\n")
    alice(
        "push",
        base,
        "acme/base:v1",
        "--cutoff",
        "2023-04",
        "--license",
        "apache-2.0",
        "--data",
        data,
        "--remote",
        "origin",
    )
    pushed = alice.json(
        "push",
        tuned,
        "acme/tuned:v1",
        "--parent",
        "acme/base:v1",
        "--relation",
        "finetune",
        "--remote",
        "origin",
    )
    assert pushed["objects_sent"] >= 1 and pushed["parents_missing"] == []

    bob("remote", "add", "origin", server.url)  # anonymous read; trusts the server's own key (not alice's)
    bob_keys = bob.json("keys", "list")
    assert not any(k["label"] == "alice" for k in bob_keys)
    # alice's key is trusted by the server, not by bob: bob refuses until he trusts it too
    bob("pull", "acme/tuned:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert bob.json("ls") == []
    with alice.archive() as a:
        (tmp_path / "alice.pem").write_bytes(a.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob("pull", "acme/base:v1", "--remote", "origin", "--jobs", "2")
    fetched = bob.json("pull", "acme/tuned:v1", tmp_path / "out", "--remote", "origin", "--jobs", "2")
    assert fetched["snapshot"] == pushed["snapshot"]
    assert files_of(tmp_path / "out") == files_of(tuned)
    shown = bob.json("show", "acme/tuned:v1")
    assert shown["snapshot"] == pushed["snapshot"]
    base_shown = bob.json("show", "acme/base:v1")
    assert base_shown["cutoff"] == "2023-04" and base_shown["license"] == "apache-2.0"
    assert [(d["name"], d["role"]) for d in base_shown["datasets"]] == [("the-pile", "pretrain")]
    tree = bob.json("lineage", "acme/tuned:v1")
    assert "acme/base" in json.dumps(tree)
    bob("verify", "acme/tuned:v1")
    bob("fsck")
    # what the server holds, with the same filters as a local ls, one page of one row at a time
    remote_rows = bob.json("ls", "--remote", "origin", "--limit", "5")
    assert sorted(r["model"] for r in remote_rows) == ["acme/base", "acme/tuned"]
    assert [r["model"] for r in bob.json("ls", "--remote", "origin", "--cutoff-before", "2024-01-01")] == [
        "acme/base"
    ]
    assert len(bob.json("ls", "--remote", "origin", "--limit", "1")) == 1
    assert [r["model"] for r in bob.json("ls", "--remote", "origin", "--name", "tuned")] == ["acme/tuned"]
    assert [r["model"] for r in bob.json("ls", "--name", "BASE")] == ["acme/base"]
    with RemoteArchive(Remote("origin", server.url)) as client:
        paged = client.search({}, 10, page_size=1)  # follows Link: rel="next" page by page
    assert [r.snapshot for r in paged] == [r["snapshot"] for r in remote_rows]


def test_pull_of_an_unchanged_snapshot_transfers_nothing(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    model = write_model(tmp_path / "m")
    first = alice.json("push", model, "acme/m:v1", "--remote", "origin")
    again = alice.json("push", "acme/m:v1", "--remote", "origin")
    assert first["objects_sent"] == first["objects"] and again["objects_sent"] == 0
    assert again["new_snapshot"] is False
    # a second tag for the same snapshot moves on the remote without any upload
    alice("tag", "acme/m:v1", "stable")
    moved = alice.json("push", "acme/m:stable", "--remote", "origin")
    assert moved["objects_sent"] == 0
    assert server.archive.resolve("acme/m:stable")[1].digest == first["snapshot"]
    from modelarc.registry.queries import audit_events

    with server.archive.catalog.session() as s:  # the audit log names the token that pushed
        actors = {e.actor for e in audit_events(s, action="transfer.commit")}
    assert len(actors) == 1 and actors.pop().endswith(":ci-push")


def test_push_without_a_push_token_is_refused(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    model = write_model(tmp_path / "m")
    alice("remote", "add", "anon", server.url)
    alice("remote", "add", "reader", server.url, "--token", server.read_token)
    refused = alice("remote", "add", "forged", server.url, "--token", "ma_not-a-real-token", ok=False)
    assert "invalid or revoked token" in refused.stderr  # a wrong token fails when the remote is added
    alice("remote", "add", "forged", server.url, "--token", "ma_not-a-real-token", "--no-trust-keys")
    for name in ("anon", "reader", "forged"):
        result = alice("push", model, "acme/m:v1", "--remote", name, ok=False)
        assert "refused" in result.stderr
    assert server.archive.stats().snapshots == 0
    assert list(server.archive.store.iter_ids()) == []
    assert httpx.put(f"{server.url}/v1/objects/{'0' * 64}", content=b"x").status_code == 401
    reader = httpx.put(
        f"{server.url}/v1/objects/{'0' * 64}",
        content=b"x",
        headers={"Authorization": f"Bearer {server.read_token}"},
    )
    assert reader.status_code == 403


def test_an_upload_whose_bytes_are_not_its_id_is_rejected(server: Server, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {server.push_token}"}
    blob = ObjectHeader(0, 5, b"").pack() + b"hello"
    assert CODEC_NAMES[0] == "raw"
    wrong = ObjectId.of(b"something else")
    r = httpx.put(f"{server.url}/v1/objects/{wrong}", content=blob, headers=auth)
    assert r.status_code == 422 and "hash to" in r.json()["detail"]
    assert not server.archive.store.has(wrong)
    right = ObjectId.of(b"hello")
    assert httpx.put(f"{server.url}/v1/objects/{right}", content=blob, headers=auth).status_code == 201
    assert httpx.put(f"{server.url}/v1/objects/{right}", content=blob, headers=auth).status_code == 200
    # no snapshot uses it yet (an upload before its commit, or weights a withdrawal released): admins only
    assert httpx.get(f"{server.url}/v1/objects/{right}").status_code == 403
    admin = {"Authorization": f"Bearer {create_token(server.archive, 'admin', 'ci-admin').token}"}
    assert httpx.get(f"{server.url}/v1/objects/{right}", headers=admin).content == blob
    # an upload must declare its size up front: a chunked body without Content-Length is refused
    chunked = httpx.put(f"{server.url}/v1/objects/{right}", content=iter([blob]), headers=auth)
    assert chunked.status_code == 411
    # a header declaring more than any object may hold is refused before decoding
    bomb = ObjectHeader(0, 1 << 40, b"").pack() + b"x"
    r = httpx.put(f"{server.url}/v1/objects/{ObjectId.of(b'x')}", content=bomb, headers=auth)
    assert r.status_code == 413
    # ids are validated: nothing that is not 64 hex digits reaches the store
    for bad in ("..%2F..%2Fetc%2Fpasswd", "ABC", "0" * 63):
        assert httpx.get(f"{server.url}/v1/objects/{bad}").status_code in (400, 404)


def test_commit_is_refused_until_every_object_is_present_and_signed_by_a_trusted_key(
    server: Server, tmp_path: Path
) -> None:
    mallory = make_home(tmp_path, "mallory")  # the server does not trust mallory's key
    mallory("push", write_model(tmp_path / "m"), "acme/m:v1")
    with mallory.archive() as a:
        client = RemoteArchive(Remote("origin", server.url, server.push_token), jobs=2)
        from modelarc.archive.remote.offers import objects_of, offer_for

        offer, manifest = offer_for(a, "acme/m:v1")
        auth = {"Authorization": f"Bearer {server.push_token}"}
        early = httpx.post(f"{server.url}/v1/transfer/commit", json=offer.to_json(), headers=auth)
        assert early.status_code == 409 and early.json()["missing"]
        for oid in objects_of(offer, manifest):
            client.upload(oid, a.store.get_stored(oid))
        signed_by_stranger = httpx.post(
            f"{server.url}/v1/transfer/commit", json=offer.to_json(), headers=auth
        )
        assert signed_by_stranger.status_code == 422
        assert "trusted" in signed_by_stranger.json()["detail"]
        assert server.archive.stats().snapshots == 0
        server.archive.import_key(a.public_key_pem(), label="mallory, vetted")
        assert (
            httpx.post(f"{server.url}/v1/transfer/commit", json=offer.to_json(), headers=auth).status_code
            == 201
        )
        client.close()


def test_a_broken_push_resumes_by_sending_only_what_is_missing(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", big_model(tmp_path / "big", megabytes=24), "acme/big:v1")
    remote = Remote("origin", server.url, server.push_token)
    sent: list[int] = []

    def break_after_three(n: int) -> None:
        sent.append(n)
        if len(sent) == 3:
            raise ConnectionError("network cable pulled")

    with alice.archive() as a, RemoteArchive(remote, jobs=1) as client:
        with pytest.raises(ConnectionError):
            push_to_remote(a, "acme/big:v1", client, progress=break_after_three)
        assert server.archive.stats().snapshots == 0  # nothing committed
        resumed = push_to_remote(a, "acme/big:v1", client)
    assert resumed.objects_sent <= resumed.objects - 3
    assert resumed.new_snapshot
    server.archive.verify("acme/big:v1")


def test_a_broken_pull_resumes_and_a_bad_object_from_the_remote_is_refused(
    server: Server, tmp_path: Path
) -> None:
    server.archive.push(big_model(tmp_path / "big", megabytes=24), "acme/big:v1")
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    remote = Remote("origin", server.url)
    got: list[int] = []

    def break_after_two(n: int) -> None:
        got.append(n)
        if len(got) == 2:
            raise ConnectionError("network cable pulled")

    with bob.archive() as b, RemoteArchive(remote, jobs=1) as client:
        with pytest.raises(ConnectionError):
            fetch_from_remote(b, "acme/big:v1", client, progress=break_after_two)
        assert b.stats().snapshots == 0
        resumed = fetch_from_remote(b, "acme/big:v1", client)
        total = resumed.objects
        assert resumed.objects_sent <= total - 3  # the manifest and two chunks were already here
    bob("verify", "acme/big:v1")

    # flip a byte in one stored object on the server: the puller refuses it and records nothing
    carol = make_home(tmp_path, "carol")
    carol("remote", "add", "origin", server.url)
    _ref, snap = server.archive.resolve("acme/big:v1")
    manifest = server.archive.manifest(snap)
    victim = next(iter(sorted(manifest.object_ids())))
    path = server.archive.settings.store_path / "objects" / victim[:2] / victim
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    result = carol("pull", "acme/big:v1", tmp_path / "carol-out", "--remote", "origin", ok=False)
    assert "bad object" in result.stderr or "corrupt" in result.stderr
    assert carol.json("ls") == []
    # like a local pull, files finished before the bad object stay (each one verified); nothing partial remains
    out = tmp_path / "carol-out"
    written = files_of(out) if out.exists() else {}
    source = files_of(tmp_path / "big")
    assert all(source.get(path) == digest for path, digest in written.items()), written
    assert len(written) < len(source)


def test_remote_errors_are_one_line(tmp_path: Path) -> None:
    home = make_home(tmp_path, "h")
    home("remote", "add", "bad", "ftp://example", ok=False)
    home("remote", "add", "down", "http://127.0.0.1:9", ok=False)  # nothing listens on port 9
    home("remote", "add", "down", "http://127.0.0.1:9", "--no-trust-keys")
    home("pull", "acme/x:v1", "--remote", "down", ok=False)
    home("pull", "acme/x:v1", "--remote", "nowhere", ok=False)
    home("push", "acme/x:v1", ok=False)  # no REF and no --remote
    assert home.json("remote", "ls") == [{"name": "down", "token": False, "url": "http://127.0.0.1:9"}]
    assert oct((tmp_path / "h" / "remotes.json").stat().st_mode & 0o777) == "0o600"


def test_gc_on_the_server_keeps_what_a_push_in_flight_uploaded(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "m"), "acme/m:v1")
    remote = Remote("origin", server.url, server.push_token)
    reports = []

    def gc_on_the_server_after_each_upload(_n: int) -> None:
        try:
            reports.append(server.archive.gc())  # the uploads are not committed yet, only leased
        except LockedError:  # the next upload holds the store's shared lock right now: gc waits for none
            pass

    with alice.archive() as a, RemoteArchive(remote, jobs=1) as client:
        from modelarc.archive.remote.offers import objects_of, offer_for

        offer, manifest = offer_for(a, "acme/m:v1")
        needed = len(objects_of(offer, manifest))
        result = push_to_remote(a, "acme/m:v1", client, progress=gc_on_the_server_after_each_upload)
    assert reports and all(r.objects_removed == 0 for r in reports)
    assert result.new_snapshot and result.objects_sent == needed
    server.archive.verify("acme/m:v1")


def test_a_push_whose_leases_expired_and_objects_vanished_sends_them_again(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "m"), "acme/m:v1")
    remote = Remote("origin", server.url, server.push_token)
    monkeypatch.setattr("modelarc.archive.remote.receive.LEASE_TTL", dt.timedelta(seconds=-1))  # born expired
    removed: list[int] = []
    calls: list[int] = []

    def gc_on_the_server_after_the_last_upload(n: int) -> None:
        calls.append(n)
        if len(calls) == len(todo):
            removed.append(server.archive.gc().objects_removed)  # expired leases protect nothing

    with alice.archive() as a, RemoteArchive(remote, jobs=1) as client:
        from modelarc.archive.remote.offers import objects_of, offer_for

        offer, manifest = offer_for(a, "acme/m:v1")
        needed = objects_of(offer, manifest)
        todo = needed[1 + len(offer.signatures) :]
        result = push_to_remote(a, "acme/m:v1", client, progress=gc_on_the_server_after_the_last_upload)
    assert removed and removed[0] >= 1
    assert result.new_snapshot and result.objects_sent > len(needed)
    server.archive.verify("acme/m:v1")


def test_a_pull_whose_restore_confirms_nothing_keeps_and_records_nothing(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each object downloaded for a pull into a folder is kept only once restore's ``confirm`` has its digest; if a
    bug ever left some unconfirmed, the pull must say so and record nothing, not fail later as 'incomplete'."""
    server.archive.push(big_model(tmp_path / "big", megabytes=12), "acme/big:v1")
    from modelarc.archive.remote import sync

    real_restore = sync.restore

    def forgetful(*args: object, **kwargs: object) -> object:
        kwargs["confirm"] = lambda chunk, data, digest: None
        return real_restore(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sync, "restore", forgetful)
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)  # trusts the server's signing key
    with bob.archive() as b, RemoteArchive(Remote("origin", server.url), jobs=2) as client:
        with pytest.raises(IntegrityError, match="never checked against their ids"):
            fetch_from_remote(b, "acme/big:v1", client, dest=tmp_path / "out")
        assert b.stats().snapshots == 0
        _ref, snap = server.archive.resolve("acme/big:v1")
        weights = {str(c.id) for f in server.archive.manifest(snap).files for p in f.parts for c in p.chunks}
        assert not [oid for oid in weights if b.store.has(ObjectId(oid))]


def test_a_pull_whose_temp_file_gc_cleared_reports_the_lost_lock(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a local push: the pull is "paused" past its store lock's expiry between writing a downloaded object's
    temp file and renaming it into the store; gc runs meanwhile and clears tmp/. Then the lost lock is what is said
    (exit 8, nothing recorded), not the storage error about a temp file that "something" cleared."""
    import os
    import threading

    from sqlalchemy import update

    from modelarc.registry.models import utcnow
    from modelarc.registry.store_models import StoreLock

    alice, bob = make_home(tmp_path, "alice"), make_home(tmp_path, "bob")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    src = write_model(tmp_path / "m", tiny_tensors())
    alice("push", src, "acme/m:v1", "--remote", "origin")
    bob("remote", "add", "origin", server.url)
    with alice.archive() as a:
        (tmp_path / "alice.pem").write_bytes(a.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob_tmp = bob.path / "store" / "tmp"
    real_replace = os.replace
    collected = {}
    once = threading.Lock()  # objects are kept from several threads: the first rename runs gc, the rest wait

    def paused_before_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        with once:
            if "gc" not in collected and Path(src).parent == bob_tmp:
                with bob.archive() as b:
                    with b.catalog.session() as s:
                        s.execute(update(StoreLock).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
                    collected["gc"] = b.gc()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", paused_before_rename)
    failed = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert failed.exit_code == 8, failed.output
    assert "this pull lost the store lock" in failed.stderr and "nothing was recorded" in failed.stderr
    assert collected["gc"].temp_files_removed >= 1  # gc really ran under the pull and took its temp file
    assert bob.json("ls") == []
    monkeypatch.setattr(os, "replace", real_replace)
    bob("pull", "acme/m:v1", tmp_path / "out2", "--remote", "origin")  # a re-run succeeds
    assert files_of(tmp_path / "out2") == files_of(src)
