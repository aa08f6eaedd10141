"""Catalog records in a test archive's store (archive/records.py): reading them, planting altered copies as
someone who can write the store would, and losing the catalog to rebuild it from them. Shared by the upgrade and
rebuild tests of tests/cli."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from catalogkit import drop_catalog

from modelarc.archive.repository import Archive

ArchiveCli = Any  # tests/cli/conftest.py
NAME_TIME = "%Y%m%dT%H%M%S%fZ"  # a record's name: records/<time>-<sha256>.json
BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # the times inside a record


def records(arc: ArchiveCli, kind: str) -> list[dict[str, Any]]:
    """The records of ``kind`` in name (replay) order, each body with its file ``name`` added."""
    paths = sorted((arc.home / "store" / "records").glob("*.json"))
    bodies = [dict(json.loads(p.read_bytes()), name=p.name) for p in paths]
    return [b for b in bodies if b["kind"] == kind]


def as_before_records(arc: ArchiveCli) -> None:
    """The store as an archive made before records existed: none."""
    shutil.rmtree(arc.home / "store" / "records")
    (arc.home / "store" / "records").mkdir()


def plant(arc: ArchiveCli, genuine: dict[str, Any], later: dt.timedelta = dt.timedelta(0), **change: Any) -> str:
    """The genuine record with ``change``, named ``later`` than it (by default at its time, as a planter would, to
    look real; later, a mirror's copy or a planted one); its store key."""
    body = {k: v for k, v in genuine.items() if k != "name"}
    body.update(change)
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    written = dt.datetime.strptime(genuine["name"].split("-")[0], NAME_TIME) + later
    name = f"{written.strftime(NAME_TIME)}-{hashlib.sha256(data).hexdigest()}.json"
    (arc.home / "store" / "records" / name).write_bytes(data)
    return f"records/{name}"


@contextmanager
def catalog_session(arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A session on the archive's catalog, to read what it holds; MODELARC_DATABASE_URL only while it is open."""
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive, archive.catalog.session() as s:
            yield s


def rebuild(arc: ArchiveCli, database_url: str) -> dict[str, Any]:
    """Lose the catalog and rebuild it from the store: `rebuild-catalog --json`'s report (it may exit non-zero,
    having refused records; never with a traceback)."""
    drop_catalog(database_url)
    result = arc("rebuild-catalog", "--json", ok=False)
    assert "Traceback" not in result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def signal_on_start(monkeypatch: pytest.MonkeyPatch, module: Any) -> threading.Event:
    """An event set when ``module``'s command notes its start (``start_attempt``, archive/left_records.py) in a thread
    other than the test's: a second run of a command has got that far before the first commits, however loaded the
    machine."""
    event = threading.Event()
    noted = module.start_attempt

    def signalled(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            event.set()
        return noted(*args, **kwargs)

    monkeypatch.setattr(module, "start_attempt", signalled)
    return event
