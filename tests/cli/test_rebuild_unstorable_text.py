"""A record the catalog cannot hold after all is refused alone: `rebuild-catalog` replays each checked record's
writes in a savepoint, so text the database refuses (a lone surrogate, which no UTF-8 database stores; a NUL,
which PostgreSQL's text cannot hold) stops that record, reported with the database's reason, and every other record
is rebuilt (exit 5), as for any failing record. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import write_model
from recordkit import NAME_TIME
from recordkit import rebuild as _rebuild
from recordkit import records as _records

ArchiveCli = Any  # tests/cli/conftest.py


def _plant_raw(arc: ArchiveCli, text: str, after: str) -> str:
    """A tag record written as raw JSON (json.dumps would not keep the lone surrogate's escape as is), named a
    second after the record ``after``."""
    data = text.encode()
    written = dt.datetime.strptime(after.split("-")[0], NAME_TIME) + dt.timedelta(seconds=1)
    name = f"{written.strftime(NAME_TIME)}-{hashlib.sha256(data).hexdigest()}.json"
    (arc.home / "store" / "records" / name).write_bytes(data)
    return f"records/{name}"


@pytest.mark.parametrize("escape", ["\\ud800", "\\udcff", "\\u0000"], ids=["high-surrogate", "low-surrogate", "nul"])
def test_a_record_whose_text_the_catalog_cannot_hold_is_refused_alone(
    arc: ArchiveCli, tmp_path: Path, database_url: str, escape: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1")
    [snapshot] = _records(arc, "snapshot")
    planted = _plant_raw(
        arc,
        '{"actor":"evil' + escape + '","at":"' + snapshot["at"] + '","format":"modelarc.record","kind":"tag",'
        '"model":"acme/m","previous":null,"snapshot":"' + snapshot["snapshot"] + '","tag":"v2","version":1}',
        snapshot["name"],
    )
    report = _rebuild(arc, database_url)
    if escape == "\\u0000" and database_url.startswith("sqlite"):
        # SQLite stores a NUL in text: the record replays like any other tag move
        assert report["ok"] and report["replayed"].get("tag") == 1, report
        return
    assert list(report["refused"]) == [planted], report
    assert "the catalog cannot hold it" in report["refused"][planted], report
    assert report["replayed"] == {"key": 1, "snapshot": 1}, report
    assert [row["tags"] for row in arc.json("ls")] == [["v1"]]
    drop_catalog(database_url)  # once more, for the text report: it prints the reason in one printable line
    text = arc("rebuild-catalog", ok=False)
    assert text.exit_code == 5 and "Traceback" not in text.output, text.output
    assert f"NOT REPLAYED  {planted}: tag: the catalog cannot hold it" in text.output, text.output
