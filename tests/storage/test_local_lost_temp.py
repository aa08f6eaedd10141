"""LocalBackend.put when its temp file is removed before the rename (gc clears ``tmp/``, which it may only do once
no writer holds the store lock): a precise ``StoreWriteLostError``, never a raw missing-file error, nothing stored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelarc.errors import StoreWriteLostError
from modelarc.storage.local import LocalBackend

KEY = "objects/ab/" + "ab" * 32


def test_a_temp_file_cleared_before_its_rename_is_named_and_nothing_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend(tmp_path)
    real_replace = os.replace

    def clearing_tmp_first(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        for entry in backend.tmp.iterdir():  # as gc's clean_tmp does, between the write and the rename
            entry.unlink()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", clearing_tmp_first)
    with pytest.raises(StoreWriteLostError, match=rf"temp file .*/tmp/.* was removed before its rename into .*/{KEY}: something cleared"):
        backend.put(KEY, b"weights")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not backend.has(KEY)
    backend.put(KEY, b"weights")  # run again, it is stored
    assert backend.get(KEY) == b"weights"


def test_a_missing_destination_folder_is_still_the_system_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the temp file gone means a cleared ``tmp/``; anything else missing is said as the system says it."""
    backend = LocalBackend(tmp_path)
    real_replace = os.replace

    def folder_gone(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        os.rmdir(Path(dst).parent)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", folder_gone)
    with pytest.raises(FileNotFoundError):
        backend.put(KEY, b"weights")
    assert list(backend.tmp.iterdir()) == []  # and its temp file is not left behind
