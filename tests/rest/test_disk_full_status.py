"""A server whose store is full answers 507 Insufficient Storage with one problem+json line, not a bare 500."""

import os
from pathlib import Path

import pytest
from diskfull import FullDisk
from fastapi.testclient import TestClient

from modelarc.api.app import create_app
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token
from modelarc.storage import ObjectStore


def test_upload_to_a_full_store_is_507(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    archive, _ = Archive.init(tmp_path / "home")
    token = create_token(archive, "push", "pusher").token
    elsewhere = ObjectStore.open_local(tmp_path / "elsewhere")  # the pusher's store: objects travel as stored
    oid = elsewhere.put(os.urandom(1 << 20)).id  # incompressible: 1 MiB on disk
    blob = elsewhere.get_stored(oid)
    with TestClient(create_app(lambda: archive)) as client, FullDisk(tmp_path / "home" / "store", 4096):
        answer = client.put(f"/v1/objects/{oid}", content=blob, headers={"Authorization": f"Bearer {token}"})
    archive.close()
    assert answer.status_code == 507
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["title"] == "DiskFullError" and "disk full" in answer.json()["detail"]
    assert not list((tmp_path / "home" / "store" / "tmp").iterdir())
