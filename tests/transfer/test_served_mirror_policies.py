"""A served mirror's access policies follow its primary's: `mirror sync` brings every model's and snapshot's policy
there to what it is here (a push token may tighten, an admin token loosen too), and a public fine-tune of a gated
parent arrives, its delta objects sent on their own when the mirror refuses a delta against a base the token may not
read there.

The server's catalog runs on SQLite and PostgreSQL (``database_url``); the primary home is embedded SQLite.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
from finetunes import LIGHT, write_family
from hostilekit import RewritingProxy, serve_proxy
from modelfactory import tiny_tensors, write_model
from transferkit import Home, Server, make_home, trusted_by_server

from modelarc.archive.access import PolicyWanted, apply_policies, effective_policy, policy_state
from modelarc.archive.tokens import create_token, token_principal
from modelarc.errors import PolicyLooseningError, UsageError
from modelarc.storage import ObjectId
from modelarc.storage.objectformat import unpack_header

DELTA_CODEC = 3


def _mirrored(server: Server, tmp_path: Path, token: str | None = None) -> Home:
    """alice's home with acme/later:v1 (public) pushed, the server as its served mirror (push token unless
    ``token``), synced once."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "later"), "acme/later:v1")
    alice("remote", "add", "m2", server.url, "--token", token or server.push_token, "--no-trust-keys")
    alice("mirror", "add", "served", "remote:m2")
    [first] = alice.json("mirror", "sync")
    assert first["ok"] and first["snapshots_copied"] == 1
    return alice


def _weights_url(server: Server, model: str = "acme/later", rev: str = "v1") -> str:
    return f"{server.url}/{model}/resolve/{rev}/model.safetensors"


def _states(doc: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A ``GET /v1/access`` document (or ``access ls --json``'s entry) as what it withholds: the model's, and each
    snapshot's override that holds."""
    overrides = {o["snapshot"]: policy_state(o, override=True) for o in doc["snapshots"]}
    return policy_state(doc), {k: v for k, v in overrides.items() if v is not None}


def _local_states(home: Home, model: str) -> tuple[Any, dict[str, Any]]:
    [found] = home.json("access", "ls", model)
    return _states({**found["policy"], "snapshots": found["overrides"]})


def test_a_policy_tightened_after_mirroring_reaches_the_served_mirror(server: Server, tmp_path: Path) -> None:
    alice = _mirrored(server, tmp_path)
    assert httpx.get(_weights_url(server)).status_code == 200  # public: mirrored as it is
    alice("access", "set", "acme/later", "restricted", "--reason", "licence withdrawn")
    result = alice("mirror", "sync")
    assert "POLICY  served: acme/later public -> restricted" in result.stdout
    # the mirror withholds what the primary withholds, by every route
    assert httpx.get(_weights_url(server)).status_code == 403
    with server.archive.catalog.session():
        assert effective_policy(server.archive, "acme/later").level == "restricted"
    doc = httpx.get(f"{server.url}/v1/access/acme/later").json()
    assert doc["level"] == "restricted" and doc["reason"] == "licence withdrawn"
    _ref, snap = server.archive.resolve("acme/later:v1")
    for chunk in (c for f in server.archive.manifest(snap).files for p in f.tensors() for c in p.chunks):
        assert httpx.get(f"{server.url}/v1/objects/{chunk.id}").status_code == 403
    # a snapshot's override, with files withheld by name and an embargo date, goes too; a second sync changes
    # nothing
    until = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=400)).isoformat()
    alice("access", "set", "acme/later", "restricted", "--snapshot", "v1", "--until", until, "--withhold", "*.json",
          "--reason", "review")  # fmt: skip
    [report] = alice.json("mirror", "sync")
    assert report["ok"] and [c["target"] for c in report["policies_changed"]] == [f"acme/later@{snap.digest}"]
    assert _states(httpx.get(f"{server.url}/v1/access/acme/later").json()) == _local_states(
        alice, "acme/later"
    )
    assert httpx.get(f"{server.url}/acme/later/resolve/v1/config.json").status_code == 403
    [again] = alice.json("mirror", "sync")
    assert again["ok"] and again["policies_changed"] == [] and again["policies_refused"] == {}


def test_loosening_needs_an_admin_token_on_the_mirror_and_is_reported_until_then(
    server: Server, tmp_path: Path
) -> None:
    alice = _mirrored(server, tmp_path)
    alice("access", "set", "acme/later", "gated", "--reason", "accept the licence")
    assert alice.json("mirror", "sync")[0]["ok"]
    alice("access", "set", "acme/later", "public", "--reason", "released")
    failed = alice("mirror", "sync", ok=False)
    assert "POLICY NOT APPLIED  served: acme/later:" in failed.stdout and "admin token" in failed.stdout
    assert "1 models' policies not applied there" in failed.stderr
    assert httpx.get(_weights_url(server)).status_code == 403  # kept as strict as it was, never half-applied
    admin = create_token(server.archive, "admin", "mirror-admin").token
    alice("remote", "rm", "m2")
    alice("remote", "add", "m2", server.url, "--token", admin, "--no-trust-keys")
    [report] = alice.json("mirror", "sync")
    assert report["ok"] and report["policies_changed"][0]["after"]["level"] == "public"
    assert httpx.get(_weights_url(server)).status_code == 200


def test_a_new_models_policies_arrive_whole_and_in_step(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "v1"), "acme/closed:v1")
    alice("push", write_model(tmp_path / "v2", tiny_tensors(seed=3)), "acme/closed:v2")
    until = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)).isoformat()
    alice(
        "access",
        "set",
        "acme/closed",
        "gated",
        "--until",
        until,
        "--withhold",
        "notes/*",
        "--reason",
        "embargo",
    )
    alice("access", "set", "acme/closed", "restricted", "--snapshot", "v2", "--reason", "v2 not yet")
    alice("remote", "add", "m2", server.url, "--token", server.push_token, "--no-trust-keys")
    alice("mirror", "add", "served", "remote:m2")
    [report] = alice.json("mirror", "sync")
    assert report["ok"] and report["snapshots_copied"] == 2
    assert _states(httpx.get(f"{server.url}/v1/access/acme/closed").json()) == _local_states(
        alice, "acme/closed"
    )
    assert alice.json("mirror", "sync")[0]["policies_changed"] == []


def test_a_mirror_token_outside_the_namespace_fails_the_sync_for_that_model(
    server: Server, tmp_path: Path
) -> None:
    alice = _mirrored(server, tmp_path)
    alice("push", write_model(tmp_path / "other", tiny_tensors(seed=7)), "other/m:v1")
    assert alice.json("mirror", "sync")[0]["ok"]
    # the mirror's token is replaced by one limited to acme: other/m's policy cannot be set there
    limited = create_token(server.archive, "push", "acme-only", namespaces=["acme"]).token
    alice("remote", "rm", "m2")
    alice("remote", "add", "m2", server.url, "--token", limited, "--no-trust-keys")
    alice("access", "set", "other/m", "gated", "--reason", "licence")
    alice("access", "set", "acme/later", "gated", "--reason", "licence")
    result = alice("mirror", "sync", ok=False)
    assert "POLICY  served: acme/later public -> gated" in result.stdout  # the other models still go
    assert "POLICY NOT APPLIED  served: other/m:" in result.stdout and "may push only" in result.stdout
    assert httpx.get(_weights_url(server, "other/m")).status_code == 200  # as the report says


def test_a_push_token_may_tighten_never_loosen_at_any_date(server: Server, tmp_path: Path) -> None:
    _mirrored(server, tmp_path)
    pusher = token_principal(server.archive, server.push_token)
    assert pusher is not None
    today = dt.datetime.now(dt.UTC).date()
    soon, later = today + dt.timedelta(days=10), today + dt.timedelta(days=100)

    def put(*wanted: PolicyWanted) -> list[str]:
        return [c.target for c in apply_policies(server.archive, "acme/later", wanted, pusher, actor="t")]

    assert put(PolicyWanted(None, "gated", "licence", later, ("*.json",))) == ["acme/later"]
    refused = [
        PolicyWanted(None, "gated", "licence", soon, ("*.json",)),  # an earlier embargo date
        PolicyWanted(None, "gated", "licence", None, ()),  # no longer names *.json
        PolicyWanted(None, "public", "released"),
        PolicyWanted(None, "restricted", "takedown", None, ()),  # higher, but config.json goes public
    ]
    for wanted in refused:
        try:
            put(wanted)
        except PolicyLooseningError as exc:
            assert "admin token" in str(exc)
        else:
            raise AssertionError(f"{wanted} was applied by a push token")
    assert put(PolicyWanted(None, "restricted", "takedown", None, ("*.json",))) == ["acme/later"]
    assert put(PolicyWanted(None, "restricted", "takedown", None, ("*.json",))) == []  # already holds
    # a snapshot override a pusher sets lapses to the model's policy, never to public
    _ref, snap = server.archive.resolve("acme/later:v1")
    put(PolicyWanted(snap.digest, "restricted", "review", soon, ("*.json",)))
    lapsed = effective_policy(server.archive, "acme/later", "v1", now=dt.datetime.combine(later, dt.time()))
    assert lapsed.level == "restricted" and lapsed.source == "model"
    # over HTTP: the same refusal, as 403 PolicyLoosening, and nothing changed
    answer = httpx.put(
        f"{server.url}/v1/access/acme/later",
        json={"policies": [{"level": "public", "reason": "released"}]},
        headers={"Authorization": f"Bearer {server.push_token}"},
    )
    assert answer.status_code == 403 and answer.headers["x-error-code"] == "PolicyLoosening"
    read = httpx.put(
        f"{server.url}/v1/access/acme/later",
        json={"policies": [{"level": "restricted", "reason": "x"}]},
        headers={"Authorization": f"Bearer {server.read_token}"},
    )
    assert read.status_code == 403
    assert httpx.put(f"{server.url}/v1/access/acme/later", json={"policies": []}).status_code == 401
    assert effective_policy(server.archive, "acme/later").level == "restricted"
    # one snapshot named twice, by its id and by a prefix of it: refused whole, nothing written twice
    try:
        put(
            PolicyWanted(str(snap.digest), "restricted", "one", None, ("*.json",)),
            PolicyWanted(str(snap.digest)[:20], "restricted", "two", None, ("*.json", "*.txt")),
        )
    except UsageError as exc:
        assert "named more than once" in str(exc)
    else:
        raise AssertionError("one snapshot's override was set twice in one request")
    # the body is bounded before it is parsed (parsed on the event loop: a 16 MiB list of {} held the server ~4 s)
    huge = b'{"policies": [' + b",".join([b"{}"] * 600_000) + b"]}"
    answer = httpx.put(
        f"{server.url}/v1/access/acme/later",
        content=huge,
        headers={"Authorization": f"Bearer {server.push_token}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413


def test_a_mirror_sends_a_models_policies_in_parts_the_server_accepts() -> None:
    """Many overrides with long reasons and withheld-file patterns: every part within the server's body bound."""
    from modelarc.api.access import MAX_POLICIES_BODY
    from modelarc.archive.remote.mirror import POLICY_BATCH, _parts

    big = {"level": "gated", "reason": "r" * 4000, "files": [f"{i:03d}" + "x" * 496 for i in range(64)]}
    wanted = [{**big, "snapshot": f"sha256:{i:064x}"} for i in range(300)] + [{"level": "gated", "reason": "m"}]
    parts = _parts(wanted)
    assert [doc for part in parts for doc in part] == wanted  # all of them, in order
    for part in parts:
        assert 0 < len(part) <= POLICY_BATCH
        assert len(json.dumps({"policies": part}).encode()) < MAX_POLICIES_BODY


def _family(tmp_path: Path) -> tuple[Path, Path]:
    made = write_family(tmp_path / "family", strengths=(LIGHT,), dtypes=("BF16",))
    return made.folder("base", "BF16"), made.folder("light", "BF16")


def _gated_parent_and_public_fine_tune(server: Server, tmp_path: Path) -> Home:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    base, light = _family(tmp_path)
    alice("push", base, "acme/closed:v1")
    alice("push", light, "acme/pubft:v1", "--parent", "acme/closed:v1", "--relation", "finetune")
    alice("access", "set", "acme/closed", "gated", "--reason", "accept the licence")
    alice("remote", "add", "m2", server.url, "--token", server.push_token, "--no-trust-keys")
    with alice.archive() as a:
        deltas = [oid for oid in a.store.iter_ids() if a.store.delta_base(oid)]
    assert deltas  # the fine-tune is stored here as deltas against the gated parent's chunks
    return alice


def _arrived_on_their_own(server: Server) -> None:
    _ref, snap = server.archive.resolve("acme/pubft:v1")
    chunks = {c.id for f in server.archive.manifest(snap).files for p in f.tensors() for c in p.chunks}
    for oid in chunks:
        got = httpx.get(f"{server.url}/v1/objects/{oid}")
        assert got.status_code == 200  # public there, as here
        assert bytes(server.archive.store.decode_stored(ObjectId(oid), got.content)) == bytes(
            server.archive.store.get(ObjectId(oid))
        )
    parent = {c.id for f in server.archive.manifest(server.archive.resolve("acme/closed:v1")[1]).files
              for p in f.tensors() for c in p.chunks}  # fmt: skip
    assert any(httpx.get(f"{server.url}/v1/objects/{oid}").status_code == 403 for oid in parent)
    assert server.archive.fsck().ok


def test_a_public_fine_tune_of_a_gated_parent_reaches_a_served_mirror(server: Server, tmp_path: Path) -> None:
    alice = _gated_parent_and_public_fine_tune(server, tmp_path)
    alice("mirror", "add", "served", "remote:m2")
    [report] = alice.json("mirror", "sync")
    assert report["ok"] and report["snapshots_copied"] == 2, report
    _arrived_on_their_own(server)
    # none of the fine-tune's objects is a delta against a chunk the pusher could not read there
    _ref, snap = server.archive.resolve("acme/pubft:v1")
    for oid in {c.id for f in server.archive.manifest(snap).files for p in f.tensors() for c in p.chunks}:
        blob = server.archive.store.get_stored(ObjectId(oid))
        assert unpack_header(blob).codec_id != DELTA_CODEC
    [again] = alice.json("mirror", "sync")
    assert again["ok"] and again["snapshots_copied"] == 0


def test_a_public_fine_tune_of_a_gated_parent_goes_with_push_remote(server: Server, tmp_path: Path) -> None:
    alice = _gated_parent_and_public_fine_tune(server, tmp_path)
    alice("push", "acme/closed:v1", "--remote", "m2")
    alice("push", "acme/pubft:v1", "--remote", "m2")
    _arrived_on_their_own(server)


def test_a_mirror_too_old_for_policies_is_named_as_such(server: Server, tmp_path: Path) -> None:
    """A served mirror of a modelarc before policy sync answers PUT /v1/access with 405 (played here by a proxy in
    front of a real server): the sync fails for that model, saying the mirror must be upgraded, not "Method Not
    Allowed"; its snapshots still go."""

    def older(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if method == "PUT" and path.startswith("/v1/access/"):
            return 405, {"content-type": "application/json"}, b'{"detail":"Method Not Allowed"}'
        return status, headers, body

    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "later"), "acme/later:v1")
    alice("access", "set", "acme/later", "gated", "--reason", "accept the licence")
    with serve_proxy(RewritingProxy(server.url, rewrite=older)) as url:
        alice("remote", "add", "m2", url, "--token", server.push_token, "--no-trust-keys")
        alice("mirror", "add", "served", "remote:m2")
        failed = alice("mirror", "sync", ok=False)
    assert "too old to take access policies" in failed.stdout and "upgrade it" in failed.stdout
    assert "Method Not Allowed" not in failed.stdout + failed.stderr
    assert server.archive.resolve("acme/later:v1")  # the snapshot went
