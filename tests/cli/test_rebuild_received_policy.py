"""A rebuilt catalog keeps what made a received snapshot's embargo lapse to its model's policy (the access record's
``received``), on SQLite and PostgreSQL: a rebuild must not turn it back into one that lapses to public."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from modelfactory import write_model
from recordkit import catalog_session, rebuild

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
