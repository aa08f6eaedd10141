"""A catalog is paired with one store: pointing an archive at another store (MODELARC_STORE_URL, config.json) is
refused before a push can put its objects there and its snapshot here. Archives from before store identities
(which adopt one), and several homes sharing one store through `init`, keep working."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelfactory import write_model

from modelarc.errors import StoreAccessError


def _home(arc: Any, tmp_path: Path, name: str) -> Any:
    """Another home like ``arc`` (tests/cli/conftest.py), with a SQLite catalog of its own."""
    return type(arc)(tmp_path / f"{name}-home", f"sqlite:///{tmp_path / name}.db")


def _other_store(arc: Any, tmp_path: Path) -> Path:
    """A store made by another home's init, so it has an identity of its own."""
    other = _home(arc, tmp_path, "other")
    other("init", "--store", tmp_path / "other-store")
    return tmp_path / "other-store"


def test_push_to_another_store_is_refused_and_the_catalog_is_unchanged(
    arc: Any, tmp_path: Path
) -> None:
    src = write_model(tmp_path / "m")
    arc("push", src, "ns/m:v1")
    other = _other_store(arc, tmp_path)
    before = sorted(p for p in other.rglob("*"))
    arc.env["MODELARC_STORE_URL"] = str(other)
    result = arc.fail("push", src, "ns/split:v1")
    assert result.exit_code == StoreAccessError.exit_code
    assert "belongs to store" in result.stderr and "MODELARC_STORE_URL" in result.stderr
    assert sorted(p for p in other.rglob("*")) == before
    del arc.env["MODELARC_STORE_URL"]
    assert [m["model"] for m in arc.json("ls")] == ["ns/m"]
    assert arc.json("verify", "--all")["ok"]


def test_a_store_without_identity_is_refused_once_the_catalog_has_one(arc: Any, tmp_path: Path) -> None:
    bare = tmp_path / "bare-store"
    (bare / "objects").mkdir(parents=True)
    (arc.home / "config.json").write_text(json.dumps({"store": str(bare)}))
    result = arc.fail("ls")
    assert "has no store identity" in result.stderr and "config.json" in result.stderr


def test_an_archive_from_before_identities_keeps_opening_and_adopts_one(arc: Any, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    arc("push", write_model(tmp_path / "m"), "ns/m:v1")
    (arc.home / "store" / "store-id").unlink()
    engine = create_engine(arc.env["MODELARC_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM catalog_settings"))
    engine.dispose()
    assert arc.json("verify", "--all")["ok"]
    assert (arc.home / "store" / "store-id").is_file()  # that opening adopted one (see ..._adoption.py)
    arc("init")
    assert (arc.home / "store" / "store-id").is_file()
    assert arc.json("verify", "--all")["ok"]


def test_a_second_home_can_still_share_a_store_through_init(arc: Any, tmp_path: Path) -> None:
    other = _other_store(arc, tmp_path)
    third = _home(arc, tmp_path, "third")
    third("init", "--store", other)
    third("push", write_model(tmp_path / "m"), "ns/m:v1")
    assert third.json("verify", "--all")["ok"]


def _host_sharing_the_catalog(arc: Any, tmp_path: Path, name: str) -> Any:
    """A second host of one catalog (docs/DEPLOY.md): a home of its own on ``arc``'s catalog."""
    return type(arc)(tmp_path / f"{name}-home", arc.env["MODELARC_DATABASE_URL"])


def test_a_new_empty_store_for_a_catalog_with_snapshots_is_refused_and_nothing_changes(
    arc: Any, tmp_path: Path
) -> None:
    arc("push", write_model(tmp_path / "m"), "ns/m:v1")
    keys_before = arc.json("keys", "list")
    host_b = _host_sharing_the_catalog(arc, tmp_path, "b")
    result = host_b.fail("init")  # MODELARC_STORE_URL forgotten: the default, new HOME/store
    assert result.exit_code == StoreAccessError.exit_code
    line = result.stderr.strip().splitlines()[-1]
    assert "holding 1 snapshot;" in line and "new and empty" in line and "MODELARC_STORE_URL" in line
    assert not host_b.home.exists(), sorted(host_b.home.rglob("*"))  # no store, no key, no home left behind
    assert arc.json("keys", "list") == keys_before  # host B's key was not registered
    wrong = tmp_path / "new-store"
    assert "new and empty" in host_b.fail("init", "--store", wrong).stderr
    assert not wrong.exists() and not (host_b.home / "config.json").exists()
    host_b("init", "--store", arc.home / "store")  # the fix the message names; not barred by the refusal
    assert [m["model"] for m in host_b.json("ls")] == ["ns/m"]
    assert host_b.json("verify", "--all")["ok"]


def test_a_store_copied_back_from_a_mirror_takes_the_catalogs_id(arc: Any, tmp_path: Path) -> None:
    import shutil

    arc("push", write_model(tmp_path / "m"), "ns/m:v1")
    store = arc.home / "store"
    original = (store / "store-id").read_bytes()
    arc("mirror", "add", "backup", tmp_path / "mirror")
    arc("mirror", "sync")
    shutil.rmtree(store)
    shutil.copytree(tmp_path / "mirror", store)
    assert not (store / "store-id").exists()
    arc("init")
    assert (store / "store-id").read_bytes() == original
    assert arc.json("verify", "--all")["ok"]


def test_a_new_store_for_a_catalog_without_snapshots_takes_its_id(arc: Any, tmp_path: Path) -> None:
    host_b = _host_sharing_the_catalog(arc, tmp_path, "b")
    host_b("init")  # nothing recorded that this store would lack
    assert (host_b.home / "store" / "store-id").read_bytes() == (arc.home / "store" / "store-id").read_bytes()
