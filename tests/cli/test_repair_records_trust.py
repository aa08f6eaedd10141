"""`repair` puts back only the catalog records this archive wrote, on SQLite and PostgreSQL: a record planted in a
mirror (its name is just the sha256 of its body, which anyone can compute) is reported and left out, so a later
`rebuild-catalog` cannot be made to lift an embargo by whoever can write to a USB disk; `--records-from MIRROR`
takes such records from the one mirror the user vouches for (docs/FORMAT.md "Catalog records")."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from catalogkit import downgrade_catalog, drop_catalog
from modelfactory import tiny_tensors, write_model
from sqlalchemy import create_engine, inspect, text

from modelarc.archive.records import canonical
from modelarc.registry.db import make_engine

ArchiveCli = Any  # tests/cli/conftest.py


def _now() -> tuple[str, str]:
    """(a record name's time, a record body's time) for now: after every record the test made, so a planted record
    is replayed last and would win (one dated far ahead is refused by the rebuild, archive/rebuild.py CLOCK_SLACK)."""
    at = dt.datetime.now(dt.UTC)
    return at.strftime("%Y%m%dT%H%M%S%fZ"), at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _restricted_with_mirror(arc: ArchiveCli, tmp_path: Path, mirror: str = "usb") -> Path:
    """t/m1 pushed and restricted, and a synced folder mirror holding every object and record."""
    arc("push", write_model(tmp_path / "m1", tiny_tensors()), "t/m1:v1")
    arc("access", "set", "t/m1", "restricted", "--reason", "embargo")
    arc("mirror", "add", mirror, tmp_path / mirror)
    assert arc.json("mirror", "sync")[0]["ok"]
    return tmp_path / mirror


def _plant_public(folder: Path, model: str = "t/m1", reason: str = "planted") -> str:
    """What someone with write access to the mirror folder alone can do: an `access` record lifting the embargo."""
    name_time, body_time = _now()
    body = canonical(
        {
            "format": "modelarc.record",
            "version": 1,
            "kind": "access",
            "at": body_time,
            "actor": "mallory",
            "model": model,
            "snapshot": None,
            "level": "public",
            "until": None,
            "reason": reason,
        }
    )
    key = f"records/{name_time}-{hashlib.sha256(body).hexdigest()}.json"
    (folder / key).write_bytes(body)
    return key


def _level_after_rebuild(arc: ArchiveCli, database_url: str) -> str:
    drop_catalog(database_url)
    report = arc.json("rebuild-catalog")
    assert report["ok"], report
    [row] = arc.json("access", "ls", "t/m1")
    return str(row["policy"]["level"])


def _records_of(arc: ArchiveCli, kind: str) -> list[Path]:
    return [
        p
        for p in sorted((arc.home / "store" / "records").glob("*.json"))
        if json.loads(p.read_bytes())["kind"] == kind
    ]


def _forget_notes(database_url: str) -> None:
    """The catalog taken back to revision 0014, from before the notes: the next command upgrades it again, with no
    note of any record written so far (as an archive made by an older modelarc has)."""
    downgrade_catalog(database_url, "0014")
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert "written_records" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


def test_repair_refuses_a_record_planted_in_a_mirror(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    usb = _restricted_with_mirror(arc, tmp_path)
    planted = _plant_public(usb)

    result = arc("repair", "--json", ok=False)
    assert result.exit_code == 5  # something a mirror holds was not taken: a human should look
    report = json.loads(result.stdout)
    assert report["records_repaired"] == {} and not report["ok"]
    why = report["records_not_taken"][planted]
    assert "no note of writing it" in why and "--records-from usb" in why
    assert not (arc.home / "store" / planted).exists()
    text_out = arc("repair", ok=False).stdout
    assert f"NOT TAKEN  catalog record {planted}" in text_out and "REPAIRED  catalog record" not in text_out

    assert _level_after_rebuild(arc, database_url) == "restricted"


def test_a_lost_record_this_archive_wrote_is_put_back(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    _restricted_with_mirror(arc, tmp_path)
    [lost] = _records_of(arc, "access")
    lost.unlink()

    report = arc.json("repair")
    assert report["ok"] and report["records_repaired"] == {f"records/{lost.name}": "usb"}
    assert report["records_not_taken"] == {}
    assert lost.exists()
    assert _level_after_rebuild(arc, database_url) == "restricted"


def test_records_from_takes_the_named_mirrors_records_only(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    usb = _restricted_with_mirror(arc, tmp_path)
    arc("mirror", "add", "nas", tmp_path / "nas")
    arc("mirror", "sync", "nas")
    vouched = _plant_public(usb)
    other = _plant_public(tmp_path / "nas", reason="planted on the nas")

    report = json.loads(arc("repair", "--records-from", "usb", "--json", ok=False).stdout)
    assert report["records_repaired"] == {vouched: "usb"}
    assert (
        list(report["records_not_taken"]) == [other]
        and "--records-from nas" in report["records_not_taken"][other]
    )
    assert (arc.home / "store" / vouched).exists() and not (arc.home / "store" / other).exists()
    (tmp_path / "nas" / other).unlink()

    (
        arc.home / "store" / vouched
    ).unlink()  # taken on the user's word, it is this archive's record from now on
    assert arc.json("repair")["records_repaired"] == {vouched: "usb"}
    assert _level_after_rebuild(arc, database_url) == "public"


def test_records_from_names_a_mirror_this_archive_has(arc: ArchiveCli, tmp_path: Path) -> None:
    _restricted_with_mirror(arc, tmp_path)
    assert "no mirror named 'nope'" in arc.fail("repair", "--records-from", "nope").stderr
    assert "is empty" in arc.fail("repair", "--records-from", "").stderr


def test_records_written_before_the_notes_need_records_from_unless_only_damaged(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    _restricted_with_mirror(arc, tmp_path)
    [snapshot] = _records_of(arc, "snapshot")
    [access] = _records_of(arc, "access")
    _forget_notes(database_url)

    # a damaged record needs no note: the primary's own name for it vouches for the mirror's copy
    snapshot.write_bytes(snapshot.read_bytes().replace(b"t/m1", b"t/m2", 1))
    access.unlink()
    result = arc("repair", "--read-data", "--json", ok=False)
    report = json.loads(result.stdout)
    assert report["records_repaired"] == {f"records/{snapshot.name}": "usb"}
    assert list(report["records_not_taken"]) == [f"records/{access.name}"] and not access.exists()

    report = arc.json("repair", "--records-from", "usb")
    assert report["ok"] and report["records_repaired"] == {f"records/{access.name}": "usb"}
    assert _level_after_rebuild(arc, database_url) == "restricted"


def test_rebuild_and_upgrade_note_the_records_they_replay_and_write(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    _restricted_with_mirror(arc, tmp_path)
    assert _level_after_rebuild(arc, database_url) == "restricted"  # every record replayed, and noted
    arc("mirror", "add", "usb", tmp_path / "usb")  # a rebuilt catalog has no mirrors list
    [access] = _records_of(arc, "access")
    access.unlink()
    assert arc.json("repair")["records_repaired"] == {f"records/{access.name}": "usb"}

    # an archive older than its records: `upgrade` writes them from the catalog, noting each one
    for p in sorted((arc.home / "store" / "records").glob("*.json")):
        p.unlink()
    _forget_notes(database_url)
    assert arc.json("upgrade")["written"] == {"access": 1, "key": 1, "snapshot": 1, "tag": 1}
    arc("mirror", "rm", "usb")  # it holds the records as first written, which upgrade named anew
    arc("mirror", "add", "usb", tmp_path / "usb2")
    arc("mirror", "sync")
    [access] = _records_of(arc, "access")
    access.unlink()
    assert arc.json("repair")["records_repaired"] == {f"records/{access.name}": "usb"}


def test_every_command_that_writes_a_record_notes_it(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m1", tiny_tensors()), "t/m1:v1")
    arc("push", write_model(tmp_path / "m2", tiny_tensors(seed=4)), "t/m2:v1")
    arc("tag", "t/m1:v1", "prod")
    (tmp_path / "data.json").write_text(
        json.dumps(
            {"version": 1, "datasets": [{"name": "logs", "version": "2", "records": 10, "role": "finetune"}]}
        )
    )
    arc("data", "attach", "t/m1:v1", tmp_path / "data.json")
    arc("access", "set", "t/m1", "gated", "--reason", "embargo")
    arc("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "grant", "t/m1", "alice", "--reason", "co-author")
    arc("access", "revoke", "t/m1", "alice", "--reason", "left")
    arc("rm", "t/m2:v1", "--reason", "leaked")
    arc("keys", "distrust", arc.json("keys", "list")[0]["fingerprint"])
    store = {f"records/{p.name}" for p in (arc.home / "store" / "records").glob("*.json")}
    kinds = {json.loads((arc.home / "store" / k).read_bytes())["kind"] for k in store}
    assert kinds == {"key", "snapshot", "tag", "data", "access", "grant", "withdraw"}
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            noted = set(conn.execute(text("SELECT key FROM written_records")).scalars())
    finally:
        engine.dispose()
    assert noted == store


def test_a_repair_notes_the_primarys_records_so_an_older_one_lost_later_comes_back(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    _restricted_with_mirror(arc, tmp_path)
    [access] = _records_of(arc, "access")
    _forget_notes(database_url)
    assert arc.json("repair")["ok"]  # nothing lost yet: the primary's records are noted as it holds them
    access.unlink()
    report = arc.json("repair")
    assert report["ok"] and report["records_repaired"] == {f"records/{access.name}": "usb"}
    assert report["records_not_taken"] == {}
    assert _level_after_rebuild(arc, database_url) == "restricted"
