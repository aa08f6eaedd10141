"""`modelarc upgrade` checks every key record against the key's trust history in the catalog, not only the last one
(docs/FORMAT.md "Catalog records", "Older archives"): a key record sets the key's trust from its time on at a
rebuild, so one planted between a key's creation and now, whose trust no `key.trust`/`key.distrust` audit entry of
that time says, would refuse (or admit) the snapshots the key signs after it. It is reported as contradicting the
catalog, and the catalog's trust at that time is written to replay right after it; a genuine history of `keys
import`, `trust` and `distrust`, and the records upgrade itself writes, are reported never. On SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model
from recordkit import BODY_TIME, as_before_records, catalog_session, plant, rebuild, records

ArchiveCli = Any  # tests/cli/conftest.py


def _import_key(arc: ArchiveCli, tmp_path: Path) -> str:
    from modelarc.archive.signing import keys as keyring

    pem = tmp_path / "other.pem"
    pem.write_bytes(keyring.public_key_pem(keyring.generate_private_key()))
    fingerprint: str = arc.json("keys", "import", pem)["fingerprint"]
    return fingerprint


def _key_records(arc: ArchiveCli, fingerprint: str) -> list[dict[str, Any]]:
    return [r for r in records(arc, "key") if r["fingerprint"] == fingerprint]


def _at(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.strptime(record["at"], BODY_TIME)


def _plant_between(
    arc: ArchiveCli, before: dict[str, Any], after: dt.datetime, trusted: bool
) -> tuple[str, dt.datetime]:
    """A copy of key record ``before`` saying ``trusted``, dated and named half-way from it to ``after``: intact
    (its name the sha256 of its body), as anyone who can write the store could plant it."""
    half = (after - _at(before)) / 2
    at = _at(before) + half
    return plant(arc, before, later=half, at=at.strftime(BODY_TIME), trusted=trusted), at


def _said(upgraded: dict[str, Any], key: str) -> list[str]:
    return [line for line in upgraded["contradicted"] if line.startswith(key)]


def _move_out(arc: ArchiveCli, key: str, tmp_path: Path) -> None:
    (arc.home / "store" / key).rename(tmp_path / key.split("/")[-1])


def _clean(upgraded: dict[str, Any]) -> bool:
    return upgraded["contradicted"] == [] and upgraded["not_in_catalog"] == []


# ------------------------------------------------------------------------------------------------ planted records
def test_a_planted_distrust_between_a_keys_creation_and_now_is_reported(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    fingerprint = _import_key(arc, tmp_path)
    [created] = _key_records(arc, fingerprint)
    key, at = _plant_between(arc, created, dt.datetime.now(dt.UTC).replace(tzinfo=None), trusted=False)

    upgraded = arc.json("upgrade")
    [said] = _said(upgraded, key)
    assert fingerprint in said and at.strftime(BODY_TIME) in said and "distrusted" in said, said
    assert "audit log does not hold" in said
    assert len(upgraded["contradicted"]) == 1, upgraded
    again = arc.json("upgrade")  # idempotent, and still loud
    assert again["written"] == {} and again["contradicted"] == upgraded["contradicted"], again
    assert key in arc("upgrade").stdout  # and said at the terminal

    _move_out(arc, key, tmp_path)
    assert _clean(arc.json("upgrade"))


def test_a_planted_trust_while_the_key_was_distrusted_is_reported(arc: ArchiveCli, tmp_path: Path) -> None:
    fingerprint = _import_key(arc, tmp_path)
    arc("keys", "distrust", fingerprint)
    arc("keys", "trust", fingerprint)  # trusted again: the last record says what the key is now
    created, distrusted, trusted = _key_records(arc, fingerprint)
    assert [r["trusted"] for r in (created, distrusted, trusted)] == [True, False, True]
    key, at = _plant_between(arc, distrusted, _at(trusted), trusted=True)

    upgraded = arc.json("upgrade")
    [said] = _said(upgraded, key)
    assert fingerprint in said and at.strftime(BODY_TIME) in said and "is trusted from" in said, said
    assert "audit log does not hold" in said
    assert len(upgraded["contradicted"]) == 1, upgraded
    again = arc.json("upgrade")
    assert again["written"] == {} and again["contradicted"] == upgraded["contradicted"], again

    _move_out(arc, key, tmp_path)
    assert _clean(arc.json("upgrade"))


def test_a_key_record_dated_before_the_key_was_created_is_reported(arc: ArchiveCli, tmp_path: Path) -> None:
    fingerprint = _import_key(arc, tmp_path)
    [created] = _key_records(arc, fingerprint)
    earlier = _at(created) - dt.timedelta(days=1)
    key = plant(arc, created, later=-dt.timedelta(days=1), at=earlier.strftime(BODY_TIME))

    [said] = _said(arc.json("upgrade"), key)
    assert "before the catalog holds the key" in said, said


# ------------------------------------------------------------------------------------------------ genuine histories
def _genuine_history(arc: ArchiveCli, tmp_path: Path) -> str:
    fingerprint = _import_key(arc, tmp_path)
    arc("keys", "trust", fingerprint)  # of a trusted key: its record and audit entry change nothing
    arc("keys", "distrust", fingerprint)
    arc("keys", "trust", fingerprint)
    arc("keys", "distrust", fingerprint)
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    return fingerprint


def test_a_genuine_trust_history_upgraded_twice_reports_nothing(arc: ArchiveCli, tmp_path: Path) -> None:
    fingerprint = _genuine_history(arc, tmp_path)
    assert len(_key_records(arc, fingerprint)) == 5
    for _ in range(2):
        upgraded = arc.json("upgrade")
        assert upgraded["written"] == {} and _clean(upgraded), upgraded


def test_an_archive_made_before_records_upgraded_twice_reports_nothing(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    fingerprint = _genuine_history(arc, tmp_path)
    as_before_records(arc)
    first = arc.json("upgrade")
    # init's key; the other, trusted, then distrusted
    assert first["written"]["key"] == 3 and _clean(first), first
    again = arc.json("upgrade")
    assert again["written"] == {} and _clean(again), again
    assert [r["trusted"] for r in _key_records(arc, fingerprint)] == [True, False]


def test_a_rebuilt_catalog_upgraded_reports_nothing(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    # its audit log is the replay's: a record of `keys trust` of a trusted key replays without an audit entry
    _genuine_history(arc, tmp_path)
    report = rebuild(arc, database_url)
    assert report["ok"] and report["refused"] == {}, report
    for _ in range(2):
        upgraded = arc.json("upgrade")
        assert upgraded["written"] == {} and _clean(upgraded), upgraded


def test_the_trust_upgrade_records_at_its_own_time_is_not_reported_by_the_next_upgrade(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import delete

    from modelarc.registry.models import AuditEvent

    fingerprint = _import_key(arc, tmp_path)
    arc("keys", "distrust", fingerprint)
    as_before_records(arc)
    with catalog_session(arc, monkeypatch) as s:  # a log that does not say when the key was distrusted
        s.execute(delete(AuditEvent).where(AuditEvent.action == "key.distrust"))

    first = arc.json("upgrade")
    assert _clean(first), first
    created, distrusted = _key_records(arc, fingerprint)
    assert distrusted["trusted"] is False and _at(distrusted) > _at(created)  # from the upgrade's own time
    again = arc.json("upgrade")
    assert again["written"] == {} and _clean(again), again


# ------------------------------------------------------------------------------------------------ at a rebuild
def _signed_after_a_planted_distrust(arc: ArchiveCli, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """A snapshot signed by this home's own key, and a distrust of that key planted between the key's creation and
    the snapshot's push."""
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    shown: dict[str, Any] = arc.json("show", "acme/m:v1")
    [own] = [sig["key"] for sig in shown["signatures"]]
    [created] = _key_records(arc, own)
    [snapshot] = records(arc, "snapshot")
    key, _ = _plant_between(arc, created, _at(snapshot), trusted=False)
    return key, shown


def test_a_rebuild_keeps_a_snapshot_signed_after_a_reported_distrust_moved_out(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    key, shown = _signed_after_a_planted_distrust(arc, tmp_path)
    [said] = arc.json("upgrade")["contradicted"]
    reported = said.split(":")[0]  # what the operator reads off the report and moves out
    assert reported == key
    _move_out(arc, reported, tmp_path)

    report = rebuild(arc, database_url)
    assert report["ok"] and report["refused"] == {}, report
    assert arc.json("show", "acme/m:v1")["signatures"] == shown["signatures"]
    assert _clean(arc.json("upgrade"))


def test_the_record_upgrade_writes_after_a_planted_distrust_keeps_the_snapshot_at_a_rebuild(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    key, shown = _signed_after_a_planted_distrust(arc, tmp_path)
    upgraded = arc.json("upgrade")
    assert upgraded["written"] == {"key": 1} and _said(upgraded, key), upgraded

    report = rebuild(
        arc, database_url
    )  # the planted record left in place: the catalog's trust replays after it
    assert report["refused"] == {}, report
    assert arc.json("show", "acme/m:v1")["signatures"] == shown["signatures"]


def test_without_upgrade_a_planted_distrust_loses_the_snapshot_at_a_rebuild(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    # the harm the checks above prevent: the rebuild refuses the genuine snapshot signed after the planted record
    _signed_after_a_planted_distrust(arc, tmp_path)
    report = rebuild(arc, database_url)
    [why] = report["refused"].values()
    assert why.startswith("snapshot"), report
    assert arc("show", "acme/m:v1", ok=False).exit_code != 0
