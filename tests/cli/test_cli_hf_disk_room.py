"""push hf:// refuses, before a byte is downloaded, a revision its disks cannot hold: the real free space of the
download folder and of the store (one disk here, so both copies count) against the listing's sizes, plus
MODELARC_DISK_RESERVE. No mock: the listing claims sizes past the real free space."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import ArchiveCli
from hubserver import HubServer
from modelfactory import tiny_tensors, write_model

from modelarc.errors import DiskFullError


@pytest.fixture
def served(tmp_path: Path, hub: HubServer) -> Path:
    folder = write_model(tmp_path / "served", tiny_tensors(seed=5))
    hub.add("org/tiny", folder)
    return folder


def _claim(size: int) -> Any:
    """The listing says model.safetensors is ``size`` bytes."""

    def tamper(info: dict[str, Any]) -> None:
        for sib in info["siblings"]:  # type: ignore[union-attr]
            if sib["rfilename"] == "model.safetensors":
                sib["size"] = size
                sib["lfs"]["size"] = size

    return tamper


def _refused(arc: ArchiveCli, hub: HubServer) -> str:
    result = arc.fail("push", "hf://org/tiny", "org/tiny:v1")
    assert result.exit_code == DiskFullError.exit_code
    assert not [r for r in hub.requests if "/resolve/" in r], "a file was asked for"
    assert arc.json("ls") == [] and arc.json("audit", "--action", "import") == []
    return result.stderr.strip().splitlines()[-1]


def test_a_listing_larger_than_the_free_space_is_refused_before_any_download(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    free = shutil.disk_usage(tmp_path).free
    if free > (1 << 40) - (1 << 30):
        pytest.skip("more than a TiB free: no listing the import accepts is larger")
    hub.tamper_info = _claim(1 << 40)
    line = _refused(arc, hub)
    assert "not enough free space" in line and "MODELARC_DISK_RESERVE" in line and "TB" in line


def test_the_download_and_the_store_on_one_disk_need_room_for_both(
    arc: ArchiveCli, hub: HubServer, served: Path, tmp_path: Path
) -> None:
    """Three quarters of the free space: the download alone would fit, the download and the store's copy not."""
    arc.env["MODELARC_DISK_RESERVE"] = "0"
    hub.tamper_info = _claim(shutil.disk_usage(tmp_path).free * 3 // 4)
    line = _refused(arc, hub)
    assert "the download and the store's copy" in line


def test_the_reserve_is_kept_free(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    arc.env["MODELARC_DISK_RESERVE"] = "999999T"
    line = _refused(arc, hub)
    assert "kept free (MODELARC_DISK_RESERVE)" in line and "the download" in line


def test_a_model_that_fits_is_imported(arc: ArchiveCli, hub: HubServer, served: Path) -> None:
    arc.env["MODELARC_DISK_RESERVE"] = "1MiB"
    arc("push", "hf://org/tiny", "org/tiny:v1")


def test_a_reserve_that_is_no_size_is_refused_in_one_line(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    arc.env["MODELARC_DISK_RESERVE"] = "lots"
    line = arc.fail("push", "hf://org/tiny", "org/tiny:v1").stderr.strip().splitlines()[-1]
    assert "MODELARC_DISK_RESERVE" in line


def test_an_offline_import_is_refused_before_a_byte_is_copied_from_the_cache(
    arc: ArchiveCli, hub: HubServer, served: Path
) -> None:
    """With downloads off the cached revision is copied into a private folder and then into the store: the same
    room is needed, and checked from the cached files' sizes before the first copy."""
    arc("push", "hf://org/tiny", "org/tiny:v1")  # fills the Hugging Face cache
    hub.stop()
    arc.env["HF_HUB_OFFLINE"] = "1"
    arc.env["MODELARC_DISK_RESERVE"] = "999999T"
    result = arc.fail("push", "hf://org/tiny", "org/tiny:offline")
    assert result.exit_code == DiskFullError.exit_code
    line = result.stderr.strip().splitlines()[-1]
    assert "not enough free space" in line and "the download and the store's copy" in line, line
    assert [row["tags"] for row in arc.json("ls")] == [["v1"]]
    arc.env["MODELARC_DISK_RESERVE"] = "1MiB"
    assert arc.json("push", "hf://org/tiny", "org/tiny:offline")["stored_bytes_added"] == 0
