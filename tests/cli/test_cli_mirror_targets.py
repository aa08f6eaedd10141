"""`modelarc mirror add` and `mirror sync`: a mirror is a place of its own. A target inside the archive's store or
home (or one holding the store) would make the store list the mirror's copies as its own and break gc for good;
an empty target or name would have meant the current folder or every mirror."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model


@pytest.fixture
def pushed(arc: Any, tmp_path: Path) -> Any:
    arc("push", write_model(tmp_path / "m"), "ns/m:v1")
    return arc


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("store/objects", "inside this archive's store"),
        ("store/records", "inside this archive's store"),
        ("store/tmp", "inside this archive's store"),
        ("store/objects/new/deeper", "inside this archive's store"),
        ("store", "this archive's own store"),
        ("store/", "this archive's own store"),
        ("keys/../store", "this archive's own store"),
        ("", "holds this archive's store"),  # the home itself
        ("elsewhere", "inside this archive's home"),
        ("..", "holds this archive's store"),
    ],
)
def test_mirror_add_refuses_a_target_overlapping_the_store_or_home(
    pushed: Any, target: str, says: str
) -> None:
    before = sorted(p for p in pushed.home.rglob("*"))
    result = pushed.fail("mirror", "add", "inner", os.path.join(pushed.home, target) if target else pushed.home)
    assert says in result.stderr
    assert result.exit_code == 2
    assert sorted(p for p in pushed.home.rglob("*")) == before  # nothing made inside
    assert pushed.json("mirror", "ls") == []
    pushed("gc")


def test_mirror_add_resolves_symlinks_into_the_store(pushed: Any, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(pushed.home / "store" / "objects")
    result = pushed.fail("mirror", "add", "inner", tmp_path / "link" / "sub")
    assert "inside this archive's store" in result.stderr
    (tmp_path / "homelink").symlink_to(pushed.home)
    result = pushed.fail("mirror", "add", "inner", tmp_path / "homelink" / "store")
    assert "this archive's own store" in result.stderr


def test_a_mirror_beside_the_home_is_still_accepted_and_gc_stays_clean(pushed: Any, tmp_path: Path) -> None:
    pushed("mirror", "add", "side", tmp_path / "mirror")
    assert pushed.json("mirror", "sync")[0]["ok"]
    pushed("gc")
    assert pushed.json("fsck")["ok"]


def test_mirror_add_refuses_an_empty_target_without_touching_the_current_folder(
    pushed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = pushed.fail("mirror", "add", "mm", "")
    assert "is empty" in result.stderr
    assert os.listdir(work) == [] and pushed.json("mirror", "ls") == []


def test_mirror_sync_refuses_an_empty_name_instead_of_syncing_every_mirror(pushed: Any, tmp_path: Path) -> None:
    pushed("mirror", "add", "side", tmp_path / "mirror")
    result = pushed.fail("mirror", "sync", "")
    assert "is empty" in result.stderr
    assert pushed.json("mirror", "ls")[0]["synced_at"] is None


def test_mirror_add_with_a_used_name_refuses_before_creating_the_target(pushed: Any, tmp_path: Path) -> None:
    pushed("mirror", "add", "side", tmp_path / "mirror")
    result = pushed.fail("mirror", "add", "side", tmp_path / "other")
    assert "already exists" in result.stderr
    assert not (tmp_path / "other").exists()


def test_mirror_ls_shows_a_missing_mirror_folder_without_making_it(pushed: Any, tmp_path: Path) -> None:
    pushed("mirror", "add", "side", tmp_path / "mirror")
    import shutil

    shutil.rmtree(tmp_path / "mirror")
    state = pushed.json("mirror", "ls")[0]
    assert state["error"] and "unreachable: no folder there" in state["error"]
    assert not (tmp_path / "mirror").exists()


def test_sync_refuses_a_mirror_inside_the_store_recorded_before_these_checks(pushed: Any) -> None:
    import datetime as dt

    from sqlalchemy import create_engine, text

    inner = pushed.home / "store" / "objects"
    engine = create_engine(pushed.env["MODELARC_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO mirrors (name, target, added_at, objects_copied) VALUES ('inner', :t, :at, 0)"),
            {"t": str(inner), "at": dt.datetime(2026, 1, 1)},
        )
    engine.dispose()
    before = sorted(p for p in inner.rglob("*"))
    result = pushed.fail("mirror", "sync", "inner")
    assert "inside this archive's store" in result.stderr
    assert sorted(p for p in inner.rglob("*")) == before
    pushed("gc")


def test_mirror_add_refuses_a_symlink_loop_in_one_line(pushed: Any, tmp_path: Path) -> None:
    """Path.resolve raised RuntimeError on the loop: a 59-line traceback."""
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    for target in (tmp_path / "l1", tmp_path / "l1" / "sub"):
        result = pushed.fail("mirror", "add", "loop", target)
        assert result.exit_code == 2 and "cannot follow the links of" in result.stderr
    assert pushed.json("mirror", "ls") == []


def test_all_is_not_a_mirror_name(pushed: Any, tmp_path: Path) -> None:
    """`push --mirror all` syncs every mirror, so a mirror named all could never be chosen alone there."""
    result = pushed.fail("mirror", "add", "all", tmp_path / "m1")
    assert result.exit_code == 2 and "'all' is not a mirror name" in result.stderr
    assert not (tmp_path / "m1").exists() and pushed.json("mirror", "ls") == []
