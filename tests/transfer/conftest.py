"""The served archive every transfer test pushes to and pulls from, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from liveserver import serve
from transferkit import Server

from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token


@pytest.fixture
def server(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    archive, _ = Archive.init(tmp_path / "server")
    monkeypatch.delenv("MODELARC_DATABASE_URL")
    push = create_token(archive, "push", "ci-push").token
    read = create_token(archive, "read", "ci-read").token
    with serve(archive) as url:
        yield Server(archive, url, push, read)
    archive.close()
