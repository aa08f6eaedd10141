"""A rebuilt catalog keeps what made a received snapshot's embargo lapse to its model's policy (the access record's
``received``), on SQLite and PostgreSQL: a rebuild must not turn it back into one that lapses to public."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from modelfactory import write_model
from recordkit import catalog_session, plant, rebuild, records

from modelarc.archive.access import read_decision, receive_policy
from modelarc.archive.repository import Archive
from modelarc.registry import queries as q
from modelarc.registry.refs import parse_ref

if TYPE_CHECKING:
    from conftest import ArchiveCli


def _level_later(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, later: dt.datetime) -> str:
    with catalog_session(arc, monkeypatch) as s:
        return read_decision(s, "acme/g", "v1", None, now=later).policy.level


def test_a_rebuild_keeps_a_received_embargo_lapsing_to_the_models_policy(
    arc: ArchiveCli, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    arc("push", str(write_model(tmp_path / "m")), "acme/g:v1")
    arc("access", "set", "acme/g", "gated", "--reason", "licence")
    until = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    offered = {"level": "restricted", "until": until.isoformat(), "reason": "held back"}
    with monkeypatch.context() as m:  # as a commit of a received snapshot applies it
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive, archive.catalog.session() as s:
            snap = q.resolve_snapshot(s, parse_ref("acme/g:v1"))
            assert receive_policy(archive, s, snap, offered, actor="token:7:peer") is not None
    later = dt.datetime.combine(until, dt.time())
    assert _level_later(arc, monkeypatch, later) == "gated"
    report = rebuild(arc, database_url)
    assert not report.get("refused"), report
    assert _level_later(arc, monkeypatch, later - dt.timedelta(seconds=1)) == "restricted"
    assert _level_later(arc, monkeypatch, later) == "gated"


def _receive_embargo(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dt.date:
    arc("push", str(write_model(tmp_path / "m")), "acme/g:v1")
    arc("access", "set", "acme/g", "gated", "--reason", "licence")
    until = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    offered = {"level": "restricted", "until": until.isoformat(), "reason": "held back"}
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive, archive.catalog.session() as s:
            snap = q.resolve_snapshot(s, parse_ref("acme/g:v1"))
            assert receive_policy(archive, s, snap, offered, actor="token:7:peer") is not None
    return until


def test_a_received_embargo_is_recorded_as_a_version_2_access_record(
    arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`received` changes what `until` means, so a version 1 reader (which would lapse the embargo to public) must
    refuse the record; the model's own policy stays version 1, which such a reader still reads right."""
    _receive_embargo(arc, monkeypatch, tmp_path)
    model_policy, received = records(arc, "access")
    assert (model_policy["version"], "received" in model_policy) == (1, False)
    assert (received["version"], received["received"]) == (2, True)


def test_a_version_1_received_embargo_record_from_the_last_release_rebuilds_the_same(
    arc: ArchiveCli, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    until = _receive_embargo(arc, monkeypatch, tmp_path)
    genuine = records(arc, "access")[-1]
    (arc.home / "store" / "records" / genuine["name"]).unlink()
    plant(arc, genuine, version=1)  # as the release before version 2 wrote it
    assert records(arc, "access")[-1]["version"] == 1
    report = rebuild(arc, database_url)
    assert not report.get("refused"), report
    later = dt.datetime.combine(until, dt.time())
    assert _level_later(arc, monkeypatch, later - dt.timedelta(seconds=1)) == "restricted"
    assert _level_later(arc, monkeypatch, later) == "gated"
