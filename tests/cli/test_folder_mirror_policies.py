"""A folder mirror carries the access policies set after its first sync (they are `access` records, which every
`mirror sync` copies), so a catalog rebuilt from the mirror alone withholds what the primary withheld."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from catalogkit import drop_catalog
from modelfactory import write_model

if TYPE_CHECKING:
    from conftest import ArchiveCli


def test_a_policy_set_after_the_first_sync_reaches_a_folder_mirror_and_its_rebuild(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", str(write_model(tmp_path / "m")), "acme/later:v1")
    arc("mirror", "add", "backup", tmp_path / "mirror")
    assert arc.json("mirror", "sync")[0]["ok"]
    arc("access", "set", "acme/later", "restricted", "--reason", "licence withdrawn", "--withhold", "*.json")
    [synced] = arc.json("mirror", "sync")
    assert synced["ok"] and synced["records_copied"] == 1

    shutil.rmtree(arc.home)  # only the mirror is left
    drop_catalog(database_url)
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'new.db'}"
    fresh = type(arc)(tmp_path / "new-home", database_url)
    fresh("init", "--store", tmp_path / "mirror")
    assert fresh.json("rebuild-catalog")["ok"]
    [found] = fresh.json("access", "ls", "acme/later")
    policy = found["policy"]
    assert (policy["level"], policy["reason"], policy["files"]) == (
        "restricted",
        "licence withdrawn",
        ["*.json"],
    )
