"""`modelarc upgrade` counts a record as stating a fact of the catalog only when it says what the catalog says, for
every kind it writes (docs/FORMAT.md "Catalog records", "Older archives"): a record planted for the same key, tag
move, attachment, withdrawal, run, policy or grant, saying something else a rebuild would take on its word (a time,
reason, actor, trust, level), is reported (CONTRADICTED) and the catalog's own record is written to replay in its
stead, so that `rebuild-catalog` gives back what the catalog said. On SQLite and PostgreSQL.

Each test: the fact made live, the store taken back to before records, one record planted for the same fact, then
upgrade, upgrade again (writes nothing, still reports), and a rebuild from the records."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modelfactory import tiny_gpt2, tiny_tensors, write_model
from recordkit import as_before_records as _as_before_records
from recordkit import catalog_session as _session
from recordkit import plant as _plant
from recordkit import rebuild as _rebuild
from recordkit import records as _records

ArchiveCli = Any  # tests/cli/conftest.py
_BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _upgrade_reports(arc: ArchiveCli, planted: str, kind: str, written: int = 1) -> None:
    upgraded = arc.json("upgrade")
    assert upgraded["written"].get(kind) == written, upgraded
    [said] = [c for c in upgraded["contradicted"] if c.startswith(planted)]
    assert "contradicts the catalog" in said
    again = arc.json("upgrade")
    assert again["written"] == {} and again["contradicted"] == upgraded["contradicted"]


def _earlier(genuine: dict[str, Any]) -> str:
    return (dt.datetime.strptime(genuine["at"], _BODY_TIME) - dt.timedelta(days=3)).strftime(_BODY_TIME)


# ------------------------------------------------------------------------------------------------ withdraw
def _withdrawal(arc: ArchiveCli) -> tuple[Any, ...]:
    shown = arc.json("show", "r/g@" + arc.json("show", "r/g:v1")["snapshot"])
    [entry] = [e for e in arc.json("audit", "--action", "tombstone")]
    return shown["withdrawn"], entry["actor"], entry["target"], entry["at"]


@pytest.mark.parametrize(
    "change",
    [
        lambda g: {"reason": "planted: it leaked"},
        lambda g: {"actor": "mallory"},
        lambda g: {"at": _earlier(g)},
        lambda g: {"ref": "r/g:v0"},
    ],
    ids=["reason", "actor", "time", "ref"],
)
def test_a_planted_withdraw_record_that_says_otherwise_does_not_cover_the_withdrawal(
    arc: ArchiveCli, tmp_path: Path, database_url: str, change: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("rm", "r/g:v1", "--reason", "licence withdrawn")
    before = _withdrawal(arc)
    [genuine] = _records(arc, "withdraw")
    _as_before_records(arc)
    planted = _plant(arc, genuine, **change(genuine))

    _upgrade_reports(arc, planted, "withdraw")
    report = _rebuild(arc, database_url)
    # the catalog's record replays first; the planted one then finds the snapshot withdrawn and is refused
    assert list(report["refused"]) == [planted] and "already withdrawn" in report["refused"][planted], report
    assert _withdrawal(arc) == before


def test_a_withdraw_record_of_a_live_snapshot_is_reported(arc: ArchiveCli, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("push", write_model(tmp_path / "n", tiny_tensors(seed=5)), "r/g:v2")
    arc("rm", "r/g:v2", "--reason", "licence withdrawn")
    [genuine] = _records(arc, "withdraw")
    _as_before_records(arc)
    live = arc.json("show", "r/g:v1")["snapshot"]
    planted = _plant(arc, genuine, snapshot=live, ref="r/g:v1")

    upgraded = arc.json("upgrade")
    [said] = [c for c in upgraded["contradicted"] if c.startswith(planted)]
    assert "withdraws a snapshot the catalog holds live" in said
    assert planted in arc("upgrade").stdout


# ------------------------------------------------------------------------------------------------ key
def test_a_planted_key_record_that_distrusts_a_key_at_its_creation_does_not_cover_the_key(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    before = arc.json("show", "r/g:v1")
    keys = arc.json("keys", "list")
    [genuine] = _records(arc, "key")
    _as_before_records(arc)
    planted = _plant(arc, genuine, trusted=False)

    # two: the key's creation where it happened, and its trust again right after the planted record, which the
    # replay reaches later (by its name)
    _upgrade_reports(arc, planted, "key", written=2)
    report = _rebuild(arc, database_url)
    # distrusted from its creation, the key would verify no signature: the snapshot it signed would be refused
    assert report["ok"], report
    assert arc.json("show", "r/g:v1") == before
    assert arc.json("keys", "list") == keys


# ------------------------------------------------------------------------------------------------ tag
def _moves(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    from modelarc.registry import history

    with _session(arc, monkeypatch) as s:
        return [(m.model, m.tag, m.snapshot, m.at, m.actor) for m in history.tag_move_facts(s)]


def test_a_planted_tag_record_by_another_actor_does_not_cover_the_move(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("tag", "r/g:v1", "stable")
    before = _moves(arc, monkeypatch)
    [genuine] = _records(arc, "tag")
    _as_before_records(arc)
    planted = _plant(arc, genuine, actor="mallory")

    _upgrade_reports(arc, planted, "tag", written=2)  # and the push's move of v1
    report = _rebuild(arc, database_url)
    assert report["ok"], report
    assert _moves(arc, monkeypatch) == before


# ------------------------------------------------------------------------------------------------ data
def _attachments(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    from modelarc.registry import history

    with _session(arc, monkeypatch) as s:
        return [(a.model, a.snapshot, a.object_id, a.at, a.actor) for a in history.attachment_facts(s)]


def test_a_planted_data_record_by_another_actor_does_not_cover_the_attachment(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps(
            {"version": 1, "datasets": [{"name": "logs", "version": "2", "records": 10, "role": "finetune"}]}
        )
    )
    arc("data", "attach", "r/g:v1", data)
    before = _attachments(arc, monkeypatch)
    [genuine] = _records(arc, "data")
    _as_before_records(arc)
    planted = _plant(arc, genuine, actor="mallory")

    _upgrade_reports(arc, planted, "data")
    _rebuild(arc, database_url)
    assert _attachments(arc, monkeypatch)[0] == before[0]  # the catalog's own, first


# ------------------------------------------------------------------------------------------------ run
def test_a_planted_run_record_with_another_time_or_actor_does_not_cover_the_run(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", tiny_gpt2(tmp_path / "m"), "acme/gpt2:v1")
    arc("run", "acme/gpt2:v1", "--prompt", "the model", "--max-new-tokens", "2", "--record")
    runs = arc.json("runs")
    [genuine] = _records(arc, "run")
    _as_before_records(arc)
    planted = _plant(arc, genuine, actor="mallory", at=_earlier(genuine))

    _upgrade_reports(arc, planted, "run")
    report = _rebuild(arc, database_url)
    assert list(report["refused"]) == [planted] and "already replayed" in report["refused"][planted], report
    assert arc.json("runs") == runs


# ------------------------------------------------------------------------------------------------ access, grant
def test_a_planted_access_record_with_another_level_does_not_cover_the_policy(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("access", "set", "r/g", "restricted", "--reason", "takedown request")
    [genuine] = _records(arc, "access")
    _as_before_records(arc)
    planted = _plant(arc, genuine, level="public", reason="lifted")

    _upgrade_reports(arc, planted, "access")
    report = _rebuild(arc, database_url)
    assert report["ok"], report
    [row] = arc.json("access", "ls", "r/g")
    assert (row["policy"]["level"], row["policy"]["reason"]) == ("restricted", "takedown request")


def test_a_planted_grant_record_with_another_reason_does_not_cover_the_grant(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("access", "set", "r/g", "gated", "--reason", "licence")
    arc("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "grant", "r/g", "alice", "--reason", "co-author")
    [genuine] = _records(arc, "grant")
    _as_before_records(arc)
    planted = _plant(arc, genuine, reason="planted", actor="mallory")

    _upgrade_reports(arc, planted, "grant")
    _rebuild(arc, database_url)
    [row] = arc.json("access", "ls", "r/g")
    assert (row["grants"][0]["subject"], row["grants"][0]["reason"]) == ("alice", "co-author")


def test_two_models_holding_one_snapshot_each_withdrawn_agree_with_their_records(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    """The withdrawal's audit entry was looked up by snapshot alone: with x/a and x/b holding the same files, both
    withdrawn, x/a's record was judged against x/b's entry (its ref, its actor), so fsck reported it CONTRADICTED for
    good and upgrade wrote a false record of x/a's withdrawal under x/b's ref."""
    folder = write_model(tmp_path / "m")
    arc("push", folder, "x/a:v1")
    arc("push", folder, "x/b:v1")
    arc("rm", "x/a:v1", "--reason", "bad")
    arc.env["MODELARC_ACTOR"] = "someone-else"
    arc("rm", "x/b:v1", "--reason", "gone")
    assert arc.json("fsck")["ok"]
    upgraded = arc.json("upgrade")
    assert upgraded["written"] == {} and upgraded["contradicted"] == []
    withdrawals = _records(arc, "withdraw")
    assert sorted((r["model"], r["ref"]) for r in withdrawals) == [("x/a", "x/a:v1"), ("x/b", "x/b:v1")]
