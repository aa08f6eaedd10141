"""`data attach` run again after a kill between its record and its commit completes the attachment the left record
states (archive/left_records.py), dated as it is. Before, the re-run wrote a second record: a rebuild replayed two
attachments where the catalog held one (attachments are append-only, so both were taken), and fsck named the first
for good. The interrupted state is made as tests/cli/test_fsck_records.py makes its own: the command's steps in its
transaction, which then rolls back."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import write_model
from recordkit import records as _records
from recordkit import signal_on_start

from modelarc.archive.left_records import attempt_key, start_attempt
from modelarc.archive.provenance import data as data_module
from modelarc.archive.provenance.data import apply_attachment, attach_data, load_data_manifest, new_dataset
from modelarc.archive.records import catalog_time, write_record
from modelarc.archive.repository import Archive
from modelarc.registry import queries as q
from modelarc.registry.records import ObjectRecord

ArchiveCli = Any  # tests/cli/conftest.py

DATA = {"version": 1, "datasets": [{"name": "logs", "version": "2", "records": 10, "role": "finetune"}]}


def _interrupted_attach(
    arc: ArchiveCli, monkeypatch: pytest.MonkeyPatch, path: Path, *, ref_text: str = "r/g:v1", actor: str = "me"
) -> None:
    """`modelarc data attach r/g:v1 PATH` stopped between writing its record and its commit, its start noted."""
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            manifest = load_data_manifest(path)
            ref, snap = archive.resolve("r/g:v1")
            put = archive.store.put(manifest.raw)
            archive.store.sync()
            start_attempt(archive, attempt_key("data", str(snap.digest), put.id), fallback=catalog_time())
            try:
                with archive.catalog.session() as s:
                    at = catalog_time()
                    stored = ObjectRecord(put.id, put.raw_size, put.stored_size, put.codec)
                    datasets = [new_dataset(e) for e in manifest.datasets]
                    apply_attachment(s, snap, stored, datasets, actor=actor, target=ref_text, at=at)
                    s.flush()
                    write_record(archive.store.backend, s, "data", at=at, actor=actor, model=snap.model,
                                 snapshot=snap.digest, ref=ref_text, manifest=put.id)  # fmt: skip
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                pass


@pytest.mark.parametrize("differs", ["nothing", "actor"])
def test_data_attach_run_again_completes_the_left_attachment(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, differs: str
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    path = tmp_path / "data.json"
    path.write_text(json.dumps(DATA))
    _interrupted_attach(arc, monkeypatch, path, actor="someone-else" if differs == "actor" else "me")
    [left] = _records(arc, "data")
    assert arc.json("fsck")["records_not_in_catalog"]

    arc.env["MODELARC_ACTOR"] = "me"
    out = arc("data", "attach", "r/g:v1", path)
    names = [r["name"] for r in _records(arc, "data")]
    if differs == "actor":
        assert len(names) == 2 and f"warning: records/{left['name']}" in out.stderr, out.stderr
        return
    said = "completed the attachment an earlier `data attach` stopped before its commit: its record records/"
    assert said + left["name"] in out.stdout.replace("\n", " "), out.stdout
    assert names == [left["name"]]
    checked = arc.json("fsck")
    assert checked["ok"] and checked["records_not_in_catalog"] == [] and checked["records_contradicted"] == []
    before = arc.json("show", "r/g:v1")["datasets"]
    assert len(before) == 1, before

    drop_catalog(database_url)  # the rebuild brings back one attachment, as the catalog holds
    report = arc.json("rebuild-catalog")
    assert report["ok"] and report["replayed"]["data"] == 1, report
    assert arc.json("show", "r/g:v1")["datasets"] == before


def test_a_run_does_not_complete_the_record_of_one_still_in_flight(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Two `data attach` of one manifest at once: B starts while A has written its record and not committed. B
    used to find A's note and record (not committed, so not held), complete it, and commit after A: two
    attachments, one record, and a rebuild brought back one. B now takes the model's lock before it looks, so it
    finds A's record committed and writes its own."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    path = tmp_path / "data.json"
    path.write_text(json.dumps(DATA))
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    monkeypatch.setenv("MODELARC_ACTOR", "me")
    failed: list[BaseException] = []
    started = signal_on_start(monkeypatch, data_module)
    with Archive.open(arc.home) as a, Archive.open(arc.home) as b:
        manifest = load_data_manifest(path)
        _ref, snap = a.resolve("r/g:v1")
        put = a.store.put(manifest.raw)
        a.store.sync()
        start_attempt(a, attempt_key("data", str(snap.digest), put.id), fallback=catalog_time())
        with a.catalog.session() as s:  # run A, up to its record: its steps in attach_data
            q.lock_model(s, q.require_model(s, "r", "g").row_id)
            at = catalog_time()
            stored = ObjectRecord(put.id, put.raw_size, put.stored_size, put.codec)
            datasets = [new_dataset(e) for e in manifest.datasets]
            apply_attachment(s, snap, stored, datasets, actor="me", target="r/g:v1", at=at)
            s.flush()
            write_record(a.store.backend, s, "data", at=at, actor="me", model=snap.model, snapshot=snap.digest,
                         ref="r/g:v1", manifest=put.id)  # fmt: skip

            def run_b() -> None:
                try:
                    attach_data(b, "r/g:v1", load_data_manifest(path))
                except BaseException as exc:  # noqa: BLE001 (reported below)
                    failed.append(exc)

            other = threading.Thread(target=run_b)
            other.start()
            assert started.wait(60)  # B has stored the manifest and is noting its start
            time.sleep(0.5)  # and waits for A's lock, or (before) had found A's record already
        other.join(60)  # A committed as its session closed
    assert failed == [] and not other.is_alive()
    assert len(_records(arc, "data")) == 2  # one record per attachment
    drop_catalog(database_url)
    report = arc.json("rebuild-catalog")
    assert report["ok"] and report["replayed"]["data"] == 2, report
