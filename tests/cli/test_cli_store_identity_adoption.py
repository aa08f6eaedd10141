"""An archive made before store identities (no `store-id` in the store, no row in the catalog) adopts one at its
first opening that may write, so the pairing check protects it from then on without `modelarc init` again; an
opening that may not write (a read-only store or catalog) keeps working without one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from modelarc.errors import StoreAccessError


def _strip_identity(arc: Any) -> None:
    """Make ``arc`` look like an archive from before identities: no store-id file, no catalog_settings row."""
    (arc.home / "store" / "store-id").unlink()
    engine = create_engine(arc.env["MODELARC_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM catalog_settings"))
    engine.dispose()


def _catalog_id(arc: Any) -> str | None:
    engine = create_engine(arc.env["MODELARC_DATABASE_URL"])
    with engine.connect() as conn:
        found = conn.execute(text("SELECT value FROM catalog_settings WHERE key = 'store_id'")).scalar()
    engine.dispose()
    return found


def _store_id(arc: Any) -> str | None:
    path = arc.home / "store" / "store-id"
    return json.loads(path.read_text())["store_id"] if path.exists() else None


@pytest.fixture
def old_archive(arc: Any, tmp_path: Path) -> Any:
    arc("push", write_model(tmp_path / "m"), "ns/m:v1")
    _strip_identity(arc)
    assert _store_id(arc) is None and _catalog_id(arc) is None
    return arc


def test_an_ordinary_command_adopts_an_identity_on_both_sides(old_archive: Any) -> None:
    assert [m["model"] for m in old_archive.json("ls")] == ["ns/m"]
    store_id = _store_id(old_archive)
    assert store_id and len(store_id) == 32 and _catalog_id(old_archive) == store_id
    assert not list((old_archive.home / "store" / "tmp").iterdir())  # written with temp file and rename
    assert old_archive.json("verify", "--all")["ok"]
    assert _store_id(old_archive) == _catalog_id(old_archive) == store_id  # adopted once, kept after


def test_once_adopted_another_store_is_refused(old_archive: Any, tmp_path: Path) -> None:
    old_archive("ls")
    other = type(old_archive)(tmp_path / "other-home", f"sqlite:///{tmp_path / 'other.db'}")
    other("init", "--store", tmp_path / "other-store")
    before = sorted(p for p in (tmp_path / "other-store").rglob("*"))
    old_archive.env["MODELARC_STORE_URL"] = str(tmp_path / "other-store")
    result = old_archive.fail("ls")
    assert result.exit_code == StoreAccessError.exit_code and "belongs to store" in result.stderr
    assert sorted(p for p in (tmp_path / "other-store").rglob("*")) == before

    bare = (
        tmp_path / "bare-store"
    )  # another store from before identities: it has none, the catalog has one now
    shutil.copytree(old_archive.home / "store", bare)
    (bare / "store-id").unlink()
    old_archive.env["MODELARC_STORE_URL"] = str(bare)
    assert "has no store identity" in old_archive.fail("ls").stderr
    assert not (bare / "store-id").exists()  # refused, never adopted
    del old_archive.env["MODELARC_STORE_URL"]
    assert old_archive.json("verify", "--all")["ok"]


def test_a_catalog_without_identity_and_a_store_with_one_keeps_opening_as_before(
    old_archive: Any, tmp_path: Path
) -> None:
    """Only a pair where neither side has an id adopts one: a store that has one and a catalog that has none is
    the current check's to judge (it opens them), never a reason to write."""
    (old_archive.home / "store" / "store-id").write_text(
        json.dumps({"format": 1, "store_id": "f" * 32}) + "\n"
    )
    old_archive("ls")
    assert _catalog_id(old_archive) is None and _store_id(old_archive) == "f" * 32


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv, to run modelarc without the capability that writes through permission bits",
)
def test_a_read_only_store_keeps_opening_without_an_identity(old_archive: Any) -> None:
    store = old_archive.home / "store"
    folders = [store, *(p for p in store.rglob("*") if p.is_dir())]
    for folder in folders:
        folder.chmod(0o555)
    try:
        # root without CAP_DAC_OVERRIDE: the permission bits bind it like any user (a read-only mount or share)
        proc = subprocess.run(
            [
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search,-fowner",
                sys.executable,
                "-m",
                "modelarc.cli.main",
                "ls",
                "--json",
            ],
            env={**os.environ, **old_archive.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert [m["model"] for m in json.loads(proc.stdout)] == ["ns/m"]
    assert (
        _store_id(old_archive) is None and _catalog_id(old_archive) is None
    )  # the catalog's row rolled back
    old_archive("ls")  # writable again: adopted now
    assert _store_id(old_archive) is not None and _store_id(old_archive) == _catalog_id(old_archive)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # a read-only catalog: a standby's session
def test_a_read_only_catalog_keeps_opening_and_the_store_is_left_alone(old_archive: Any) -> None:
    url = make_url(old_archive.env["MODELARC_DATABASE_URL"])
    assert url.get_backend_name() == "postgresql"
    # every transaction read-only, as on a hot standby
    read_only = url.update_query_dict({"options": "-c default_transaction_read_only=on"})
    old_archive.env["MODELARC_DATABASE_URL"] = read_only.render_as_string(hide_password=False)
    assert [m["model"] for m in old_archive.json("ls")] == ["ns/m"]
    assert _store_id(old_archive) is None  # the catalog refused first: the store was not touched
    old_archive.env["MODELARC_DATABASE_URL"] = url.render_as_string(hide_password=False)
    assert _catalog_id(old_archive) is None
