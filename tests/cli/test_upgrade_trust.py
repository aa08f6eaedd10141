"""`modelarc upgrade` writes what the catalog says even where a record in the store says otherwise (docs/FORMAT.md
"Catalog records", "Older archives"): a planted snapshot record that names the same snapshot (at the same time, or
earlier) but contradicts its provenance does not count as cover, is reported, and loses to the catalog's record at
a rebuild; a planted run record counts only with the signature the catalog holds; a key distrusted long ago is
recorded as distrusted from when the audit log says. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import tiny_gpt2, write_model

ArchiveCli = Any  # tests/cli/conftest.py
_NAME_TIME = "%Y%m%dT%H%M%S%fZ"
_BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
PROVENANCE = ("--license", "mit", "--cutoff", "2023-01", "--source", "https://example.org/g")


def _records(arc: ArchiveCli, kind: str) -> list[dict[str, Any]]:
    paths = sorted((arc.home / "store" / "records").glob("*.json"))
    bodies = [dict(json.loads(p.read_bytes()), name=p.name) for p in paths]
    return [b for b in bodies if b["kind"] == kind]


def _plant(arc: ArchiveCli, body: dict[str, Any], written: dt.datetime) -> str:
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    name = f"{written.strftime(_NAME_TIME)}-{hashlib.sha256(data).hexdigest()}.json"
    (arc.home / "store" / "records" / name).write_bytes(data)
    return f"records/{name}"


def _as_before_records(arc: ArchiveCli) -> None:
    """The store as a modelarc made before records left it."""
    shutil.rmtree(arc.home / "store" / "records")
    (arc.home / "store" / "records").mkdir()


def _provenance(shown: dict[str, Any]) -> tuple[Any, ...]:
    return shown["license"], shown["cutoff"], shown["source_url"]


@pytest.mark.parametrize(
    "earlier", [dt.timedelta(0), dt.timedelta(days=1)], ids=["same-time", "a-day-before"]
)
def test_a_planted_snapshot_record_that_contradicts_the_catalog_does_not_cover_it(
    arc: ArchiveCli, tmp_path: Path, database_url: str, earlier: dt.timedelta
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1", *PROVENANCE)
    before = arc.json("show", "r/g:v1")
    [genuine] = _records(arc, "snapshot")
    _as_before_records(arc)
    at = dt.datetime.strptime(genuine["at"], _BODY_TIME) - earlier
    planted = {k: v for k, v in genuine.items() if k != "name"}
    planted["at"] = at.strftime(_BODY_TIME)
    planted["actor"] = "mallory"
    planted["provenance"] = dict(
        genuine["provenance"], license="planted-proprietary", cutoff="2099-01-01", cutoff_precision="day",
        source_url="https://evil.example/",
    )  # fmt: skip
    key = _plant(arc, planted, at)

    upgraded = arc.json("upgrade")
    assert upgraded["written"].get("snapshot") == 1, upgraded
    [said] = [c for c in upgraded["contradicted"] if c.startswith(key)]
    assert "provenance.license" in said and "provenance.source_url" in said
    again = arc.json("upgrade")
    # idempotent, and still loud
    assert again["written"] == {} and again["contradicted"] == upgraded["contradicted"]
    assert key in arc("upgrade").stdout  # and said at the terminal

    drop_catalog(database_url)
    rebuilt = json.loads(arc("rebuild-catalog", "--json", ok=False).stdout)
    # the planted record replays after the catalog's and is refused: it contradicts the snapshot's first record
    assert list(rebuilt["refused"]) == [key] and "contradict" in rebuilt["refused"][key], rebuilt
    after = arc.json("show", "r/g:v1")
    assert _provenance(after) == _provenance(before) == ("mit", before["cutoff"], "https://example.org/g")
    assert after["created_at"] == before["created_at"]


def test_a_record_that_agrees_with_the_catalog_still_covers_it(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1", *PROVENANCE)
    arc("push", write_model(tmp_path / "m"), "r/g:v2")  # a re-push: its record gives no provenance
    upgraded = arc.json("upgrade")
    assert upgraded["written"] == {} and upgraded["contradicted"] == []


def test_a_key_distrusted_before_the_upgrade_is_recorded_as_distrusted_from_then(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    from modelarc.archive.signing import keys as keyring

    pem = tmp_path / "other.pem"
    pem.write_bytes(keyring.public_key_pem(keyring.generate_private_key()))
    fingerprint = arc.json("keys", "import", pem)["fingerprint"]
    arc("keys", "distrust", fingerprint)
    _as_before_records(arc)
    time.sleep(0.05)
    mark = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    time.sleep(0.05)

    assert arc.json("upgrade")["written"]["key"] == 3  # init's key; the other, trusted, then distrusted
    records = [r for r in _records(arc, "key") if r["fingerprint"] == fingerprint]
    assert [r["trusted"] for r in records] == [True, False]
    distrusted = dt.datetime.strptime(records[1]["at"], _BODY_TIME)
    assert distrusted < mark  # when `keys distrust` ran, not when the upgrade did
    assert records[1]["name"].startswith(distrusted.strftime(_NAME_TIME))


def test_a_planted_run_record_with_another_signature_does_not_cover_the_run(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", tiny_gpt2(tmp_path / "m"), "acme/gpt2:v1")
    arc("run", "acme/gpt2:v1", "--prompt", "the model", "--max-new-tokens", "2", "--record")
    runs = arc.json("runs")
    [genuine] = _records(arc, "run")
    _as_before_records(arc)
    envelope = json.loads(genuine["signature"])
    envelope["signatures"][0]["sig"] = envelope["signatures"][0]["sig"][
        ::-1
    ]  # garbage, as a planter could write
    planted = {k: v for k, v in genuine.items() if k != "name"}
    planted.update(actor="mallory", signature=json.dumps(envelope))
    _plant(arc, planted, dt.datetime.strptime(genuine["at"], _BODY_TIME))

    assert arc.json("upgrade")["written"].get("run") == 1
    drop_catalog(database_url)
    report = json.loads(arc("rebuild-catalog", "--json", ok=False).stdout)
    assert report["replayed"].get("run") == 1, report  # the planted one is refused; the run itself replays
    assert arc.json("runs") == runs
