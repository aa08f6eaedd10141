"""Access policies (archive/access.py): who may read which weights, embargoes that lapse by themselves, grants by
token name and by token id, revocation, restricted models, and which objects ``/v1/objects/{id}`` may hand out when
objects are shared between public and gated snapshots. On SQLite and PostgreSQL; times are passed as ``now``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelfactory import TINY_CONFIG, finetune, tiny_tensors, write_model
from sqlalchemy import event

from modelarc.archive import access
from modelarc.archive.access import (
    effective_policy,
    grant,
    may_read_weights,
    object_readable,
    read_decision,
    revoke,
    set_policy,
)
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import Principal, create_token, list_tokens, revoke_token, token_principal
from modelarc.errors import AccessNotRequestableError, NotFoundError, UsageError
from modelarc.registry import queries as q
from modelarc.storage import ObjectId

UNTIL = dt.date(2031, 1, 1)
BEFORE = dt.datetime(2030, 12, 31, 23, 59, 59)  # the last second of the embargo
LAPSED = dt.datetime(2031, 1, 1, 0, 0, 0)  # 00:00 UTC on the day: public, no one acting
SECRET_CONFIG = {**TINY_CONFIG, "hidden_act": "secret-only"}  # a config chunk only the gated model has


@pytest.fixture
def archive(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    """acme/pub:v1 (public) and acme/secret:v1 (the same files: one snapshot id in two models), acme/secret:v2
    (one tensor fine-tuned: a chunk only it has), acme/private:v1 (its own weights and config)."""
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    monkeypatch.setenv("MODELARC_ACTOR", "curator")
    arc, _created = Archive.init(tmp_path / "home")
    base = tiny_tensors()
    with arc:
        arc.push(write_model(tmp_path / "pub", base), "acme/pub:v1")
        arc.push(tmp_path / "pub", "acme/secret:v1")
        arc.push(write_model(tmp_path / "v2", finetune(base, ["lm_head.bias"])), "acme/secret:v2")
        arc.push(write_model(tmp_path / "p", tiny_tensors(seed=7), config=SECRET_CONFIG), "acme/private:v1")
        yield arc


def _token(arc: Archive, scope: str, name: str) -> Principal:
    made = create_token(arc, scope, name)
    found = token_principal(arc, made.token)
    assert found is not None
    return found


def _manifest(arc: Archive, ref: str) -> SnapshotManifest:
    return arc.manifest(arc.resolve(ref)[1])


def _chunks(manifest: SnapshotManifest, path: str, kind: str | None = None) -> set[str]:
    (entry,) = [f for f in manifest.files if f.path == path]
    return {c.id for p in entry.parts if kind is None or p.kind == kind for c in p.chunks}


def _readable(arc: Archive, model: str, principal: Principal | None, now: dt.datetime | None = None) -> bool:
    return read_decision(arc, model, None, principal, now=now).allowed


def test_a_model_without_a_policy_is_public_to_everyone(archive: Archive) -> None:
    policy = effective_policy(archive, "acme/pub")
    assert (policy.level, policy.source, policy.withholds) == ("public", "default", False)
    assert may_read_weights(policy, None, [])


def test_gated_weights_need_a_live_grant_naming_the_token_or_its_name(archive: Archive) -> None:
    alice, alice2, bob = (_token(archive, "read", n) for n in ("alice", "alice", "bob"))
    set_policy(archive, "acme/secret", "gated", reason="licence needs acceptance")
    assert not _readable(archive, "acme/secret", None)
    assert not _readable(archive, "acme/secret", alice)
    grant(archive, "acme/secret", "alice", reason="signed the licence")
    assert _readable(archive, "acme/secret", alice) and _readable(archive, "acme/secret", alice2)  # by name
    assert not _readable(archive, "acme/secret", bob)
    grant(archive, "acme/secret", f"token:{bob.id}", reason="reviewer")
    assert _readable(archive, "acme/secret", bob)
    other_bob = _token(archive, "read", "bob")
    assert not _readable(archive, "acme/secret", other_bob)  # the grant names one token, not its name
    set_policy(archive, "acme/private", "gated", reason="another licence")
    assert not _readable(archive, "acme/private", alice)  # a grant covers its own model only
    with archive.catalog.session() as s:
        from modelarc.registry import access as rows

        every = rows.grants(s)  # alice's grant on acme/secret among them
    assert not may_read_weights(effective_policy(archive, "acme/private"), alice, every)


def test_a_grant_to_a_token_id_covers_that_token_only_never_a_token_named_like_it(archive: Archive) -> None:
    """``token:<id>`` names one token by its id: no token may be named so, and one a catalog already holds under
    such a name (made before names were checked) is not covered by the grant to that id."""
    holder = _token(archive, "read", "reviewer")
    set_policy(archive, "acme/secret", "gated", reason="licence needs acceptance")
    grant(archive, "acme/secret", f"token:{holder.id}", reason="the reviewer's request")
    with pytest.raises(UsageError, match="token:"):
        create_token(archive, "read", f"token:{holder.id}")
    assert [t["name"] for t in list_tokens(archive)] == ["reviewer"]
    with archive.catalog.session() as s:  # as an older catalog may hold it
        from modelarc.archive.tokens import _hash
        from modelarc.registry import tokens as token_rows

        token_rows.add_token(s, f"token:{holder.id}", _hash("marc_lookalike"), "read", "curator")
    lookalike = token_principal(archive, "marc_lookalike")
    assert lookalike is not None and lookalike.name == f"token:{holder.id}" != f"token:{lookalike.id}"
    assert _readable(archive, "acme/secret", holder)
    assert not _readable(archive, "acme/secret", lookalike)
    assert not read_decision(archive, "acme/secret", "v1", lookalike).allowed


def test_a_revoked_grant_or_a_revoked_token_reads_nothing_more(archive: Archive) -> None:
    made = create_token(archive, "read", "carol")
    carol = token_principal(archive, made.token)
    set_policy(archive, "acme/secret", "gated", reason="licence")
    grant(archive, "acme/secret", "carol", reason="signed")
    assert _readable(archive, "acme/secret", carol)
    revoke(archive, "acme/secret", "carol", reason="licence breached")
    assert not _readable(archive, "acme/secret", carol)
    decision = read_decision(archive, "acme/secret", None, carol)
    with archive.catalog.session() as s:
        from modelarc.registry import access as rows

        every = rows.grants(s, live_only=False)
    assert not may_read_weights(decision.policy, carol, every)  # revoked grants passed in do not count
    with pytest.raises(NotFoundError, match="no live grant"):
        revoke(archive, "acme/secret", "carol", reason="again")
    grant(archive, "acme/secret", "carol", reason="signed again")
    assert carol is not None
    revoke_token(archive, carol.id)
    assert token_principal(archive, made.token) is None  # the server sees an anonymous caller, or refuses it
    with pytest.raises(NotFoundError, match="revoked"):
        grant(archive, "acme/secret", f"token:{carol.id}", reason="a revoked token")


def test_restricted_weights_are_for_admins_only(archive: Archive) -> None:
    reader, pusher, admin = (
        _token(archive, "read", "r"),
        _token(archive, "push", "p"),
        _token(archive, "admin", "a"),
    )
    set_policy(archive, "acme/secret", "restricted", reason="kept under a research agreement")
    grant(archive, "acme/secret", "r", reason="a grant does not open a restricted model")
    with archive.catalog.session() as s:
        from modelarc.registry import access as rows

        held = rows.grants(s)
    assert [g.subject for g in held] == ["r"]
    assert not may_read_weights(effective_policy(archive, "acme/secret"), reader, held)
    assert [_readable(archive, "acme/secret", p) for p in (None, reader, pusher, admin)] == [
        False,
        False,
        False,
        True,
    ]
    set_policy(archive, "acme/secret", "gated", reason="agreement relaxed")
    assert [_readable(archive, "acme/secret", p) for p in (None, reader, pusher, admin)] == [
        False,
        True,
        False,
        True,
    ]


def test_an_embargo_lapses_to_public_on_its_day_with_no_one_acting(archive: Archive) -> None:
    set_policy(archive, "acme/secret", "gated", until=UNTIL, reason="embargo until publication")
    before = effective_policy(archive, "acme/secret", now=BEFORE)
    assert (before.level, before.until, before.lapsed) == ("gated", UNTIL, False)
    assert not _readable(archive, "acme/secret", None, now=BEFORE)
    after = effective_policy(archive, "acme/secret", now=LAPSED)
    assert (after.level, after.declared, after.lapsed) == ("public", "gated", True)
    assert _readable(archive, "acme/secret", None, now=LAPSED)
    aware = dt.datetime(
        2031, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))
    )  # 23:30 UTC the day before
    assert effective_policy(archive, "acme/secret", now=aware).level == "gated"


def test_a_snapshot_override_wins_over_its_model_until_it_is_ended(archive: Archive) -> None:
    set_policy(archive, "acme/secret", "gated", reason="licence")
    set_policy(
        archive, "acme/secret", "restricted", snapshot="v2", reason="takedown request for v2", until=UNTIL
    )
    v1, v2 = (effective_policy(archive, "acme/secret", rev) for rev in ("v1", "v2"))
    assert (v1.level, v1.source) == ("gated", "model")
    assert (v2.level, v2.source, v2.reason) == ("restricted", "snapshot", "takedown request for v2")
    # a lapsed override lapses to public, not to the model's policy
    assert effective_policy(archive, "acme/secret", "v2", now=LAPSED).level == "public"
    digest = archive.resolve("acme/secret:v2")[1].digest
    set_policy(archive, "acme/secret", "inherit", snapshot=digest, reason="takedown withdrawn")
    assert effective_policy(archive, "acme/secret", "v2").source == "model"
    with pytest.raises(NotFoundError):
        effective_policy(archive, "acme/secret", "v9")


@pytest.mark.parametrize(
    "level, options, message",
    [
        ("gated", {"reason": "  "}, "reason is required"),
        ("secret", {"reason": "x"}, "unknown access level"),
        ("inherit", {"reason": "x"}, "unknown access level"),  # a model has nothing to inherit from
        ("gated", {"reason": "x", "until": "2020-01-01"}, "not after today"),
        ("gated", {"reason": "x", "until": "next week"}, "invalid date"),
        ("public", {"reason": "x", "until": "2031-01-01"}, "no sense with public"),
    ],
)
def test_a_bad_policy_change_is_refused(
    archive: Archive, level: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        set_policy(archive, "acme/secret", level, **options)  # type: ignore[arg-type]
    assert effective_policy(archive, "acme/secret").source == "default"


def test_every_change_and_grant_is_audited_with_its_reason(archive: Archive) -> None:
    _token(archive, "read", "dan")
    set_policy(archive, "acme/secret", "gated", until=UNTIL, reason="embargo")
    grant(archive, "acme/secret", "dan", reason="co-author")
    revoke(archive, "acme/secret", "dan", reason="left the project")
    with archive.catalog.session() as s:
        events = {e.action: e for e in q.audit_events(s, limit=10)}
    assert events["access.set"].target == "acme/secret"
    assert events["access.set"].details == {"level": "gated", "until": "2031-01-01", "reason": "embargo"}
    assert events["access.grant"].details["reason"] == "co-author"
    assert events["access.revoke"].details["reason"] == "left the project"
    assert {e.actor for e in events.values()} >= {"curator"}


def test_a_shared_object_is_public_while_a_public_snapshot_uses_it(archive: Archive) -> None:
    set_policy(archive, "acme/secret", "gated", reason="licence")
    shared = _manifest(archive, "acme/secret:v1")
    assert shared.snapshot_id == _manifest(archive, "acme/pub:v1").snapshot_id  # one snapshot id, two models
    weight = sorted(_chunks(shared, "model.safetensors", "tensor"))[0]
    assert object_readable(archive, weight, None)  # acme/pub holds the very same bytes in public


def test_a_guessed_id_of_a_gated_weight_chunk_is_refused(archive: Archive) -> None:
    alice, admin = _token(archive, "read", "alice"), _token(archive, "admin", "root")
    set_policy(archive, "acme/secret", "gated", reason="licence")
    v1, v2 = _manifest(archive, "acme/secret:v1"), _manifest(archive, "acme/secret:v2")
    only_v2 = _chunks(v2, "model.safetensors") - _chunks(v1, "model.safetensors")
    assert only_v2  # the fine-tuned tensor: in no public snapshot
    guessed = sorted(only_v2)[0]  # read off the public manifest of v2
    assert not object_readable(archive, guessed, None)
    assert not object_readable(archive, guessed, alice)
    assert object_readable(archive, guessed, admin)
    grant(archive, "acme/secret", "alice", reason="signed")
    assert object_readable(archive, guessed, alice)
    assert object_readable(archive, v2.snapshot_id.hex, None)  # the manifest stays public
    assert not object_readable(archive, guessed, None, now=LAPSED)  # no embargo: still gated in 2031


def test_provenance_objects_of_a_gated_only_snapshot_stay_public(archive: Archive) -> None:
    set_policy(archive, "acme/private", "restricted", until=UNTIL, reason="personal data")
    m = _manifest(archive, "acme/private:v1")
    snap = archive.resolve("acme/private:v1")[1]
    config, tokenizer = _chunks(m, "config.json"), _chunks(m, "tokenizer.json")
    weights = _chunks(m, "model.safetensors")
    assert config and weights and not (config & weights)
    assert all(object_readable(archive, oid, None) for oid in config | tokenizer)
    assert object_readable(archive, m.snapshot_id.hex, None)
    (bundle,) = archive.signature_object_ids(snap)
    assert object_readable(archive, bundle, None)
    header = _chunks(m, "model.safetensors", "header")
    # norms, biases and position ids are the same in every tiny model: acme/pub holds them in public
    shared = _chunks(_manifest(archive, "acme/pub:v1"), "model.safetensors")
    assert object_readable(archive, sorted(weights & shared)[0], None)
    own = weights - shared
    assert own and not any(object_readable(archive, oid, None) for oid in own)
    assert (
        header <= weights
    )  # the whole weight file is withheld, its header too (its facts are in the catalog)
    assert all(object_readable(archive, oid, None, now=LAPSED) for oid in weights)  # the embargo lapsed


def test_an_object_no_snapshot_references_is_for_admins_only(archive: Archive) -> None:
    stored = archive.store.put(b"uploaded by a push that has not committed yet")
    oid = str(stored.id)
    admin = _token(archive, "admin", "root")
    assert not object_readable(archive, oid, None)
    assert not object_readable(archive, oid, _token(archive, "push", "pusher"))
    assert object_readable(archive, oid, admin)


def test_an_all_public_object_costs_two_queries(archive: Archive) -> None:
    set_policy(archive, "acme/private", "gated", reason="another model's policy costs nothing here")
    oid = sorted(_chunks(_manifest(archive, "acme/pub:v1"), "model.safetensors", "tensor"))[-1]
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(archive.catalog.engine, "before_cursor_execute", count)
    try:
        assert object_readable(archive, oid, None)
    finally:
        event.remove(archive.catalog.engine, "before_cursor_execute", count)
    assert len(statements) == 2, statements


def test_withheld_files_are_the_weights_by_kind_and_by_name() -> None:
    withheld = {
        ("model.safetensors", "safetensors"),
        ("q4.gguf", "gguf"),
        ("pytorch_model-00001-of-00002.bin", "blob"),
        ("ckpt/model.PT", "blob"),
        ("onnx/model.onnx", "blob"),
        ("tf_model.h5", "blob"),
        ("flax_model.msgpack", "blob"),
        ("variables/variables.data-00000-of-00001", "blob"),
        ("weights.npy", "blob"),
        ("variables/variables.index", "blob"),  # not on the public list (archive/weights.py): withheld
    }
    public = {
        ("config.json", "blob"),
        ("tokenizer.json", "blob"),
        ("tokenizer.model", "blob"),
        ("README.md", "blob"),
        ("model.safetensors.index.json", "blob"),
        ("generation_config.json", "blob"),
        ("merges.txt", "blob"),
    }
    assert all(access.is_withheld_file(p, k) for p, k in withheld)
    assert not any(access.is_withheld_file(p, k) for p, k in public)


def test_an_access_request_is_granted_or_denied_once_and_the_requester_sees_it(archive: Archive) -> None:
    erin = _token(archive, "read", "erin")
    set_policy(archive, "acme/secret", "gated", reason="licence")
    made = access.request_access(archive, "acme/secret", erin, "I study 2023 models")
    assert access.request_access(archive, "acme/secret", erin, "again") == made  # still pending: the same one
    assert [r.id for r in access.list_requests(archive)] == [made.id]
    decided = access.decide_request(archive, made.id, "grant", reason="academic use")
    assert (decided.status, decided.decided_by, decided.grant_id is not None) == ("granted", "curator", True)
    assert _readable(archive, "acme/secret", erin)
    assert access.list_requests(archive) == []
    assert [r.status for r in access.list_requests(archive, principal=erin)] == ["granted"]
    with pytest.raises(UsageError, match="already granted"):
        access.decide_request(archive, made.id, "deny", reason="changed my mind")
    set_policy(archive, "acme/private", "gated", reason="licence")
    again = access.request_access(archive, "acme/private", erin, "and this one")
    assert access.decide_request(archive, again.id, "deny", reason="no").status == "denied"
    with pytest.raises(UsageError, match="justification"):
        access.request_access(archive, "acme/secret", erin, " ")
    with pytest.raises(UsageError, match="token"):
        access.request_access(archive, "acme/secret", None, "anonymous")
    with pytest.raises(NotFoundError):
        access.decide_request(archive, 999, "grant", reason="x")


def test_only_a_model_with_something_gated_takes_access_requests(archive: Archive) -> None:
    """A grant opens gated weights only: a request for a public or a restricted model could only be "granted" and
    still refused, so it is refused itself, naming the level."""
    erin = _token(archive, "read", "erin")
    with pytest.raises(AccessNotRequestableError, match=r"acme/pub is public \(anyone may read"):
        access.request_access(archive, "acme/pub", erin, "please")
    set_policy(archive, "acme/private", "restricted", reason="admins only")
    with pytest.raises(AccessNotRequestableError, match=r"acme/private is restricted \(only admin tokens"):
        access.request_access(archive, "acme/private", erin, "please")
    assert access.list_requests(archive, all_requests=True) == []
    # a gated snapshot of a restricted model: its grant opens that snapshot, so it may be asked for
    set_policy(archive, "acme/private", "gated", snapshot="v1", reason="this release only")
    assert access.request_access(archive, "acme/private", erin, "the v1 release").status == "pending"


def test_a_grant_that_opens_nothing_is_recorded_and_says_so(archive: Archive) -> None:
    erin = _token(archive, "read", "erin")
    set_policy(archive, "acme/secret", "gated", reason="licence")
    made = access.request_access(archive, "acme/secret", erin, "I study 2023 models")
    assert access.grant(archive, "acme/secret", "erin", reason="licence accepted").note is None
    set_policy(archive, "acme/private", "restricted", reason="admins only")
    change = access.grant(archive, "acme/private", "erin", reason="ahead of gating it")
    assert change.note is not None and change.note.startswith(
        "recorded; has no effect while acme/private is restricted"
    )
    assert [g.subject for g in change.grants] == ["erin"] and not _readable(archive, "acme/private", erin)
    set_policy(archive, "acme/secret", "restricted", reason="takedown")  # after erin asked
    assert access.decide_request(archive, made.id, "grant", reason="ok").status == "granted"
    assert "no effect while acme/secret is restricted" in (access.grant_note(archive, "acme/secret") or "")
    set_policy(archive, "acme/private", "gated", reason="now gated")
    assert access.grant_note(archive, "acme/private") is None and _readable(archive, "acme/private", erin)


def test_object_ids_in_the_store_are_what_the_tests_guess(archive: Archive) -> None:
    """The fixture's premise: a guessed id is a real, stored object the store would hand out."""
    v2 = _manifest(archive, "acme/secret:v2")
    oid = sorted(_chunks(v2, "model.safetensors", "tensor"))[0]
    assert archive.store.has(ObjectId(oid))


def test_a_gated_override_of_a_withdrawn_snapshot_opens_nothing_to_grant(archive: Archive) -> None:
    """A public model whose one gated snapshot was withdrawn: its weights are gone, so a grant opens nothing and
    says so, and no one may ask for access to it."""
    from modelarc.archive.provenance.withdrawal import withdraw
    from modelarc.errors import AccessNotRequestableError

    frank = _token(archive, "read", "frank")
    set_policy(archive, "acme/private", "gated", snapshot="v1", reason="this release only")
    assert access.grant_note(archive, "acme/private") is None  # gated while the snapshot stands
    withdraw(archive, "acme/private:v1", "takedown")
    note = access.grant(archive, "acme/private", "frank", reason="too late").note
    assert note is not None and note.startswith("recorded; has no effect while acme/private is public"), note
    with pytest.raises(AccessNotRequestableError):
        access.request_access(archive, "acme/private", frank, "I study it")
