"""A served archive (`modelarc serve`) as a mirror: `mirror add NAME remote:REMOTE`, sync, scrub and repair.

The server's catalog runs on SQLite and PostgreSQL (`database_url`); the primary home is embedded SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from modelfactory import big_model, finetune, tiny_tensors, write_model
from transferkit import Home, Server, files_of, make_home, trusted_by_server

from modelarc.cli.main import cli


def _objects(home: Home) -> list[Path]:
    return sorted(p for p in (home.path / "store" / "objects").rglob("*") if p.is_file())


def _history(home: Home, tmp_path: Path) -> dict[str, Path]:
    """Two models; acme/m's v1 is pushed, then its tag moves on: an untagged snapshot; one withdrawn snapshot."""
    base = tiny_tensors()
    sources = {
        "acme/m:main": write_model(tmp_path / "v1", base),
        "acme/m:main ": write_model(tmp_path / "v2", finetune(base, ["model.layers.1.mlp.weight"], seed=5)),
        "acme/big:v1": big_model(tmp_path / "big", megabytes=12),
        "acme/gone:v1": write_model(tmp_path / "gone", finetune(base, ["model.layers.0.mlp.weight"], seed=9)),
    }
    for ref, src in sources.items():
        home("push", src, ref.strip())
    home("tag", "acme/big:v1", "stable")
    home("rm", "acme/gone:v1", "--reason", "takedown for the test")
    return sources


def test_served_archive_mirrors_every_snapshot_and_tag_and_repairs_the_primary(
    server: Server, tmp_path: Path
) -> None:
    alice = make_home(tmp_path, "alice")
    sources = _history(alice, tmp_path)
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("mirror", "add", "served", "remote:origin")
    [synced] = alice.json("mirror", "sync")
    assert synced["ok"] and synced["snapshots_withdrawn"] == [
        next(f"acme/gone@{r['snapshot']}" for r in alice.json("ls") if r["model"] == "acme/gone")
    ]
    assert synced["snapshots_copied"] == 3 and synced["objects_copied"] > 0
    # the server now says what alice says: every live snapshot, the same tags, untagged history untagged
    mine = {(r["model"], r["snapshot"]): sorted(r["tags"]) for r in alice.json("ls") if not r["withdrawn"]}
    with httpx.Client(base_url=server.url) as web:
        theirs = {(r["model"], r["snapshot"]): sorted(r["tags"]) for r in web.get("/v1/snapshots").json()}
    assert theirs == mine and sorted(mine.values()) == [[], ["main"], ["stable", "v1"]]
    assert alice.json("mirror", "ls")[0]["objects_behind"] == 0
    again = alice.json("mirror", "sync")[0]
    assert (again["objects_copied"], again["snapshots_copied"]) == (0, 0)  # incremental
    # a tag that moves here reaches the mirror on the next sync, without a single upload
    alice("tag", "acme/m:main", "release")
    moved = alice.json("mirror", "sync")[0]
    assert (moved["objects_copied"], moved["snapshots_copied"]) == (0, 1)
    assert server.archive.resolve("acme/m:release")[1].digest == alice.json("show", "acme/m:main")["snapshot"]

    victims = sorted(_objects(alice), key=lambda p: p.stat().st_size)[-2:]
    data = bytearray(victims[0].read_bytes())
    data[-7] ^= 0x40
    victims[0].write_bytes(bytes(data))
    victims[1].unlink()
    result = alice.runner.invoke(cli, ["scrub", "--json"], env=alice.env)
    assert result.exit_code == 5
    found = json.loads(result.stdout)
    assert len(found["corrupt"]) == 1 and len(found["missing"]) == 1
    repaired = alice.json("repair")
    assert repaired["ok"] and set(repaired["repaired"].values()) == {"served"}
    assert len(repaired["repaired"]) == 2 and len(repaired["quarantined"]) == 1
    assert alice.json("scrub", "--mirrors")["ok"]  # every object re-read from the primary and over HTTP
    current = {"acme/m:main": sources["acme/m:main "], "acme/big:stable": sources["acme/big:v1"]}
    for ref, src in current.items():  # v1 of acme/m is the untagged snapshot: fsck --read-data checks it below
        out = tmp_path / "out" / ref.replace("/", "_").replace(":", "_")
        alice("pull", ref, out)
        assert files_of(out) == files_of(src)
    alice("fsck", "--read-data")


def test_a_snapshot_the_served_mirror_refuses_is_named_and_the_rest_still_arrive(
    server: Server, tmp_path: Path
) -> None:
    alice = make_home(tmp_path, "alice")
    alice("push", write_model(tmp_path / "m"), "acme/m:v1")
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("mirror", "add", "served", "remote:origin")
    # the server does not trust alice's key: every snapshot is refused before a weight object moves
    result = alice("mirror", "sync", ok=False)
    assert "REFUSED  acme/m@sha256:" in result.output and "trust" in result.output
    assert server.archive.stats().snapshots == 0
    trusted_by_server(server, alice)
    assert alice.json("mirror", "sync")[0]["snapshots_copied"] == 1


def test_a_served_mirror_needs_a_known_remote_that_answers(tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    assert "no remote named 'nowhere'" in alice("mirror", "add", "x", "remote:nowhere", ok=False).stderr
    alice("remote", "add", "dead", "http://127.0.0.1:9", "--no-trust-keys")
    assert "unreachable" in alice("mirror", "add", "x", "remote:dead", ok=False).stderr
    assert alice.json("mirror", "ls") == []


def test_an_offer_that_moves_no_tag_must_say_so_with_a_boolean(server: Server) -> None:
    from modelarc.archive.remote.offers import SnapshotOffer
    from modelarc.errors import UsageError

    doc = {
        "format": 1,
        "ref": "acme/m:v1",
        "snapshot": "sha256:" + "0" * 64,
        "signatures": ["1" * 64],
        "move_tag": "no",
    }
    try:
        SnapshotOffer.from_json(doc)
    except UsageError as exc:
        assert "move_tag" in str(exc)
    else:
        raise AssertionError("a non-boolean move_tag was accepted")
    assert SnapshotOffer.from_json({**doc, "move_tag": False}).move_tag is False
    assert "move_tag" not in SnapshotOffer.from_json({**doc, "move_tag": True}).to_json()
    answer = httpx.post(
        f"{server.url}/v1/transfer/commit",
        json=doc,
        headers={"Authorization": f"Bearer {server.push_token}"},
    )
    assert answer.status_code == 400 and "move_tag" in answer.text


def test_a_damaged_local_object_is_named_and_never_sent_to_a_served_mirror(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    alice("push", big_model(tmp_path / "big", megabytes=4), "acme/big:v1")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("mirror", "add", "served", "remote:origin")
    victim = max(_objects(alice), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x01
    victim.write_bytes(bytes(data))
    result = alice.runner.invoke(cli, ["mirror", "sync", "--json"], env=alice.env)
    assert result.exit_code == 5
    [report] = json.loads(result.stdout)
    assert list(report["not_copied"]) == [victim.name] and not report["ok"]
    assert server.archive.store.has(victim.name) is False and server.archive.stats().snapshots == 0


def test_a_served_mirror_receives_the_access_policy_and_enforces_it(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    alice("push", write_model(tmp_path / "m"), "acme/closed:v1")
    alice("access", "set", "acme/closed", "gated", "--reason", "terms must be accepted")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("mirror", "add", "served", "remote:origin")
    alice("mirror", "sync")
    from modelarc.archive.access import effective_policy

    digest = alice.json("show", "acme/closed:v1")["snapshot"]
    policy = effective_policy(server.archive, "acme/closed", digest)
    assert policy.level == "gated" and "terms must be accepted" in (policy.reason or "")
    with httpx.Client(base_url=server.url) as web:
        answer = web.get("/acme/closed/resolve/v1/model.safetensors")
        assert answer.status_code == 403 and answer.headers["X-Error-Code"] == "GatedRepo"
        assert web.get("/acme/closed/resolve/v1/config.json").status_code == 200
    # a pusher may withhold more, never hand out what the receiver withholds: "public" offers change nothing, and
    # the sync says the mirror's policy was not brought to this one (a push token may not loosen it there)
    alice("access", "set", "acme/closed", "public", "--reason", "opened here")
    alice("tag", "acme/closed:v1", "again")
    failed = alice("mirror", "sync", ok=False)
    assert "POLICY NOT APPLIED  served: acme/closed:" in failed.stdout
    assert effective_policy(server.archive, "acme/closed", digest).level == "gated"
    assert server.archive.resolve("acme/closed:again")[1].digest == digest  # the tag still moved


def test_a_busy_served_mirror_does_not_stop_repair_or_scrub(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hostilekit import RewritingProxy, serve_proxy

    monkeypatch.setenv("MODELARC_REMOTE_BUSY_WAIT", "0")  # busy for good: asked once (tests/transfer/test_remote_busy.py)

    def busy(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> object:
        if path.startswith("/v1/objects/"):  # every object read answered 503, as a server out of send memory
            return 503, {"content-type": "application/json", "X-Error-Code": "ServerBusy"}, b'{"detail": "busy"}'
        return status, headers, body

    alice = make_home(tmp_path, "alice")
    alice("push", write_model(tmp_path / "m"), "acme/m:v1")
    with serve_proxy(RewritingProxy(server.url, rewrite=busy)) as url:
        alice("remote", "add", "busy", url, "--token", server.push_token, "--no-trust-keys")
        alice("mirror", "add", "a-served", "remote:busy")
        alice("mirror", "add", "b-folder", tmp_path / "mirror")
        alice("mirror", "sync", "b-folder")
        victim = max(_objects(alice), key=lambda p: p.stat().st_size)
        data = bytearray(victim.read_bytes())
        data[-7] ^= 0x40
        victim.write_bytes(bytes(data))
        scrubbed = alice.runner.invoke(cli, ["scrub", "--mirrors", "--json"], env=alice.env)
        assert scrubbed.exit_code != 0 and "Traceback" not in scrubbed.output
        found = json.loads(scrubbed.stdout)
        assert len(found["corrupt"]) == 1 and "busy" in found["unreachable"]["a-served"]
        assert found["mirrors"]["b-folder"] == {"missing": [], "corrupt": []}
        repaired = alice.json("repair")
    assert repaired["ok"] and set(repaired["repaired"].values()) == {"b-folder"}
    alice("fsck", "--read-data")


def test_a_served_mirror_of_a_fine_tune_whose_parent_was_withdrawn_scrubs_clean_and_repairs(
    server: Server, tmp_path: Path
) -> None:
    """The withdrawn parent's chunks reach the served mirror as the bases of the fine-tune's deltas, kept there as
    bases only and handed to no mirror token: scrub checks them through the deltas, never asks for them."""
    alice = make_home(tmp_path, "alice")
    base = tiny_tensors()
    weights = [f"model.layers.{i}.{part}.weight" for i in (0, 1) for part in ("mlp", "attn")]
    child = write_model(tmp_path / "ft", finetune(base, weights, scale=1e-5))
    alice("push", write_model(tmp_path / "base", base), "acme/base:v1")
    assert alice.json("push", child, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")[
        "delta_objects"
    ]
    alice("rm", "acme/base:v1", "--reason", "withdrawn for the test")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("mirror", "add", "served", "remote:origin")
    assert alice.json("mirror", "sync")[0]["ok"]
    with alice.archive() as a:
        deltas = {oid: a.store.delta_base(oid) for oid in a.store.iter_ids() if a.store.delta_base(oid)}
    assert deltas and all(server.archive.store.has(b) for b in deltas.values())  # there, as bases
    assert alice.json("scrub", "--mirrors")["ok"]

    delta = sorted(deltas)[0]  # lost here: the mirror hands it over decoded, on its own (the token may not read its base)
    (alice.path / "store" / "objects" / delta[:2] / delta).unlink()
    assert alice.json("repair")["repaired"] == {delta: "served"}
    alice("pull", "acme/ft:v1", tmp_path / "out")
    assert files_of(tmp_path / "out") == files_of(child)
