"""`rebuild-catalog` replays two records of one attachment or one grant as one (docs/FORMAT.md "Catalog records"):
the second is refused, named, as a second record of one run is, and the rebuilt catalog holds what the lost one
held. A grant record for a subject that holds a live grant is refused as `access grant` refuses it; the same
manifest attached again later is a second attachment, as it is live. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import write_model

from modelarc.archive.repository import Archive

ArchiveCli = Any  # tests/cli/conftest.py
_NAME_TIME = "%Y%m%dT%H%M%S%fZ"
_BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
DATA = {"version": 1, "datasets": [{"name": "logs", "version": "2", "records": 10, "role": "finetune"}]}


def _records(arc: ArchiveCli, kind: str) -> list[dict[str, Any]]:
    paths = sorted((arc.home / "store" / "records").glob("*.json"))
    bodies = [dict(json.loads(p.read_bytes()), name=p.name) for p in paths]
    return [b for b in bodies if b["kind"] == kind]


def _copy(arc: ArchiveCli, genuine: dict[str, Any], later: dt.timedelta, **change: Any) -> str:
    """A copy of the genuine record with ``change``, named ``later`` than it (a mirror's copy, a planted one)."""
    body = {k: v for k, v in genuine.items() if k != "name"}
    body.update(change)
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    written = dt.datetime.strptime(genuine["name"].split("-")[0], _NAME_TIME) + later
    name = f"{written.strftime(_NAME_TIME)}-{hashlib.sha256(data).hexdigest()}.json"
    (arc.home / "store" / "records" / name).write_bytes(data)
    return f"records/{name}"


@contextmanager
def _session(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive, archive.catalog.session() as s:
            yield s


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


def _rebuild(arc: ArchiveCli, database_url: str) -> dict[str, Any]:
    drop_catalog(database_url)
    result = arc("rebuild-catalog", "--json", ok=False)
    assert "Traceback" not in result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


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
    assert "already replayed from an earlier record" in report["refused"][second]
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
    assert "already replayed from an earlier record" in report["refused"][second]
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
    assert _grants(arc, monkeypatch) == before
