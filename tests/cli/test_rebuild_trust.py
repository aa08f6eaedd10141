"""rebuild-catalog records nothing a record states that the store can prove false (docs/FORMAT.md "Catalog records",
docs/SECURITY.md): signatures only as they verify, figures as the manifest and config.json give them, missing weights
only for a snapshot a replayed withdrawal covers, and no record from the future. On SQLite and PostgreSQL.

Each forgery is an intact record (its name the sha256 of its new body): the integrity check passes, and only the
checks behind the record can catch it, as anyone who can write the store could write it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catalogkit import drop_catalog
from modelfactory import tiny_tensors, write_model

ArchiveCli = Any  # tests/cli/conftest.py
_NAME_TIME = "%Y%m%dT%H%M%S%fZ"


def _records(arc: ArchiveCli, kind: str | None = None) -> list[Path]:
    paths = sorted((arc.home / "store" / "records").glob("*.json"))
    return [p for p in paths if kind is None or json.loads(p.read_bytes())["kind"] == kind]


def _write(folder: Path, body: dict[str, Any], written: dt.datetime) -> Path:
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    path = folder / f"{written.strftime(_NAME_TIME)}-{hashlib.sha256(data).hexdigest()}.json"
    path.write_bytes(data)
    return path


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Replace a record by an intact one under the same time, saying something else."""
    body = json.loads(path.read_bytes())
    change(body)
    path.unlink()
    return _write(path.parent, body, _written(path))


def _redate(path: Path, written: dt.datetime) -> Path:
    """The same record, named with another time (the name's time is not covered by its sha256)."""
    new = path.with_name(f"{written.strftime(_NAME_TIME)}-{path.name.split('-', 1)[1]}")
    path.rename(new)
    return new


def _written(path: Path) -> dt.datetime:
    return dt.datetime.strptime(path.name.split("-")[0], _NAME_TIME)


def _rebuild(arc: ArchiveCli, database_url: str) -> tuple[int, dict[str, Any]]:
    drop_catalog(database_url)
    result = arc("rebuild-catalog", "--json", ok=False)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def _trusted_key(arc: ArchiveCli, tmp_path: Path) -> str:
    """A second key this archive trusts (`keys import`, so a `key` record says so), which has signed nothing."""
    from modelarc.archive.signing import keys as keyring

    pem = tmp_path / "other.pem"
    pem.write_bytes(keyring.public_key_pem(keyring.generate_private_key()))
    fingerprint: str = arc.json("keys", "import", pem)["fingerprint"]
    return fingerprint


def _show(arc: ArchiveCli, ref: str) -> dict[str, Any]:
    shown: dict[str, Any] = arc.json("show", ref)
    return shown


# ------------------------------------------------------------------------------------------------ signatures
def test_a_signature_the_record_adds_for_a_trusted_key_that_never_signed_is_not_recorded(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    other = _trusted_key(arc, tmp_path)
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    before = _show(arc, "acme/m:v1")
    [own] = [sig["key"] for sig in before["signatures"]]
    [record] = _records(arc, "snapshot")
    manifest = json.loads(record.read_bytes())["manifest"]
    # the manifest object is in the store and is text: "a bundle" by the trusted key that never signed it
    forged = _rewrite(record, lambda b: b["signatures"].append({"object": manifest, "key": other}))

    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["ok"], report
    after = _show(arc, "acme/m:v1")
    assert [sig["key"] for sig in after["signatures"]] == [own]
    assert after == before
    [note] = [n for n in report["notes"] if n.startswith(f"records/{forged.name}")]
    assert manifest in note and other in note and "not recorded" in note


def test_a_signature_the_record_attributes_to_another_trusted_key_is_recorded_under_the_key_that_signed_it(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    other = _trusted_key(arc, tmp_path)
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    before = _show(arc, "acme/m:v1")
    [own] = [sig["key"] for sig in before["signatures"]]
    [record] = _records(arc, "snapshot")

    def claim_other(body: dict[str, Any]) -> None:
        body["signatures"][0]["key"] = other
        # listed twice, once as the other key's: one bundle is one signature, by the key that made it
        body["signatures"].append(dict(body["signatures"][0]))

    forged = _rewrite(record, claim_other)

    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["ok"], report
    assert _show(arc, "acme/m:v1") == before
    assert any(n.startswith(f"records/{forged.name}") and f"recorded as {own}" in n for n in report["notes"])


def test_a_key_a_snapshot_record_carries_is_trusted_only_if_it_signed_the_snapshot(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    from modelarc.archive.signing import keys as keyring

    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    keys_before = arc.json("keys", "list")
    [record] = _records(arc, "snapshot")
    manifest = json.loads(record.read_bytes())["manifest"]
    pem = keyring.public_key_pem(keyring.generate_private_key())
    stranger = keyring.key_fingerprint(pem)

    def carry(body: dict[str, Any]) -> None:
        body["signatures"].append({"object": manifest, "key": stranger})
        body["keys"].append({"fingerprint": stranger, "public_pem": pem.decode()})

    _rewrite(record, carry)

    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["ok"], report
    assert arc.json("keys", "list") == keys_before  # the carried key signed nothing: not trusted, not known


# ------------------------------------------------------------------------------------------------ figures
def test_figures_a_record_states_against_its_manifest_are_recorded_as_the_manifest_gives_them(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    before = _show(arc, "acme/m:v1")
    assert before["architecture"] and before["parameter_count"] > 0
    [record] = _records(arc, "snapshot")
    lies = {
        "logical_bytes": 10**15,
        "parameter_count": 70_000_000_000,
        "dtypes": {"BF16": 70_000_000_000},
        "architecture": {"model_type": "llama", "num_layers": 80},
        "file_count": 99,
        "tensor_count": 999,
    }
    forged = _rewrite(record, lambda b: b.update(lies))

    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["ok"], report
    assert _show(arc, "acme/m:v1") == before
    [note] = [n for n in report["notes"] if n.startswith(f"records/{forged.name}")]
    for field in lies:
        assert field in note


def test_a_record_that_states_its_figures_truly_replays_without_a_note(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m", tiny_tensors(seed=4)), "acme/m:v1")
    before = _show(arc, "acme/m:v1")
    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["ok"] and report["notes"] == [], report
    assert _show(arc, "acme/m:v1") == before


# ------------------------------------------------------------------------------------------------ withdrawals
def _push_and_lose_a_weight(arc: ArchiveCli, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """t/m1:v1 pushed, one of its weight chunks gone from the store; its snapshot record and a withdraw body."""
    from modelarc.archive.manifest import SnapshotManifest
    from modelarc.storage import ObjectId, ObjectStore

    arc("push", write_model(tmp_path / "m1"), "t/m1:v1")
    [record] = _records(arc, "snapshot")
    body = json.loads(record.read_bytes())
    store = ObjectStore.open_local(arc.home / "store")
    manifest = SnapshotManifest.from_bytes(bytes(store.get(ObjectId(body["manifest"]))))
    weight = next(c.id for f in manifest.files for p in f.parts if p.kind == "tensor" for c in p.chunks)
    (arc.home / "store" / "objects" / weight[:2] / weight).unlink()
    withdraw = {
        "format": "modelarc.record",
        "version": 1,
        "kind": "withdraw",
        "at": body["at"],
        "actor": "intruder",
        "model": "t/m1",
        "snapshot": body["snapshot"],
        "ref": "t/m1:v1",
        "reason": "planted",
    }
    return record, withdraw


def test_a_withdraw_record_dated_before_its_snapshot_replays_after_it(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    # a record waits for the snapshot it names, whatever its name's time (archive/record_order.py): the snapshot is
    # replayed withdrawn, never listed live with a weight gone
    record, withdraw = _push_and_lose_a_weight(arc, tmp_path)
    planted = _write(record.parent, withdraw, _written(record) - dt.timedelta(seconds=1))

    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["replayed"] == {"key": 1, "snapshot": 1, "withdraw": 1}, report
    assert _show(arc, "t/m1:v1")["withdrawn"]["reason"] == "planted"
    assert planted.exists()


def test_a_withdraw_record_that_fails_its_own_checks_does_not_excuse_missing_weights(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    record, withdraw = _push_and_lose_a_weight(arc, tmp_path)
    del withdraw["reason"]  # after the snapshot, but refused on its own
    planted = _write(record.parent, withdraw, _written(record) + dt.timedelta(seconds=1))

    code, report = _rebuild(arc, database_url)
    assert code == 5
    assert f"records/{planted.name}" in report["refused"]
    assert "missing from the store" in report["refused"][f"records/{record.name}"]
    assert arc.json("ls") == []


def test_a_withdraw_record_after_its_snapshot_excuses_the_weights_it_withdraws(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    record, withdraw = _push_and_lose_a_weight(arc, tmp_path)
    planted = _write(record.parent, withdraw, _written(record) + dt.timedelta(seconds=1))

    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["ok"], report
    assert report["replayed"] == {"key": 1, "snapshot": 1, "withdraw": 1}
    shown = _show(arc, "t/m1:v1")
    assert shown["withdrawn"]["reason"] == "planted", shown
    assert planted.exists()


# ------------------------------------------------------------------------------------------------ clock
def _two_tag_moves(arc: ArchiveCli, tmp_path: Path) -> tuple[Path, str]:
    """acme/m:stable moved to v1, then to v2: the record of the first move, and v2's snapshot."""
    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "acme/m:v1")
    arc("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "acme/m:v2")
    arc("tag", "acme/m:v1", "stable")
    [first] = _records(arc, "tag")
    arc("tag", "acme/m:v2", "stable")
    return first, _show(arc, "acme/m:v2")["snapshot"]


def test_a_record_named_in_the_future_is_refused_and_overrides_nothing(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    first, v2 = _two_tag_moves(arc, tmp_path)
    assert _show(arc, "acme/m:stable")["snapshot"] == v2
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    future = _redate(first, now + dt.timedelta(days=400))  # would sort after the move to v2, and undo it

    code, report = _rebuild(arc, database_url)
    assert code == 5
    why = report["refused"][f"records/{future.name}"]
    assert why.startswith("tag:") and "clock" in why and "future" in why
    assert len(report["refused"]) == 1
    assert _show(arc, "acme/m:stable")["snapshot"] == v2


def test_a_record_named_within_the_hour_of_clock_drift_replays(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    first, v2 = _two_tag_moves(arc, tmp_path)
    v1 = _show(arc, "acme/m:v1")["snapshot"]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    _redate(first, now + dt.timedelta(minutes=30))  # a writer whose clock ran 30 minutes fast

    code, report = _rebuild(arc, database_url)
    assert code == 0 and report["ok"], report
    assert _show(arc, "acme/m:stable")["snapshot"] == v1  # replayed in name order, as written
    assert v1 != v2


def test_a_withdraw_record_from_the_future_does_not_excuse_missing_weights(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    record, withdraw = _push_and_lose_a_weight(arc, tmp_path)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    planted = _write(record.parent, withdraw, now + dt.timedelta(days=1))

    code, report = _rebuild(arc, database_url)
    assert code == 5
    assert "future" in report["refused"][f"records/{planted.name}"]
    assert "missing from the store" in report["refused"][f"records/{record.name}"]
    assert arc.json("ls") == []
