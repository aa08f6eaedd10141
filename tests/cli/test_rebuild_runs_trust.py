"""A recorded run is only what its signature says (docs/FORMAT.md "Catalog records", docs/SECURITY.md): a rebuild
replays a `run` record only when its envelope verifies against a key trusted at that point, over the very object
the record names, for the record's snapshot; `rerun` refuses a catalog row that is not what was signed; `runs` lists
a damaged row as damaged. On SQLite and PostgreSQL.

Each planted record is intact (its name the sha256 of its body), as anyone who can write the store could write it:
only the checks behind the record can catch it."""

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
from modelfactory import tiny_gpt2, write_model

from modelarc.archive.manifest import canonical_json
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.runs import RUN_PAYLOAD_TYPE
from modelarc.archive.signing import dsse
from modelarc.archive.signing import keys as keyring

ArchiveCli = Any  # tests/cli/conftest.py
WORDS = ("<unk>", "<pad>", "the", "model", "was", "trained", "in", "2021", "on", "news")
_NAME_TIME = "%Y%m%dT%H%M%S%fZ"


@pytest.fixture
def recorded(arc: ArchiveCli, tmp_path: Path) -> dict[str, Any]:
    """acme/gpt2:v1 with one recorded run (run 1); its `run` record's body."""
    tiny_gpt2(tmp_path / "m", WORDS)
    arc("push", tmp_path / "m", "acme/gpt2:v1")
    arc("run", "acme/gpt2:v1", "--prompt", "the model was", "--max-new-tokens", "3", "--record")
    [record] = _run_records(arc)
    return dict(json.loads(record.read_bytes()))


@contextmanager
def _archive(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        archive = Archive.open(arc.home)
        with archive:
            yield archive


def _run_records(arc: ArchiveCli) -> list[Path]:
    paths = sorted((arc.home / "store" / "records").glob("*.json"))
    return [p for p in paths if json.loads(p.read_bytes())["kind"] == "run"]


def _plant(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, genuine: dict[str, Any], payload: bytes,
           **change: Any) -> str:  # fmt: skip
    """Put ``payload`` in the store and a `run` record naming it, otherwise the genuine one's (signature and key
    included, unless ``change`` says), named a second after every record; its key."""
    with _archive(arc, monkeypatch) as archive:
        put = archive.store.put(payload)
        archive.store.sync()
    body = {**genuine, "actor": "mallory", "object": str(put.id), **change}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    folder = arc.home / "store" / "records"
    last = max(dt.datetime.strptime(p.name.split("-")[0], _NAME_TIME) for p in folder.glob("*.json"))
    name = f"{(last + dt.timedelta(seconds=1)).strftime(_NAME_TIME)}-{hashlib.sha256(data).hexdigest()}.json"
    (folder / name).write_bytes(data)
    return f"records/{name}"


def _forged_doc(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, genuine: dict[str, Any]) -> dict[str, Any]:
    with _archive(arc, monkeypatch) as archive:
        doc = json.loads(bytes(archive.store.get(genuine["object"])))
    return dict(doc, prompt="Who won the 2030 election?", output="FABRICATED ANSWER")


def _rebuild(arc: ArchiveCli, database_url: str) -> tuple[int, dict[str, Any]]:
    drop_catalog(database_url)
    result = arc("rebuild-catalog", "--json", ok=False)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def _refused(report: dict[str, Any], key: str) -> str:
    assert not report["ok"] and key in report["refused"], report
    assert report["replayed"].get("run") == 1, report  # the genuine run still replays
    return str(report["refused"][key])


# ------------------------------------------------------------------------------------------------ rebuild
def test_a_run_record_whose_object_is_not_what_its_signature_signed_is_refused(
    arc: ArchiveCli, recorded: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = arc.json("runs")
    forged = canonical_json(_forged_doc(arc, monkeypatch, recorded))
    key = _plant(arc, monkeypatch, recorded, forged)

    code, report = _rebuild(arc, database_url)
    assert code != 0 and "another document" in _refused(report, key)
    assert arc.json("runs") == runs  # the fabricated run is not listed
    assert "FABRICATED" not in arc("runs").stdout
    assert arc.json("rerun", "1")["identical"] is True


def test_a_run_record_whose_object_is_not_a_json_object_is_refused(
    arc: ArchiveCli, recorded: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = arc.json("runs")
    key = _plant(arc, monkeypatch, recorded, b"[1,2,3]")

    code, report = _rebuild(arc, database_url)
    assert code != 0 and "another document" in _refused(report, key)
    assert arc.json("runs") == runs


def test_a_run_signed_by_a_key_not_trusted_is_refused(
    arc: ArchiveCli, recorded: dict[str, Any], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    forged = canonical_json(_forged_doc(arc, monkeypatch, recorded))
    stranger = keyring.generate_private_key()
    fingerprint = keyring.key_fingerprint(keyring.public_key_pem(stranger))
    signature = dsse.sign(RUN_PAYLOAD_TYPE, forged, stranger)
    envelope = json.dumps(dsse.Envelope(RUN_PAYLOAD_TYPE, forged, ((fingerprint, signature),)).to_json())
    key = _plant(arc, monkeypatch, recorded, forged, signature=envelope, key=fingerprint)

    code, report = _rebuild(arc, database_url)
    assert code != 0 and "signature does not verify" in _refused(report, key)
    assert "FABRICATED" not in arc("runs").stdout


def test_a_signed_run_filed_by_its_record_under_another_snapshot_is_refused(
    arc: ArchiveCli,
    recorded: dict[str, Any],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arc("push", write_model(tmp_path / "other"), "acme/other:v1")
    other = arc.json("show", "acme/other:v1")["snapshot"]
    with _archive(arc, monkeypatch) as archive:
        genuine = bytes(archive.store.get(recorded["object"]))
    # the genuine run's own object and envelope, filed under another snapshot the rebuilt catalog holds
    key = _plant(arc, monkeypatch, recorded, genuine, snapshot=other, ref="acme/other:v1")

    code, report = _rebuild(arc, database_url)
    assert code != 0 and "not of 'acme/other:v1'" in _refused(report, key)
    assert arc.json("runs", "acme/other:v1") == []


def _signed_by_the_home(
    arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any]
) -> tuple[bytes, str, str]:
    """``doc`` as record_run would sign it, with the home's own (trusted) key: (payload, envelope text, key)."""
    payload = canonical_json(doc)
    with _archive(arc, monkeypatch) as archive:
        key = archive._private_key()
    fingerprint = keyring.key_fingerprint(keyring.public_key_pem(key))
    signature = dsse.sign(RUN_PAYLOAD_TYPE, payload, key)
    envelope = json.dumps(dsse.Envelope(RUN_PAYLOAD_TYPE, payload, ((fingerprint, signature),)).to_json())
    return payload, envelope, fingerprint


# a run document's "version" this modelarc does not read, and what the refusal says (docs/FORMAT.md "Run documents")
UNKNOWN_VERSIONS = {
    "newer": (3, "version 3, written by a newer modelarc"),
    "text": ("1", "version is '1', not a version of the run document"),
    "absent": (None, "version is 'None', not a version of the run document"),
}


@pytest.mark.parametrize(("version", "says"), UNKNOWN_VERSIONS.values(), ids=UNKNOWN_VERSIONS.keys())
def test_a_signed_run_of_a_version_this_modelarc_does_not_read_is_not_replayed(
    arc: ArchiveCli,
    recorded: dict[str, Any],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    version: object,
    says: str,
) -> None:
    """Signed by a trusted key, of the record's snapshot and ref, byte for byte the object it names: only its
    version is not one this modelarc knows, so it is refused rather than indexed as a run it would misread."""
    doc = {k: v for k, v in _forged_doc(arc, monkeypatch, recorded).items() if k != "version"}
    if version is not None:
        doc["version"] = version
    payload, envelope, fingerprint = _signed_by_the_home(arc, monkeypatch, doc)
    key = _plant(arc, monkeypatch, recorded, payload, signature=envelope, key=fingerprint)

    code, report = _rebuild(arc, database_url)
    assert code != 0 and says in _refused(report, key)
    assert "FABRICATED" not in arc("runs").stdout


# ------------------------------------------------------------------------------------------------ rerun, runs
def _alter_row(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, record: Any) -> None:
    from modelarc.registry.models import RunRecord

    with _archive(arc, monkeypatch) as archive, archive.catalog.session() as s:
        row = s.get(RunRecord, 1)
        assert row is not None
        row.record = record


def test_rerun_refuses_a_catalog_row_that_is_not_the_signed_record(
    arc: ArchiveCli, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    [listed] = arc.json("runs")
    doc = {k: v for k, v in listed.items() if k not in ("id", "created_at", "actor")}
    _alter_row(arc, monkeypatch, dict(doc, prompt="Who won the 2030 election?", output="FABRICATED ANSWER"))

    err = arc.fail("rerun", "1").stderr
    assert "is not the signed one (its output, prompt differ)" in err
    assert "IDENTICAL" not in arc("rerun", "1", ok=False).stdout


def test_runs_lists_a_row_whose_document_is_not_a_run_as_damaged(
    arc: ArchiveCli, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for damaged in ([1, 2, 3], {"prompt": 7}):
        _alter_row(arc, monkeypatch, damaged)
        out = arc("runs")
        assert "Traceback" not in out.output and "DAMAGED" in out.stdout
        [listed] = arc.json("runs")
        assert listed["id"] == 1 and "damaged" in listed
        assert "is not the signed one" in arc.fail("rerun", "1").stderr


def test_runs_lists_a_row_of_no_known_version_as_damaged(
    arc: ArchiveCli, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every field a run has, but a version that is no run document's (text, absent): `rerun` refuses it, so
    `runs` does not list it as an ordinary run."""
    [listed] = arc.json("runs")
    doc = {k: v for k, v in listed.items() if k not in ("id", "created_at", "actor", "version")}
    for damaged, says in ((dict(doc, version="2"), "version is '2'"), (doc, "version is 'None'")):
        _alter_row(arc, monkeypatch, damaged)
        assert f"DAMAGED: the catalog's run document's {says}" in arc("runs").stdout
        [row] = arc.json("runs")
        assert row["id"] == 1 and says in row["damaged"]


@pytest.mark.parametrize("layout", ["version 2's fields", "other fields"])
def test_runs_lists_a_run_of_a_newer_version_as_unreadable_without_its_fields(
    arc: ArchiveCli, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A newer modelarc sharing this catalog records a version 3 run: `runs` lists it (its id, time, actor and the
    snapshot the catalog files it under) marked unreadable by this modelarc, with its version, and shows none of
    the document's fields, which may mean something else in version 3, whether or not they look like version 2's."""
    [genuine] = arc.json("runs")
    if layout == "other fields":
        doc: dict[str, Any] = {"version": 3, "prompt": {"turns": ["FABRICATED"]}, "outputs": ["FABRICATED"]}
    else:
        doc = dict(_forged_doc(arc, monkeypatch, recorded), version=3)
    _alter_row(arc, monkeypatch, doc)

    [listed] = arc.json("runs")
    assert listed == {
        "id": 1,
        "created_at": genuine["created_at"],
        "actor": genuine["actor"],
        "snapshot": genuine["snapshot"],
        "version": 3,
        "unreadable": "run document version 3, written by a newer modelarc (this one reads up to version 2); "
        "use that modelarc to read it",
    }
    assert arc.json("runs", "acme/gpt2:v1") == [listed]  # under the snapshot the catalog files it under
    out = arc("runs")
    assert "Traceback" not in out.output and "FABRICATED" not in out.stdout and "DAMAGED" not in out.stdout
    [line] = out.stdout.splitlines()
    assert line.startswith("    1  ") and "UNREADABLE: run document version 3, written by a newer" in line
    assert genuine["snapshot"][:19] in line


def test_a_second_record_of_one_run_is_refused_naming_the_first(
    arc: ArchiveCli, recorded: dict[str, Any], database_url: str
) -> None:
    """One run is one object: a copy of its record (a mirror's, or a planted one by another actor) replays as
    nothing more, and the refusal names the record that replayed it, so a reader can tell which one to look at."""
    [genuine] = _run_records(arc)
    data = json.dumps({**recorded, "actor": "mallory"}, sort_keys=True, separators=(",", ":")).encode()
    name = f"{genuine.name.split('-')[0]}-{hashlib.sha256(data).hexdigest()}.json"
    (genuine.parent / name).write_bytes(data)
    copy = f"records/{name}"
    _code, report = _rebuild(arc, database_url)
    first = sorted([f"records/{genuine.name}", copy])[0]  # same time: the name's hash orders the two
    second = copy if first != copy else f"records/{genuine.name}"
    reason = _refused(report, second)
    assert f"already replayed from the earlier record {first}" in reason, reason


def test_rerun_refuses_a_signed_run_of_a_newer_version(
    arc: ArchiveCli, recorded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog row whose signed document is a newer layout (as a newer modelarc sharing this catalog would
    record): `rerun` says so in one line, exit 17, and does not run it as if it were version 1."""
    from modelarc.registry.models import RunRecord

    doc = dict(_forged_doc(arc, monkeypatch, recorded), version=3)
    payload, envelope, _fingerprint = _signed_by_the_home(arc, monkeypatch, doc)
    with _archive(arc, monkeypatch) as archive, archive.catalog.session() as s:
        put = archive.store.put(payload)
        archive.store.sync()
        row = s.get(RunRecord, 1)
        assert row is not None
        row.record, row.signature, row.object_id = doc, envelope, str(put.id)

    result = arc.fail("rerun", "1")
    assert result.exit_code == 17, result.output
    assert "run 1: the signed run document is version 3, written by a newer modelarc" in result.stderr
    assert "IDENTICAL" not in result.stdout and "FABRICATED" not in result.stdout
