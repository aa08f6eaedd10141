"""`rebuild-catalog` replays two records of one attachment or one grant as one (docs/FORMAT.md "Catalog records"):
the second is refused, named, as a second record of one run is, and the rebuilt catalog holds what the lost one
held. A grant record for a subject that holds a live grant is refused as `access grant` refuses it; the same
manifest attached again later is a second attachment, as it is live. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model
from recordkit import catalog_session as _session
from recordkit import plant as _copy
from recordkit import rebuild as _rebuild
from recordkit import records as _records

ArchiveCli = Any  # tests/cli/conftest.py
_BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
DATA = {"version": 1, "datasets": [{"name": "logs", "version": "2", "records": 10, "role": "finetune"}]}


def _attachments(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    from modelarc.registry import history

    with _session(arc, monkeypatch) as s:
        return [(a.model, a.snapshot, a.object_id, a.at, a.actor) for a in history.attachment_facts(s)]


def _grants(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    from modelarc.registry import access as access_rows

    with _session(arc, monkeypatch) as s:
        return [
            (g.model, g.subject, g.reason, g.granted_at, g.revoked_at)
            for g in access_rows.grants(s, live_only=False)
        ]


def test_two_records_of_one_attachment_replay_as_one(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    (tmp_path / "data.json").write_text(json.dumps(DATA))
    arc("data", "attach", "r/g:v1", tmp_path / "data.json")
    arc("data", "attach", "r/g:v1", tmp_path / "data.json")  # the same manifest again: a second attachment
    before = _attachments(arc, monkeypatch)
    assert len(before) == 2
    first = _records(arc, "data")[0]
    second = _copy(arc, first, dt.timedelta(microseconds=1))

    report = _rebuild(arc, database_url)
    assert list(report["refused"]) == [second], report
    # the refusal names the record that replayed first, so a reader can tell which of the two to look at
    assert f"already replayed from the earlier record records/{first['name']}" in report["refused"][second]
    assert report["replayed"]["data"] == 2
    assert _attachments(arc, monkeypatch) == before


@pytest.mark.parametrize("subject", ["alice", "token:1"], ids=["token-name", "token-id"])
def test_two_records_of_one_grant_replay_as_one(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, subject: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("access", "set", "r/g", "gated", "--reason", "licence")
    arc("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "grant", "r/g", subject, "--reason", "co-author")
    [genuine] = _records(arc, "grant")
    second = _copy(arc, genuine, dt.timedelta(seconds=1))

    report = _rebuild(arc, database_url)
    assert list(report["refused"]) == [second], report
    assert f"already replayed from the earlier record records/{genuine['name']}" in report["refused"][second]
    [grant] = _grants(arc, monkeypatch)
    assert grant[:3] == ("r/g", subject, "co-author")


def test_a_grant_record_for_a_subject_holding_a_live_grant_is_refused(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("access", "set", "r/g", "gated", "--reason", "licence")
    arc("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "grant", "r/g", "alice", "--reason", "co-author")
    before = _grants(arc, monkeypatch)
    [genuine] = _records(arc, "grant")
    later = (dt.datetime.strptime(genuine["at"], _BODY_TIME) + dt.timedelta(seconds=1)).strftime(_BODY_TIME)
    second = _copy(arc, genuine, dt.timedelta(seconds=1), at=later, reason="planted")

    report = _rebuild(arc, database_url)
    assert list(report["refused"]) == [second], report
    assert "already holds a live grant" in report["refused"][second]
    assert f"by the earlier record records/{genuine['name']}" in report["refused"][second], report
    assert _grants(arc, monkeypatch) == before
