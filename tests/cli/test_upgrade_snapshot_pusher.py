"""`modelarc upgrade` compares who a snapshot record says pushed the snapshot, as it compares the actor of every other
kind (docs/FORMAT.md "Catalog records", "Older archives"): a planted record dated at the snapshot's creation that
names another actor or pusher does not cover the snapshot, is reported (CONTRADICTED), and the catalog's record is
written to replay first, so `rebuild-catalog` says who really pushed it. A re-push's record (dated after the
creation, by another pusher) is no contradiction. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import write_model
from recordkit import as_before_records as _as_before_records
from recordkit import plant as _plant
from recordkit import records as _records

ArchiveCli = Any  # tests/cli/conftest.py


def _creation(arc: ArchiveCli) -> tuple[Any, ...]:
    """Who the audit log says created the snapshot, and when."""
    [entry] = [e for e in arc.json("audit", "--action", "push") if e["details"].get("new_snapshot")]
    return entry["actor"], entry["at"]  # (its target: the tag it moved, which the catalog keeps apart)


@pytest.mark.parametrize(
    "change",
    [{"actor": "mallory"}, {"pushed_by": "mallory"}, {"actor": "mallory", "pushed_by": "mallory"}],
    ids=["actor", "pushed_by", "both"],
)
def test_a_planted_snapshot_record_by_another_pusher_does_not_cover_the_snapshot(
    arc: ArchiveCli, tmp_path: Path, database_url: str, change: dict[str, Any]
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    shown = arc.json("show", "r/g:v1")
    created = _creation(arc)
    [genuine] = _records(arc, "snapshot")
    assert genuine["actor"] == genuine["pushed_by"] != "mallory"
    _as_before_records(arc)
    planted = _plant(arc, genuine, **change)

    upgraded = arc.json("upgrade")
    assert upgraded["written"].get("snapshot") == 1, upgraded
    [said] = [c for c in upgraded["contradicted"] if c.startswith(planted)]
    assert "contradicts the catalog" in said and all(name in said for name in change), said
    again = arc.json("upgrade")
    assert again["written"] == {} and again["contradicted"] == upgraded["contradicted"]
    assert planted in arc("upgrade").stdout

    drop_catalog(database_url)
    arc("rebuild-catalog", "--json", ok=False)
    assert arc.json("show", "r/g:v1")["pushed_by"] == shown["pushed_by"] == genuine["pushed_by"]
    # the snapshot is created from the catalog's record: by the real pusher (the planted one replays after it, as
    # a re-push, until it is moved out)
    assert _creation(arc) == created


def test_a_repush_by_another_pusher_is_no_contradiction(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    model = write_model(tmp_path / "m")
    arc("push", model, "r/g:v1")
    arc.env["MODELARC_ACTOR"] = "bob"
    arc("push", model, "r/g:v2")  # a re-push: its record is dated later and names bob
    records = _records(arc, "snapshot")
    assert [r["actor"] for r in records][1] == "bob" != records[0]["actor"]

    upgraded = arc.json("upgrade")
    assert upgraded["written"] == {} and upgraded["contradicted"] == [], upgraded
    # an archive upgraded late, whose first snapshot record is the re-push: written before it, nothing reported
    (arc.home / "store" / "records" / records[0]["name"]).unlink()
    upgraded = arc.json("upgrade")
    assert upgraded["written"] == {"snapshot": 1, "tag": 1} and upgraded["contradicted"] == [], upgraded
