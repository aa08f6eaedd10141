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


@pytest.fixture(scope="module")
def module_server(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``server`` made once per module and backend and shared by the module's tests: for tests that only read it,
    or change it in ways no other test of the module observes (each module says which). The catalog URL is set
    only around ``Archive.init`` (the MODELARC_* guard in tests/conftest.py)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(tmp_path_factory.mktemp("server") / "server")
    try:
        push = create_token(archive, "push", "ci-push").token
        read = create_token(archive, "read", "ci-read").token
        with serve(archive) as url:
            yield Server(archive, url, push, read)
    finally:
        archive.close()
