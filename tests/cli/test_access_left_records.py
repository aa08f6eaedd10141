"""`access grant` and `access revoke` run again after a kill between their record and their commit complete the change
the left record states (archive/left_records.py), as `rm` does, instead of writing a second record.

Before: a killed grant run again wrote a second grant record dated later, and `rebuild-catalog` refused it (the
subject already held the live grant the first record replayed): exit 5, the rebuild not bringing the catalog back;
a killed revoke run again left `fsck` warning of the first revocation for good. The interrupted states are made as
tests/cli/test_fsck_records.py makes them: the command's own steps in its transaction, which then rolls back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import write_model
from recordkit import records as _records

from modelarc.archive.access import PolicyWanted, apply_grant, apply_policies, apply_policy, apply_revoke
from modelarc.archive.left_records import attempt_key, start_attempt
from modelarc.archive.records import catalog_time, write_record
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import Principal
from modelarc.registry.catalog_settings import get_setting

ArchiveCli = Any  # tests/cli/conftest.py


def _interrupted(
    arc: ArchiveCli,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
    *,
    reason: str = "co-author",
    actor: str = "me",
    started: bool = True,
) -> None:
    """`modelarc access ACTION acme/llm alice --reason REASON` stopped between writing its record and its commit
    (archive/access.py ``grant``/``revoke``: the same steps, its note that it started committed first unless
    ``started`` is False: a record planted with no run)."""
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            if started:
                start_attempt(archive, attempt_key(action, "acme/llm", "alice"), fallback=catalog_time())
            try:
                with archive.catalog.session() as s:
                    at = catalog_time()
                    apply = apply_grant if action == "grant" else apply_revoke
                    apply(s, "acme/llm", "alice", reason, actor=actor, at=at)
                    s.flush()
                    write_record(archive.store.backend, s, "grant", at=at, actor=actor, model="acme/llm",
                                 subject="alice", action=action, reason=reason, request=None)  # fmt: skip
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                pass


@pytest.fixture
def gated(arc: ArchiveCli, tmp_path: Path) -> ArchiveCli:
    arc("push", write_model(tmp_path / "m"), "acme/llm:v1")
    arc.json("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "set", "acme/llm", "gated", "--reason", "embargo")
    arc.env["MODELARC_ACTOR"] = "me"
    return arc


def _grants(arc: ArchiveCli) -> list[dict[str, Any]]:
    return [r for r in _records(arc, "grant") if r["subject"] == "alice"]


@pytest.mark.parametrize("action", ["grant", "revoke"])
def test_run_again_after_a_kill_completes_the_left_record(
    gated: ArchiveCli, monkeypatch: pytest.MonkeyPatch, database_url: str, action: str
) -> None:
    arc = gated
    if action == "revoke":
        arc("access", "grant", "acme/llm", "alice", "--reason", "co-author")
    _interrupted(arc, monkeypatch, action, reason="the reason")
    [left] = [r for r in _grants(arc) if r["action"] == action]
    checked = arc.json("fsck")
    assert checked["records_not_in_catalog"], checked  # the state the re-run starts from

    out = arc("access", action, "acme/llm", "alice", "--reason", "the reason")
    what = "grant" if action == "grant" else "revocation"
    said = f"completed the {what} an earlier `access {action}` stopped before its commit: its record records/"
    assert said + left["name"] in out.stdout.replace("\n", " "), out.stdout
    assert [r["name"] for r in _grants(arc) if r["action"] == action] == [left["name"]]  # no second record
    checked = arc.json("fsck")
    assert checked["ok"] and checked["records_not_in_catalog"] == [] and checked["records_contradicted"] == []
    [row] = arc.json("access", "ls", "acme/llm", "--history")
    [grant] = [g for g in row["grants"] if g["subject"] == "alice"]
    stamp = grant["granted_at"] if action == "grant" else grant["revoked_at"]
    assert stamp[:19] == left["at"][:19]  # the left record's time
    before = _without_ids(arc.json("access", "ls", "--history"))

    drop_catalog(database_url)  # and the rebuild brings this catalog back, refusing nothing
    report = arc.json("rebuild-catalog")
    assert report["ok"], report
    assert _without_ids(arc.json("access", "ls", "--history")) == before


def _without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Row ids are the catalog's own (PostgreSQL spends a sequence value on the killed run's insert)."""
    for row in rows:
        for g in row["grants"]:
            g.pop("id")
    return rows


@pytest.mark.parametrize("differs", ["reason", "actor", "no run started"])
def test_run_again_does_not_take_a_left_record_that_says_otherwise(
    gated: ArchiveCli, monkeypatch: pytest.MonkeyPatch, differs: str
) -> None:
    """A left grant record that is not exactly this grant (another reason or actor, or planted with no run: anyone
    who can write the store can write one) does not choose what the catalog records: the re-run writes its own
    record and, where a run had started, warns of the left one."""
    arc = gated
    stated: dict[str, Any] = {
        "reason": {"reason": "something else"},
        "actor": {"actor": "someone-else"},
        "no run started": {"started": False},
    }[differs]
    _interrupted(arc, monkeypatch, "grant", **{"reason": "co-author", **stated})
    [left] = _grants(arc)

    out = arc("access", "grant", "acme/llm", "alice", "--reason", "co-author")
    assert "completed the grant" not in out.stdout
    warned = f"warning: records/{left['name']}, left by an earlier `access grant` of alice on acme/llm" in out.stderr
    assert warned == (differs != "no run started"), out.stderr
    assert len(_grants(arc)) == 2
    [row] = arc.json("access", "ls", "acme/llm")
    assert [(g["subject"], g["reason"]) for g in row["grants"]] == [("alice", "co-author")]


def test_a_refused_grant_leaves_no_note_and_a_completed_one_clears_it(
    gated: ArchiveCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note that a run started is written only once the grant is allowed, and goes with the commit: no later
    run looks for records."""
    arc = gated
    arc("access", "grant", "acme/llm", "alice", "--reason", "co-author")
    refused = arc("access", "grant", "acme/llm", "alice", "--reason", "again", ok=False)
    assert refused.exit_code != 0 and "already holds a live grant" in refused.stderr
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive, archive.catalog.session() as s:
        assert get_setting(s, attempt_key("grant", "acme/llm", "alice")) is None


def _interrupted_set(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, *, reason: str, started: bool = True) -> None:
    """`modelarc access set acme/llm restricted --until 2099-01-01 --reason REASON` stopped between writing its
    record and its commit (archive/access.py ``change_policy``: the same steps)."""
    until = dt.date(2099, 1, 1)
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            if started:
                start_attempt(archive, attempt_key("access", "acme/llm", ""), fallback=catalog_time())
            try:
                with archive.catalog.session() as s:
                    at = catalog_time()
                    apply_policy(s, "acme/llm", None, "restricted", until, reason, actor="me", at=at)
                    s.flush()
                    write_record(archive.store.backend, s, "access", at=at, actor="me", model="acme/llm",
                                 snapshot=None, level="restricted", until=until.isoformat(), reason=reason)  # fmt: skip
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                pass


@pytest.mark.parametrize("same", [True, False])
def test_access_set_run_again_completes_the_policy_its_left_record_states(
    gated: ArchiveCli, monkeypatch: pytest.MonkeyPatch, database_url: str, same: bool
) -> None:
    arc = gated
    _interrupted_set(arc, monkeypatch, reason="takedown" if same else "another reason")
    [left] = [r for r in _records(arc, "access") if r["level"] == "restricted"]
    assert arc.json("fsck")["records_not_in_catalog"]

    out = arc("access", "set", "acme/llm", "restricted", "--until", "2099-01-01", "--reason", "takedown")
    restricted = [r["name"] for r in _records(arc, "access") if r["level"] == "restricted"]
    if not same:
        assert len(restricted) == 2 and f"warning: records/{left['name']}" in out.stderr, out.stderr
        return
    said = "completed the policy change an earlier `access set` stopped before its commit: its record records/"
    assert said + left["name"] in out.stdout.replace("\n", " "), out.stdout
    assert restricted == [left["name"]]
    checked = arc.json("fsck")
    assert checked["ok"] and checked["records_not_in_catalog"] == [] and checked["records_contradicted"] == []
    [row] = arc.json("access", "ls", "acme/llm")
    assert row["policy"]["level"] == "restricted" and row["policy"]["set_at"][:19] == left["at"][:19]
    before = arc.json("access", "ls", "--history")

    drop_catalog(database_url)
    report = arc.json("rebuild-catalog")
    assert report["ok"], report
    assert arc.json("access", "ls", "--history") == before


def test_a_left_record_a_later_committed_change_followed_is_not_completed(
    gated: ArchiveCli, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """A mirror's policy sync (PUT /v1/access: no note of its own) made the model public after the killed `access
    set`; completing the older record would have dated this change before that one: the catalog said restricted
    (its newest row), a rebuild, replaying in name order, public. The re-run writes its own record, after both."""
    arc = gated
    _interrupted_set(arc, monkeypatch, reason="takedown")
    [left] = [r for r in _records(arc, "access") if r["level"] == "restricted"]
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            admin = Principal(1, "root", "admin")
            apply_policies(archive, "acme/llm", [PolicyWanted(None, "public", "opened")], admin, actor="sync")

    out = arc("access", "set", "acme/llm", "restricted", "--until", "2099-01-01", "--reason", "takedown")
    assert "completed the" not in out.stdout and f"warning: records/{left['name']}" in out.stderr, out.output
    assert arc.json("access", "ls", "acme/llm")[0]["policy"]["level"] == "restricted"
    drop_catalog(database_url)
    arc.json("rebuild-catalog")  # the left record is replayed too, before the sync's and this run's
    assert arc.json("access", "ls", "acme/llm")[0]["policy"]["level"] == "restricted"
