"""An initialised archive per test, its catalog on each backend (SQLite and PostgreSQL, ``database_url``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelarc.archive.repository import Archive


@pytest.fixture
def archive(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    arc, _ = Archive.init(tmp_path / "home")
    yield arc
    arc.close()
