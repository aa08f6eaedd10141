"""`modelarc cache ls` and `cache clear`: the sizes they report are the files on disk, and clearing frees them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from modelfactory import tiny_llama

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.models import load_model

ArchiveCli = Any  # tests/cli/conftest.py


@pytest.fixture
def cached(arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two models of different sizes pushed and loaded once each with cache=True (through the Python API)."""
    refs = []
    for seed, layers in ((0, 1), (1, 3)):
        folder = tiny_llama(tmp_path / f"m{seed}", seed=seed, layers=layers)
        arc("push", folder, f"acme/m{seed}:v1", "--no-progress")
        refs.append(f"acme/m{seed}:v1")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive:
        for ref in refs:
            load_model(archive, ref, device="cpu", cache=True)
    return refs


def _bytes_on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.parent.name == "files")


def test_ls_sizes_add_up_to_the_files_on_disk(arc: ArchiveCli, cached: list[str]) -> None:
    listing = arc.json("cache", "ls")
    assert len(listing["entries"]) == 2
    assert {e["model"] for e in listing["entries"]} == {"acme/m0", "acme/m1"}
    assert listing["bytes"] == sum(e["bytes"] for e in listing["entries"])
    assert listing["bytes"] == _bytes_on_disk(Path(listing["path"]))
    assert listing["entries"][0]["bytes"] != listing["entries"][1]["bytes"]
    assert listing["max_bytes"] is None and listing["temp_folders"] == 0
    assert Path(listing["path"]) == arc.home / "cache"
    text = arc("cache", "ls").stdout
    assert "2 snapshots" in text and "acme/m0" in text and "acme/m1" in text


def test_clear_one_ref_frees_its_entry_only(arc: ArchiveCli, cached: list[str]) -> None:
    before = arc.json("cache", "ls")
    digest = arc.json("show", cached[0])["snapshot"]
    out = arc.json("cache", "clear", cached[0])
    (removed,) = out["removed"]
    assert removed["snapshot"] == digest
    after = arc.json("cache", "ls")
    assert out["bytes_freed"] == removed["bytes"] == before["bytes"] - after["bytes"]
    assert [e["model"] for e in after["entries"]] == ["acme/m1"]
    assert after["bytes"] == _bytes_on_disk(Path(after["path"]))
    assert "not in the load cache" in arc("cache", "clear", cached[0]).stdout  # clearing twice is no error


def test_clear_all_frees_everything(arc: ArchiveCli, cached: list[str]) -> None:
    before = arc.json("cache", "ls")
    left = arc.home / "cache" / "tmp" / ("fill-" + "e" * 32)  # what a killed load leaves
    left.mkdir()
    (left / "part").write_bytes(b"x" * 100)
    assert arc.json("cache", "ls")["temp_bytes"] == 100
    out = arc.json("cache", "clear", "--all")
    assert out["bytes_freed"] == before["bytes"] + 100
    after = arc.json("cache", "ls")
    assert after["entries"] == [] and after["bytes"] == 0 and after["temp_folders"] == 0
    assert not [p for p in (arc.home / "cache").rglob("*") if p.is_file()]


def test_ls_of_an_empty_cache(arc: ArchiveCli) -> None:
    assert arc.json("cache", "ls")["entries"] == []
    assert "0 snapshots, 0 B" in arc("cache", "ls").stdout


@pytest.mark.parametrize(
    "args",
    [
        ["cache", "clear", "acme/nothing:v1"],
        ["cache", "clear", "not a ref"],
        ["cache", "clear"],
        ["cache", "clear", "acme/nothing:v1", "--all"],
    ],
    ids=["unknown-ref", "malformed-ref", "neither", "both"],
)
def test_bad_input_gives_one_line_and_a_non_zero_exit(arc: ArchiveCli, args: list[str]) -> None:
    arc.fail(*args)


def test_a_bad_cap_gives_one_line(arc: ArchiveCli) -> None:
    arc.env["MODELARC_CACHE_MAX_BYTES"] = "lots"
    result = arc.fail("cache", "ls")
    assert "MODELARC_CACHE_MAX_BYTES" in result.stderr


def test_ls_reports_the_cap_and_a_cache_dir_of_its_own(arc: ArchiveCli, tmp_path: Path) -> None:
    arc.env["MODELARC_CACHE_MAX_BYTES"] = "2GB"
    arc.env["MODELARC_CACHE_DIR"] = str(tmp_path / "elsewhere")
    listing = arc.json("cache", "ls")
    assert listing["max_bytes"] == 2 * 10**9 and listing["path"] == str(tmp_path / "elsewhere")
    assert "of 2.0 GB" in arc("cache", "ls").stdout


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.__delitem__(key)


def _first_file(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["files"][0].__setitem__(key, value)


# entry.json as a co-user of a shared MODELARC_CACHE_DIR, or a damaged disk, may leave it: every field is read
# inside the check, so each of these makes the entry unreadable (cache ls, cache clear and capped loads went on
# to crash with a traceback on "created")
DAMAGE = {
    "created-a-date-string": _set("created", "2026-12-01"),
    "created-missing": _drop("created"),
    "created-null": _set("created", None),
    "created-a-bool": _set("created", True),
    "created-nan": _set("created", float("nan")),
    "created-past-year-9999": _set("created", 1e300),
    "model-not-a-string": _set("model", {"name": "acme/m0"}),
    "version-a-bool": _set("version", True),
    "files-an-object": _set("files", {"model.safetensors": 1}),
    "size-negative": _first_file("size", -(10**12)),
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the cache has no catalog in it
@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_an_entry_json_with_a_bad_field_is_unreadable_and_cleared(
    arc: ArchiveCli, cached: list[str], damage: Callable[[dict[str, Any]], None]
) -> None:
    before = arc.json("cache", "ls")
    damaged, intact = (Path(e["path"]) for e in before["entries"])
    doc = json.loads((damaged / "entry.json").read_text())
    damage(doc)
    (damaged / "entry.json").chmod(0o644)
    (damaged / "entry.json").write_text(json.dumps(doc))
    listing = arc.json("cache", "ls")
    assert [Path(e["path"]) for e in listing["entries"]] == [intact]
    # never served, but on disk: listed with its bytes, which count against the cap
    on_disk = sum(p.lstat().st_size for p in damaged.rglob("*") if not p.is_dir())
    assert listing["unreadable"] == [{"path": str(damaged), "bytes": on_disk}]
    assert listing["bytes"] == listing["entries"][0]["bytes"] + on_disk
    text = arc("cache", "ls").stdout
    assert "1 snapshot," in text and "1 unreadable entries" in text
    assert [ln.split()[0] for ln in text.splitlines() if str(damaged) in ln] == ["UNREADABLE"]
    out = arc.json("cache", "clear", "--all")
    assert [Path(e["path"]) for e in out["removed"]] == [intact]
    assert out["bytes_freed"] > before["bytes"] and out["left"] == []  # the unreadable entry's bytes too
    assert not damaged.exists() and arc.json("cache", "ls")["entries"] == []


# ---- rm (withdrawal) removes the snapshot's decoded copies ------------------------------------------------------


def _load_into(arc: ArchiveCli, ref: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Load ``ref`` with cache=True into the cache folder ``cache_dir``; its entry folder."""
    monkeypatch.setenv("MODELARC_CACHE_DIR", str(cache_dir))
    with Archive.open(arc.home) as archive:
        load_model(archive, ref, device="cpu", cache=True)
        digest = archive.resolve(ref)[1].digest
    monkeypatch.delenv("MODELARC_CACHE_DIR")
    return cache_dir / "entries" / digest.hex


def test_rm_removes_the_snapshots_copy_from_the_home_cache_and_the_cache_dir(
    arc: ArchiveCli, cached: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rm` said the weights were freed while the load cache kept a byte-identical decoded copy in the home."""
    in_home = arc.home / "cache" / "entries" / arc.json("show", cached[0])["snapshot"].split(":")[1]
    in_cache_dir = _load_into(arc, cached[0], tmp_path / "cache-dir", monkeypatch)
    assert in_home.is_dir() and in_cache_dir.is_dir()
    (size,) = [e["bytes"] for e in arc.json("cache", "ls")["entries"] if e["model"] == "acme/m0"]
    arc.env["MODELARC_CACHE_DIR"] = str(tmp_path / "cache-dir")
    out = arc.json("rm", cached[0], "--reason", "legal takedown")
    assert sorted(out["cache_removed"]) == sorted([str(in_home), str(in_cache_dir)])
    assert out["cache_bytes_freed"] > 2 * size and out["cache_left"] == []
    assert not in_home.exists() and not in_cache_dir.exists()
    del arc.env["MODELARC_CACHE_DIR"]
    assert [e["model"] for e in arc.json("cache", "ls")["entries"]] == ["acme/m1"]  # another snapshot's stays
    text = arc("rm", cached[1], "--reason", "superseded").stdout
    assert "removed its decoded copy from the load cache" in text and "acme/m1" not in arc("cache", "ls").stdout


def test_rm_run_again_removes_the_copy_a_killed_rm_left_in_the_caches_trash(
    arc: ArchiveCli, cached: list[str], tmp_path: Path
) -> None:
    """`rm` killed between renaming the entry into ``tmp/trash-*`` and deleting it left the decoded weights there,
    and the re-run said "nothing of its weights is left to free" (exit 2). Another snapshot's trash is not its."""
    digests = [arc.json("show", ref)["snapshot"].split(":")[1] for ref in cached]
    entries = [arc.home / "cache" / "entries" / d for d in digests]
    aside = tmp_path / "aside"
    shutil.move(entries[0], aside)  # so that the first rm finds no entry: as if it had renamed it, then died
    assert arc.json("rm", cached[0], "--reason", "legal takedown")["cache_removed"] == []
    trash = arc.home / "cache" / "tmp" / ("trash-" + "a" * 32)
    shutil.move(aside, trash)
    other = arc.home / "cache" / "tmp" / ("trash-" + "b" * 32)
    shutil.copytree(entries[1], other)
    out = arc.json("rm", cached[0])
    assert out["cache_removed"] == [str(trash)] and out["cache_bytes_freed"] > 0
    assert not trash.exists() and other.is_dir()


def test_cache_clear_of_a_ref_removes_what_a_stopped_removal_of_it_left(arc: ArchiveCli, cached: list[str]) -> None:
    """`cache clear REF` killed between its rename and its delete left the copy in tmp/trash-*; run again it said
    "not in the load cache" and freed nothing."""
    digests = [arc.json("show", ref)["snapshot"].split(":")[1] for ref in cached]
    entries = [arc.home / "cache" / "entries" / d for d in digests]
    trash = arc.home / "cache" / "tmp" / ("trash-" + "c" * 32)
    shutil.move(entries[0], trash)
    out = arc.json("cache", "clear", cached[0])
    assert out["removed"] == [] and out["trash_removed"] == [str(trash)] and out["bytes_freed"] > 0
    assert not trash.exists() and entries[1].is_dir()


def test_rebuild_catalog_removes_the_copies_of_snapshots_it_holds_withdrawn(
    arc: ArchiveCli, cached: list[str], tmp_path: Path, database_url: str
) -> None:
    """A cache that outlived its catalog (or that `rm` on another host never reached) kept the decoded weights of a
    withdrawn snapshot; the rebuilt catalog knows it is withdrawn, so the rebuild removes the copy as `rm` would."""
    from recordkit import rebuild

    digests = [arc.json("show", ref)["snapshot"].split(":")[1] for ref in cached]
    entries = [arc.home / "cache" / "entries" / d for d in digests]
    aside = tmp_path / "aside"
    shutil.move(entries[0], aside)
    arc("rm", cached[0], "--reason", "legal takedown")
    shutil.move(aside, entries[0])  # the copy rm did not reach
    report = rebuild(arc, database_url)
    assert report["ok"] and report["cache_removed"] == [str(entries[0])] and report["cache_left"] == []
    assert not entries[0].exists() and entries[1].is_dir()
    assert [e["model"] for e in arc.json("cache", "ls")["entries"]] == ["acme/m1"]


def test_rm_does_not_claim_it_removed_a_linked_entry_whose_target_it_leaves(
    arc: ArchiveCli, cached: list[str], tmp_path: Path
) -> None:
    """An entry moved to another disk and linked back: rm unlinks it and never follows the link, so the decoded
    weights stay at its target; rm said it had removed the decoded copy (0 B)."""
    in_home = arc.home / "cache" / "entries" / arc.json("show", cached[0])["snapshot"].split(":")[1]
    elsewhere = tmp_path / "other-disk" / in_home.name
    elsewhere.parent.mkdir()
    shutil.move(in_home, elsewhere)
    in_home.symlink_to(elsewhere)
    out = arc.json("rm", cached[0], "--reason", "legal takedown")
    assert out["cache_removed"] == [] and out["cache_bytes_freed"] == 0
    (left,) = out["cache_left"]
    assert left.startswith(str(in_home)) and f"a link; its target {elsewhere} was not removed" in left
    assert not os.path.lexists(in_home) and any(elsewhere.rglob("*.safetensors"))  # left, and said so


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv: another user's entry, and a process that permission bits bind",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rm_leaves_another_users_cache_entry_with_one_warning_line(
    arc: ArchiveCli, cached: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    for folder in (shared, shared / "entries", shared / "tmp"):
        folder.mkdir()
        folder.chmod(0o1777)  # anyone may add an entry, only its owner may remove it
    theirs = _load_into(arc, cached[0], shared, monkeypatch)
    for root, dirs, names in os.walk(theirs):  # as if user nobody had filled it
        for name in [*dirs, *names]:
            os.lchown(os.path.join(root, name), 65534, 65534)
    os.lchown(theirs, 65534, 65534)
    proc = subprocess.run(
        # root without the capabilities that pass permission bits and the sticky bit: bound like any other user
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", sys.executable, "-m",
         "modelarc.cli.main", "rm", cached[0], "--reason", "legal takedown"],
        env={**os.environ, **arc.env, "MODELARC_CACHE_DIR": str(shared)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "removed its decoded copy from the load cache" in proc.stdout  # the home's own copy
    (warning,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert warning.startswith("warning: the load cache still holds its decoded weights at ")
    assert str(theirs) in warning and ("(Permission denied)" in warning or "(Operation not permitted)" in warning)
    assert theirs.is_dir()


def test_clear_all_leaves_what_the_cache_did_not_make(arc: ArchiveCli, cached: list[str], tmp_path: Path) -> None:
    """A cache folder that also holds other files (MODELARC_CACHE_DIR=/ makes its tmp/ the system's /tmp): `cache
    ls` counted them as temp folders and `cache clear --all` deleted them. Only names the cache gives are its own."""
    cache = Path(arc.json("cache", "ls")["path"])
    theirs = [cache / "tmp" / "mywork" / "thesis.tex", cache / "tmp" / "notes.txt", cache / "entries" / "README"]
    theirs.append(cache / "tmp" / f"fill-{'a' * 31}" / "x")  # one hex digit short of a name the cache gives
    for path in theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("someone's work")
    ours = cache / "tmp" / f"fill-{'b' * 32}"  # what a killed fill leaves
    (ours / "files").mkdir(parents=True)
    (ours / "files" / "model.safetensors").write_bytes(b"\0" * 1000)
    listing = arc.json("cache", "ls")
    assert listing["temp_folders"] == 1 and listing["temp_bytes"] == 1000
    out = arc.json("cache", "clear", "--all")
    assert len(out["removed"]) == 2 and not ours.exists()
    assert all(path.read_text() == "someone's work" for path in theirs)
