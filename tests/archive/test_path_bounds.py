"""A manifest path deeper or longer than any restore can create is refused when the manifest is read, in one line:
a path of thousands of levels met pathlib's per-level recursion as a RecursionError half-way through a pull."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelfactory import write_model

from modelarc.archive.ingest import ingest
from modelarc.archive.manifest import (
    MAX_PATH_BYTES,
    MAX_PATH_DEPTH,
    SnapshotManifest,
    canonical_json,
    path_problem,
)
from modelarc.errors import UsageError
from modelarc.storage import ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("d/" * 2000 + "f", "levels deep"),
        ("d/" * MAX_PATH_DEPTH + "f", "levels deep"),
        ("/".join(["n" * 200] * 21), "bytes long"),
    ],
)
def test_a_path_no_restore_can_create_is_refused(
    tmp_path: Path, store: ObjectStore, path: str, why: str
) -> None:
    assert why in (path_problem(path) or "")
    doc = ingest(write_model(tmp_path / "m"), store).manifest.to_json()
    doc["files"][0]["path"] = path
    with pytest.raises(UsageError, match=why):
        SnapshotManifest.from_bytes(canonical_json(doc))


def test_paths_at_the_bounds_are_accepted() -> None:
    assert path_problem("d/" * (MAX_PATH_DEPTH - 1) + "f") is None
    assert path_problem("/".join(["n" * 200] * 20)) is None  # 4019 bytes
    assert len("/".join(["n" * 200] * 20)) <= MAX_PATH_BYTES


def test_an_absolute_path_and_a_drive_like_one_are_told_apart() -> None:
    assert path_problem("/etc/passwd") == "is absolute"
    assert "Windows drive" in (path_problem("C:notes.txt") or "")
    assert "absolute" not in (path_problem("1:notes.txt") or "absolute")
