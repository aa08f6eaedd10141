"""`fsck` names the store's catalog records that a rebuild would replay to another catalog, as `upgrade` does (the
same code: archive/upgrade.py ``record_findings``), without writing anything.

A command killed between writing its record (store/records/) and its commit leaves a record of a change the catalog
lacks. `upgrade` named it, but `fsck` (even --read-data) said ok. Now a record of a change the catalog lacks is a
warning (exit 0: an interrupted command's leftover is no damage); a record that contradicts what the catalog holds
(a withdrawal of a snapshot it holds live, another time or reason) fails fsck with exit 5: a rebuild would not bring
this catalog back. The interrupted states are made as tests/cli/test_upgrade_not_in_catalog.py makes them: the
command's own steps in its transaction, which then rolls back."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import tiny_tensors, write_model
from recordkit import records as _records
from recordkit import signal_on_start

from modelarc.archive.left_records import attempt_key, start_attempt
from modelarc.archive.provenance.withdrawal import _mark_started, apply_withdrawal, released_objects
from modelarc.archive.records import catalog_time, write_record
from modelarc.archive.repository import Archive, apply_tag
from modelarc.registry.refs import parse_ref

ArchiveCli = Any  # tests/cli/conftest.py


def _all_records(arc: ArchiveCli) -> set[str]:
    return {p.name for p in (arc.home / "store" / "records").glob("*")}


def _interrupted_tag(
    arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, *, started: bool = False, actor: str = "tester"
) -> None:
    """`modelarc tag r/g:v1 stable` stopped between writing its record and its commit; with ``started``, after its
    note that it started (archive/repository.py ``tag_move``), without it a record planted with no run."""
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            if started:
                start_attempt(archive, attempt_key("tag", "r/g", "stable"), fallback=catalog_time())
            try:
                with archive.catalog.session() as s:
                    at = catalog_time()
                    moved = apply_tag(s, parse_ref("r/g:v1"), "stable", actor, at)
                    write_record(archive.store.backend, s, "tag", at=at, actor=actor, model="r/g",
                                 tag="stable", snapshot=moved.snapshot, previous=moved.previous)  # fmt: skip
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                pass


def _interrupted_rm(
    arc: ArchiveCli,
    monkeypatch: pytest.MonkeyPatch,
    *,
    actor: str = "tester",
    reason: str = "licence",
    at: dt.datetime | None = None,
    written: dt.datetime | None = None,
    ref_text: str | None = None,
    started: bool = True,
) -> None:
    """`modelarc rm r/g:v1` stopped between writing its withdraw record and its commit (archive/provenance/
    withdrawal.py ``withdraw``: the same steps, its note that it started committed first unless ``started`` is
    False: a record planted with no rm run). ``at``, ``written`` and ``ref_text`` change what the record says."""
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            ref, snap = archive.resolve("r/g:v1")
            manifest = archive.manifest(snap)
            if started:
                _mark_started(archive, snap)
            try:
                with archive.catalog.session() as s:
                    at = at or catalog_time()
                    released = released_objects(s, snap, manifest)
                    apply_withdrawal(s, snap, released, reason, actor=actor, target=str(ref), at=at)
                    s.flush()
                    write_record(archive.store.backend, s, "withdraw", at=at, actor=actor, model=snap.model,
                                 snapshot=snap.digest, ref=ref_text or str(ref), reason=reason,
                                 written=written)  # fmt: skip
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                pass


def _started_notes(arc: ArchiveCli) -> list[str]:
    """The catalog's notes of an rm that started and has not committed (``catalog_settings`` keys ``rm:<hex>``)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(arc.env["MODELARC_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT key FROM catalog_settings WHERE key LIKE 'rm:%'")).scalars())
    finally:
        engine.dispose()


@pytest.mark.parametrize("read_data", [False, True])
def test_fsck_warns_of_the_record_an_interrupted_command_left(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_data: bool
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    _interrupted_tag(arc, monkeypatch)
    [record] = [r for r in _records(arc, "tag") if r["tag"] == "stable"]
    flags = ["--read-data"] if read_data else []

    before = _all_records(arc)
    checked = arc.json("fsck", *flags)
    assert _all_records(arc) == before  # fsck writes no record (upgrade would)
    assert checked["ok"] and checked["records_contradicted"] == [], checked
    [said] = checked["records_not_in_catalog"]
    assert said == arc.json("upgrade")["not_in_catalog"][0]  # upgrade's own words
    assert said.startswith(f"records/{record['name']}: tag r/g:stable -> ")
    assert "move it out of records/" in said
    shown = arc("fsck", *flags)  # exit 0: no damage, but said
    assert f"warning: record not in the catalog (not damage): records/{record['name']}" in shown.stderr
    assert "records of changes the catalog lacks" in shown.stdout and shown.stdout.rstrip().endswith("ok")


def test_a_killed_tag_run_again_is_named_as_an_earlier_attempt_of_the_move(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog holds the same move later: still named (a rebuild would date the move at the killed
    attempt's time, where the catalog's history has no move), but said to be an earlier attempt of it."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    _interrupted_tag(arc, monkeypatch)
    arc("tag", "r/g:v1", "stable")  # run again
    [said] = arc.json("upgrade")["not_in_catalog"]
    assert "the catalog holds the same move later" in said and "run again" in said, said
    assert arc.json("fsck")["records_not_in_catalog"] == [said]
    assert arc("fsck").exit_code == 0


@pytest.mark.parametrize("actor", ["tester", "someone-else"])
def test_a_killed_tag_run_again_completes_the_move_its_record_states(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, actor: str
) -> None:
    """After a kill between its record and its commit (its start noted), the same `tag` run again completes the move
    that record states, dated as it is, and writes no second record: fsck finds nothing. A left record made by
    someone else is not taken: the re-run writes its own and warns of it."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    _interrupted_tag(arc, monkeypatch, started=True, actor=actor)
    [left] = [r for r in _records(arc, "tag") if r["tag"] == "stable"]
    arc.env["MODELARC_ACTOR"] = "tester"
    out = arc("tag", "r/g:v1", "stable")
    moves = [r["name"] for r in _records(arc, "tag") if r["tag"] == "stable"]
    if actor == "someone-else":
        assert len(moves) == 2 and "warning: records/" + left["name"] in out.stderr, out.stderr
        assert arc.json("fsck")["records_not_in_catalog"]
        return
    said = "completed the move an earlier `tag` stopped before its commit: its record records/" + left["name"]
    assert said in out.stdout.replace("\n", " "), out.stdout
    assert moves == [left["name"]]
    checked = arc.json("fsck")
    assert checked["ok"] and checked["records_not_in_catalog"] == [] and checked["records_contradicted"] == []
    [move] = [m for m in arc.json("log", "r/g")["tag_moves"] if m["tag"] == "stable"]
    assert move["at"][:19] == left["at"][:19]


def test_fsck_fails_on_a_record_that_contradicts_the_catalog(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A withdraw record of a snapshot the catalog holds live: a rebuild would withdraw it (no record undoes a
    withdrawal). fsck exits 5 until the record is moved out of records/."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    _interrupted_rm(arc, monkeypatch)
    [record] = _records(arc, "withdraw")

    before = _all_records(arc)
    result = arc("fsck", "--json", ok=False)  # --json exits 5 too
    assert _all_records(arc) == before
    assert result.exit_code == 5, result.output
    checked = json.loads(result.stdout)
    assert not checked["ok"] and checked["records_not_in_catalog"] == []
    [said] = checked["records_contradicted"]
    [upgrade_said] = arc.json("upgrade")["contradicted"]
    assert said.split(": this contradicts")[0] == upgrade_said.split(": this contradicts")[0]
    assert said.startswith(f"records/{record['name']}: ") and "holds live" in said
    assert "modelarc upgrade" in said
    shown = arc("fsck", ok=False)
    assert shown.exit_code == 5 and f"RECORD   records/{record['name']}" in shown.stdout
    assert "records in the store contradict the catalog" in shown.stdout

    (arc.home / "store" / "records" / record["name"]).rename(tmp_path / record["name"])  # moved out
    assert arc.json("fsck")["ok"]


@pytest.mark.parametrize("between", ["nothing", "repair"])
def test_rm_run_again_after_a_kill_before_its_commit_completes_that_withdrawal(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, between: str
) -> None:
    """The same `rm` run again after a kill between its record and its commit: the withdrawal that record states
    is committed (its time, reason and actor), no second record is written, and fsck finds nothing, where a second
    record dated later left the first contradicting the catalog (fsck exit 5). A `repair` in between (which notes
    every record of the store as this archive's) changes nothing."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    _interrupted_rm(arc, monkeypatch, actor="me", reason="licence")
    [left] = _records(arc, "withdraw")
    assert arc("fsck", ok=False).exit_code == 5  # the state the re-run starts from
    assert len(_started_notes(arc)) == 1
    if between == "repair":
        arc("repair")

    arc.env["MODELARC_ACTOR"] = "me"
    out = arc("rm", "r/g:v1", "--reason", "licence")
    said = f"completed the withdrawal an earlier rm stopped before its commit: its record records/{left['name']}"
    assert said in out.stdout.replace("\n", " "), out.stdout
    assert [r["name"] for r in _records(arc, "withdraw")] == [left["name"]]  # no second record
    checked = arc.json("fsck")
    assert checked["ok"] and checked["records_contradicted"] == [] and checked["records_not_in_catalog"] == []
    withdrawn = arc.json("show", "r/g:v1")["withdrawn"]
    assert withdrawn == {"at": left["at"][:19], "reason": "licence"}  # the left record's time, to the second
    upgraded = arc.json("upgrade")
    assert upgraded["contradicted"] == [] and upgraded["not_in_catalog"] == [] and not upgraded["written"]
    assert _started_notes(arc) == []  # gone with the commit: no later command looks for left records

    arc("push", write_model(tmp_path / "n", tiny_tensors(seed=9)), "r/h:v1")
    arc("rm", "r/h:v1", "--reason", "x")  # a run that was never stopped leaves no note either
    assert _started_notes(arc) == []


LATER = dt.timedelta(days=3)


@pytest.mark.parametrize(
    "differs", ["reason", "actor", "reference", "dated before the run", "named in the future", "no run started"]
)
def test_rm_run_again_does_not_take_a_left_record_that_says_otherwise(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, differs: str
) -> None:
    """A left withdraw record of the snapshot that is not exactly this withdrawal (another reason, actor or
    reference; dated before the stopped run started, or named in the future, where a rebuild would refuse it; or
    planted with no rm run at all: anyone who can write the store can write one) does not choose what the catalog
    records: the re-run writes its own record, warns of the left one where an rm started, and fsck names it."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    same = {"actor": "me", "reason": "takedown"}
    stated: dict[str, Any] = {
        "reason": {"actor": "me", "reason": "licence"},
        "actor": {"actor": "someone-else", "reason": "takedown"},
        "reference": {**same, "ref_text": "r/g:v2"},
        "dated before the run": {**same, "at": dt.datetime(2001, 1, 1)},
        "named in the future": {**same, "written": catalog_time() + LATER},
        "no run started": {**same, "started": False},
    }[differs]
    _interrupted_rm(arc, monkeypatch, **stated)
    [left] = _records(arc, "withdraw")

    arc.env["MODELARC_ACTOR"] = "me"
    out = arc("rm", "r/g:v1", "--reason", "takedown")
    assert "completed the withdrawal" not in out.stdout
    warned = f"warning: records/{left['name']}, left by an earlier rm of this snapshot" in out.stderr
    assert warned == (differs not in ("no run started", "named in the future")), out.stderr
    names = [r["name"] for r in _records(arc, "withdraw")]
    assert len(names) == 2 and left["name"] in names
    assert arc.json("show", "r/g:v1")["withdrawn"]["reason"] == "takedown"
    result = arc("fsck", "--json", ok=False)
    assert result.exit_code == 5
    [said] = json.loads(result.stdout)["records_contradicted"]
    assert said.startswith(f"records/{left['name']}: ")


def test_a_left_tag_record_a_later_move_followed_is_not_completed(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """After the killed `tag r/g:v1 stable`, pushes moved `stable` away and back, so the left record's `previous`
    is where the tag points again. Completing it would date the move before the pushes' moves: the catalog would say
    v1, a rebuild, replaying in name order, the pushed snapshot. The re-run writes its own record, after them."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("push", write_model(tmp_path / "p", tiny_tensors(seed=3)), "r/g:stable")
    arc.env["MODELARC_ACTOR"] = "tester"
    _interrupted_tag(arc, monkeypatch, started=True)
    [left] = [r for r in _records(arc, "tag") if r["tag"] == "stable"]
    arc("push", write_model(tmp_path / "z", tiny_tensors(seed=4)), "r/g:stable")  # away
    arc("push", tmp_path / "p", "r/g:stable")  # and back
    out = arc("tag", "r/g:v1", "stable")
    assert "completed the move" not in out.stdout and f"warning: records/{left['name']}" in out.stderr, out.output
    live = arc.json("show", "r/g:stable")["snapshot"]
    drop_catalog(database_url)
    arc.json("rebuild-catalog")
    assert arc.json("show", "r/g:stable")["snapshot"] == live


def test_an_rm_started_while_another_is_in_flight_waits_for_it_and_completes_nothing(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B starts while A has written its withdraw record and not committed: B used to find A's note and record, take
    the record as one left by a stopped run, and withdraw the snapshot a second time after A's commit. B now waits
    for the model's lock, finds the snapshot withdrawn, and says so."""
    from modelarc.archive.provenance import withdrawal as withdrawal_module
    from modelarc.archive.provenance.withdrawal import withdraw
    from modelarc.errors import UsageError
    from modelarc.registry import queries as q

    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    monkeypatch.setenv("MODELARC_ACTOR", "me")
    failed: list[BaseException] = []
    started = signal_on_start(monkeypatch, withdrawal_module)
    with Archive.open(arc.home) as a, Archive.open(arc.home) as b:
        ref, snap = a.resolve("r/g:v1")
        manifest = a.manifest(snap)
        _mark_started(a, snap)
        with a.catalog.session() as s:  # run A, its steps in withdraw, up to its record
            q.lock_model(s, q.require_model(s, "r", "g").row_id)
            at = catalog_time()
            apply_withdrawal(s, snap, released_objects(s, snap, manifest), "licence", actor="me", target=str(ref), at=at)
            s.flush()
            write_record(a.store.backend, s, "withdraw", at=at, actor="me", model=snap.model, snapshot=snap.digest,
                         ref=str(ref), reason="licence")  # fmt: skip

            def run_b() -> None:
                try:
                    withdraw(b, "r/g:v1", "licence")
                except BaseException as exc:  # noqa: BLE001 (checked below)
                    failed.append(exc)

            other = threading.Thread(target=run_b)
            other.start()
            assert started.wait(60)  # B has resolved the snapshot (live) and is noting its start
            time.sleep(0.5)  # and waits for A's lock
        other.join(60)
    assert len(failed) == 1 and isinstance(failed[0], UsageError), failed
    assert "withdrawn meanwhile" in str(failed[0])
    assert len(_records(arc, "withdraw")) == 1
    assert arc.json("fsck")["ok"]
