"""Where the store lives: opening an archive never creates a store (only `modelarc init` does), and a store setting
that cannot be a store (not a string, an unknown scheme://, empty) is one error line before anything is written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from modelarc.errors import StoreAccessError
from modelarc.storage.location import open_backend


def _set_config_store(arc: Any, value: object) -> None:
    (arc.home / "config.json").write_text(json.dumps({"store": value}))


@pytest.mark.parametrize("command", [["ls"], ["verify", "--all"], ["stats"]])
def test_a_read_command_refuses_a_configured_store_that_is_not_there_and_creates_nothing(
    arc: Any, tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "newstoredir" / "st"
    _set_config_store(arc, str(missing))
    result = arc.fail(*command)
    assert result.exit_code == StoreAccessError.exit_code
    assert f"no store at '{missing}'" in result.stderr and "config.json" in result.stderr
    assert not (tmp_path / "newstoredir").exists()


@pytest.mark.parametrize("value", ["garbage", "\udcff"])
def test_a_store_env_naming_no_folder_creates_none_in_the_current_folder(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    arc.env["MODELARC_STORE_URL"] = value
    result = arc.fail("ls")
    assert "MODELARC_STORE_URL" in result.stderr
    assert os.listdir(work) == []


def test_a_store_env_with_an_unknown_scheme_is_refused_by_init_and_ls_alike(
    bare_arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    bare_arc.env["MODELARC_STORE_URL"] = "garbage://x"
    result = bare_arc.fail("init")
    assert result.exit_code == 2 and "unsupported store URL scheme 'garbage'" in result.stderr
    assert sorted(os.listdir(tmp_path)) == before  # no garbage: folder, and no home either
    del bare_arc.env["MODELARC_STORE_URL"]
    bare_arc("init")
    bare_arc.env["MODELARC_STORE_URL"] = "garbage://x"
    result = bare_arc.fail("ls")
    assert result.exit_code == 2 and "unsupported store URL scheme 'garbage'" in result.stderr
    assert not (tmp_path / "garbage:").exists()


def test_init_store_with_an_unknown_scheme_is_refused_and_creates_nothing(
    bare_arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    result = bare_arc.fail("init", "--store", "garbage://x")
    assert "unsupported store URL scheme 'garbage'" in result.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_init_store_empty_is_refused(bare_arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    result = bare_arc.fail("init", "--store", "")
    assert result.exit_code == 2 and "is empty" in result.stderr
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("value", [5, "", ["/tmp/x"], {"path": "/tmp/x"}, True])
def test_a_config_store_that_is_not_a_folder_path_string_is_refused_naming_config_json(
    arc: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: object
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    _set_config_store(arc, value)
    result = arc.fail("ls")
    assert result.exit_code == 2 and "config.json" in result.stderr and '"store"' in result.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_init_still_creates_a_new_store_folder(bare_arc: Any, tmp_path: Path) -> None:
    bare_arc("init", "--store", tmp_path / "elsewhere" / "st")
    assert (tmp_path / "elsewhere" / "st").is_dir()
    bare_arc("ls")


def test_an_existing_store_without_tmp_still_takes_a_push(arc: Any, tmp_path: Path) -> None:
    from modelfactory import write_model

    (arc.home / "store" / "tmp").rmdir()
    arc("push", write_model(tmp_path / "m"), "ns/m:v1")
    arc("verify", "ns/m:v1")


def test_open_backend_creates_a_folder_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(StoreAccessError):
        open_backend(str(tmp_path / "missing"), create=False)
    assert not (tmp_path / "missing").exists()
    open_backend(str(tmp_path / "made"))
    assert (tmp_path / "made" / "tmp").is_dir()
