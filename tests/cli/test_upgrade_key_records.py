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
from recordkit import BODY_TIME, NAME_TIME, as_before_records, catalog_session, plant, rebuild, records

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
    assert fingerprint in said and at.strftime(BODY_TIME) in said and "is trusted at" in said, said
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


# ------------------------------------------------------------------------------- where a record replays (review)
# A rebuild replays key records in the order of their names, not of their ``at``: whoever plants one chooses both.
def _named(record: dict[str, Any]) -> dt.datetime:
    return dt.datetime.strptime(record["name"].split("-")[0], NAME_TIME)


def _own_key_signed_then_distrusted(arc: ArchiveCli, tmp_path: Path) -> tuple[dict[str, Any], ...]:
    """The home's key signs a snapshot, then is distrusted: (its creation record, its distrust record, the
    snapshot's record)."""
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    [own] = [sig["key"] for sig in arc.json("show", "acme/m:v1")["signatures"]]
    arc("keys", "distrust", own)
    created, distrusted = _key_records(arc, own)
    [snapshot] = records(arc, "snapshot")
    return created, distrusted, snapshot


@pytest.mark.parametrize("trusted", [False, True])
def test_a_key_record_named_before_a_snapshot_but_dated_after_a_distrust_is_reported(
    arc: ArchiveCli, tmp_path: Path, database_url: str, trusted: bool
) -> None:
    """Named half-way from the key's creation to the snapshot it signs (so it replays there), dated after the key's
    genuine distrust. Saying distrusted, it agrees with the log at its ``at`` and would lose the snapshot; saying
    trusted, the record written after it must say the trust at its place in the replay (trusted), not at its
    ``at`` (distrusted), or that record would lose the snapshot in its stead."""
    created, distrusted, snapshot = _own_key_signed_then_distrusted(arc, tmp_path)
    at = _at(distrusted) + dt.timedelta(seconds=1)
    key = plant(
        arc, created, later=(_named(snapshot) - _named(created)) / 2, at=at.strftime(BODY_TIME), trusted=trusted
    )

    upgraded = arc.json("upgrade")
    assert _said(upgraded, key), upgraded
    _move_out(arc, key, tmp_path)  # as the report says
    assert _clean(arc.json("upgrade"))
    assert rebuild(arc, database_url)["refused"] == {}


def test_a_key_record_dated_before_the_key_but_named_after_it_is_met_by_the_catalogs_trust(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    """Left in place, a distrust dated before the key existed and named before the snapshot it signs: the record
    upgrade writes after it keeps the snapshot at a rebuild."""
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    [own] = [sig["key"] for sig in arc.json("show", "acme/m:v1")["signatures"]]
    [created] = _key_records(arc, own)
    [snapshot] = records(arc, "snapshot")
    earlier = _at(created) - dt.timedelta(days=1)
    key = plant(
        arc, created, later=(_named(snapshot) - _named(created)) / 2, at=earlier.strftime(BODY_TIME), trusted=False
    )

    [said] = _said(arc.json("upgrade"), key)
    assert "before the catalog holds the key" in said, said
    assert rebuild(arc, database_url)["refused"] == {}


def test_upgrades_own_record_of_an_unlogged_distrust_is_not_reported_after_a_later_trust(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit log without the key's distrust: upgrade records the distrust at its own time and logs it there, so
    a later genuine `keys trust` does not make the next upgrade take that record for a planted one."""
    from sqlalchemy import delete

    from modelarc.registry.models import AuditEvent

    fingerprint = _import_key(arc, tmp_path)
    arc("keys", "distrust", fingerprint)
    as_before_records(arc)
    with catalog_session(arc, monkeypatch) as s:
        s.execute(delete(AuditEvent).where(AuditEvent.action == "key.distrust"))
    assert _clean(arc.json("upgrade"))
    arc("keys", "trust", fingerprint)
    again = arc.json("upgrade")
    assert again["written"] == {} and _clean(again), again


def test_the_record_after_a_planted_one_says_what_a_genuine_record_of_the_same_microsecond_says(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    """A planted distrust named a microsecond before the genuine distrust and dated just before its ``at``: the
    catalog's record would go in the genuine one's microsecond, where the two replay in the order of their
    sha256; it must say what the genuine one says (or not be written)."""
    fingerprint = _import_key(arc, tmp_path)
    arc("keys", "distrust", fingerprint)
    created, genuine = _key_records(arc, fingerprint)
    for shift in range(1, 4):
        at = _at(genuine) - dt.timedelta(microseconds=shift)
        later = _named(genuine) - _named(created) - dt.timedelta(microseconds=shift)
        plant(arc, created, later=later, at=at.strftime(BODY_TIME), trusted=False)
    arc.json("upgrade")
    same_microsecond = [r for r in _key_records(arc, fingerprint) if _named(r) == _named(genuine)]
    assert {r["trusted"] for r in same_microsecond} == {False}, same_microsecond


@pytest.mark.parametrize(
    "change", [{"trusted": "no"}, {"trusted": None}, {"trusted": 0}, {"fingerprint": ["x"]}, {"fingerprint": 5}]
)
def test_a_malformed_key_record_gets_no_traceback(arc: ArchiveCli, tmp_path: Path, change: dict[str, Any]) -> None:
    fingerprint = _import_key(arc, tmp_path)
    [created] = _key_records(arc, fingerprint)
    later = dt.timedelta(seconds=1)
    plant(arc, created, later=later, at=(_at(created) + later).strftime(BODY_TIME), **change)
    result = arc("upgrade", ok=False)
    assert "Traceback" not in result.output and result.exit_code in (0, 1, 2, 5), result.output


# ------------------------------------------------------------------------------------ second review (e653a54)
def _own_key_signed(arc: ArchiveCli, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The home's key signs a snapshot: (the key's creation record, the snapshot's record)."""
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    [own] = [sig["key"] for sig in arc.json("show", "acme/m:v1")["signatures"]]
    [created] = _key_records(arc, own)
    [snapshot] = records(arc, "snapshot")
    return created, snapshot


@pytest.mark.parametrize("trusted", [0, None, ""])
def test_a_planted_falsy_trust_is_read_as_a_rebuild_reads_it(
    arc: ArchiveCli, tmp_path: Path, database_url: str, trusted: Any
) -> None:
    """A rebuild takes ``bool()`` of a record's ``trusted``: 0, null and "" distrust the key there."""
    created, snapshot = _own_key_signed(arc, tmp_path)
    gap = _named(snapshot) - _named(created)
    key = plant(arc, created, later=gap / 2, at=(_at(created) + gap / 2).strftime(BODY_TIME), trusted=trusted)
    assert _said(arc.json("upgrade"), key)
    assert rebuild(arc, database_url)["refused"] == {}  # left in place: the catalog's trust replays after it


def test_a_planted_distrust_in_a_snapshot_records_microsecond_must_be_moved_out(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    """Named in the very microsecond of the snapshot's record, the planted key record replays before it (keys go
    first) and the catalog's record, a microsecond later, after it: the report says it must be moved out."""
    created, snapshot = _own_key_signed(arc, tmp_path)
    gap = _named(snapshot) - _named(created)
    key = plant(arc, created, later=gap, at=(_at(created) + gap / 2).strftime(BODY_TIME), trusted=False)
    [said] = _said(arc.json("upgrade"), key)
    assert "a snapshot record of the same microsecond" in said and "move it out before any rebuild" in said, said
    _move_out(arc, key, tmp_path)
    assert rebuild(arc, database_url)["refused"] == {}


def test_a_record_a_rebuild_would_refuse_does_not_restate_the_trust(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    """A planted distrust followed a microsecond later by a planted 'trust' carrying another key's PEM (which a
    rebuild refuses): the catalog's record is still written after the distrust."""
    from modelarc.archive.signing import keys as keyring

    created, snapshot = _own_key_signed(arc, tmp_path)
    gap = _named(snapshot) - _named(created)
    at = (_at(created) + gap / 2).strftime(BODY_TIME)
    plant(arc, created, later=gap / 2, at=at, trusted=False)
    other = keyring.public_key_pem(keyring.generate_private_key()).decode()
    refused_later = plant(
        arc, created, later=gap / 2 + dt.timedelta(microseconds=1), at=at, trusted=True, public_pem=other
    )
    assert arc.json("upgrade")["written"].get("key") == 1
    assert list(rebuild(arc, database_url)["refused"]) == [refused_later]  # the snapshot is kept


def test_the_keys_creation_is_written_where_it_happened_not_before_a_planted_copy(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    """An archive without records holding a copy of a key's creation record planted a second earlier, with
    another label: once it is moved out as reported, upgrade's own creation record is not reported."""
    fingerprint = _import_key(arc, tmp_path)
    [created] = _key_records(arc, fingerprint)
    as_before_records(arc)
    key = plant(arc, created, later=dt.timedelta(seconds=-1), label="evil")
    assert _said(arc.json("upgrade"), key)
    _move_out(arc, key, tmp_path)
    again = arc.json("upgrade")
    assert again["written"] == {} and _clean(again), again
