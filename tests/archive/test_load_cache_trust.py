"""Who may have written a load cache entry (archive/runtime/cache.py `_trusted`).

An entry someone else wrote in a shared cache folder is self-consistent: entry.json lists the manifest's sha256
and the stat of files its writer made. A load used such an entry's bytes unchecked. It now uses only files no
group or other user may write, owned by this user or root (or on a read-only mount); anything else is discarded
and the load decodes from the archive.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import transformers
from modelfactory import tiny_llama

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.cache import LoadCache
from modelarc.archive.runtime.models import load_model

IDS = torch.tensor([[2, 3, 4, 5]])
NOBODY = 65534


def _logits(model: transformers.PreTrainedModel) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def _pushed_and_cached(archive: Archive, tmp_path: Path) -> tuple[str, torch.Tensor, Path]:
    """A snapshot, its uncached logits, and its cache entry's folder."""
    archive.push(tiny_llama(tmp_path / "llama", seed=1), "acme/llama:v1")
    expected = _logits(load_model(archive, "acme/llama:v1", device="cpu"))
    load_model(archive, "acme/llama:v1", device="cpu", cache=True)
    _r, snap = archive.resolve("acme/llama:v1")
    return "acme/llama:v1", expected, archive.settings.cache_path / "entries" / snap.digest.hex


def _forge(entry: Path, *, mode: int, owner: int | None = None, via: Path | None = None) -> Path:
    """Replace the entry's model.safetensors by other bytes (written at ``via`` and linked there, if given) and
    rewrite entry.json to describe the new file, as a co-user of the folder could: sizes and sha256 as the manifest
    says, the stat of the forged file. Returns the forged file."""
    target = entry / "files" / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x40  # the last byte of the last tensor: a different model
    target.unlink()
    forged = via or target
    forged.write_bytes(bytes(data))
    forged.chmod(mode)
    if owner is not None:
        os.chown(forged, owner, owner)
    if via is not None:
        target.symlink_to(via)
    st = forged.stat()
    doc_path = entry / "entry.json"
    doc = json.loads(doc_path.read_text())
    for f in doc["files"]:
        if f["path"] == "model.safetensors":
            f.update(mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, inode=st.st_ino)
    doc_path.unlink()
    doc_path.write_text(json.dumps(doc))
    doc_path.chmod(0o444)
    return forged


def test_fills_write_read_only_files_whatever_the_umask(archive: Archive, tmp_path: Path) -> None:
    old = os.umask(0o002)  # a user-private-group umask: files would be group-writable, hence never trusted
    try:
        _ref, _expected, entry = _pushed_and_cached(archive, tmp_path)
    finally:
        os.umask(old)
    for path in (entry / "entry.json", entry / "files" / "model.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o444, path
    snapshot = archive.resolve("acme/llama:v1")[1].digest
    first = LoadCache.of(archive.settings).entry(snapshot)
    load_model(archive, "acme/llama:v1", device="cpu", cache=True)
    again = LoadCache.of(archive.settings).entry(snapshot)
    assert first is not None and again is not None and again.created == first.created  # used, not refilled


@pytest.mark.parametrize("mode", [0o664, 0o646], ids=["group-writable", "other-writable"])
def test_an_entry_others_may_write_is_not_used(archive: Archive, tmp_path: Path, mode: int) -> None:
    ref, expected, entry = _pushed_and_cached(archive, tmp_path)
    forged = _forge(entry, mode=mode)
    forged_bytes = forged.read_bytes()
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    rebuilt = entry / "files" / "model.safetensors"
    assert rebuilt.read_bytes() != forged_bytes and stat.S_IMODE(rebuilt.stat().st_mode) == 0o444


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's takes root")
def test_an_entry_another_user_wrote_is_not_used(archive: Archive, tmp_path: Path) -> None:
    ref, expected, entry = _pushed_and_cached(archive, tmp_path)
    forged = _forge(entry, mode=0o444, owner=NOBODY)
    assert forged.stat().st_uid == NOBODY
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    assert (entry / "files" / "model.safetensors").stat().st_uid == os.geteuid()  # refilled by this user


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's takes root")
def test_an_entry_json_another_user_wrote_is_not_used(archive: Archive, tmp_path: Path) -> None:
    ref, expected, entry = _pushed_and_cached(archive, tmp_path)
    _forge(entry, mode=0o444)
    os.chown(entry / "entry.json", NOBODY, NOBODY)
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    assert (entry / "entry.json").stat().st_uid == os.geteuid()


def test_a_symlink_in_place_of_a_cached_file_is_not_followed(archive: Archive, tmp_path: Path) -> None:
    ref, expected, entry = _pushed_and_cached(archive, tmp_path)
    _forge(entry, mode=0o444, via=tmp_path / "elsewhere.safetensors")
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    assert not (entry / "files" / "model.safetensors").is_symlink()


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """``view(folder)``: a read-only bind mount of ``folder`` (needs root: skipped where mounting is not allowed)."""
    mounted: list[Path] = []

    def view(folder: Path) -> Path:
        target = tmp_path / f"ro-{len(mounted)}"
        target.mkdir()
        bind = subprocess.run(["mount", "--bind", str(folder), str(target)], capture_output=True)
        if bind.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {bind.stderr.decode().strip()[:100]}")
        mounted.append(target)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        return target

    try:
        yield view
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)  # lazily: a mapping may still hold it


def test_another_users_entry_on_a_read_only_mount_is_not_used(
    archive: Archive, tmp_path: Path, read_only_view: Callable[[Path], Path]
) -> None:
    """A read-only mount is no excuse for another owner: a co-user of the cache folder could link an entry's folder
    to one they filled and then mounted read-only (the entry was used, its forged bytes loaded)."""
    ref, expected, entry = _pushed_and_cached(archive, tmp_path)
    theirs = tmp_path / "theirs"
    shutil.copytree(entry, theirs, symlinks=True)
    _forge(theirs, mode=0o444, owner=NOBODY)
    os.chown(theirs / "entry.json", NOBODY, NOBODY)
    shutil.rmtree(entry)
    entry.symlink_to(read_only_view(theirs), target_is_directory=True)
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)


def test_a_stale_entry_in_a_read_only_cache_falls_back_to_the_archive(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_only_view: Callable[[Path], Path]
) -> None:
    """A shared cache mounted read-only whose entry no longer matches its recorded stat (a file copied back):
    the entry cannot be removed (EROFS), so it is left alone and the load decodes from the archive, with a warning
    (the discard's OSError ended the load)."""
    ref, expected, entry = _pushed_and_cached(archive, tmp_path)
    cached = entry / "files" / "model.safetensors"
    # the same bytes and mode, as a copy or restore of the cache leaves them: another inode than recorded
    shutil.copy2(cached, tmp_path / "copy")
    os.replace(tmp_path / "copy", cached)
    cache = archive.settings.cache_path
    monkeypatch.setenv("MODELARC_CACHE_DIR", str(read_only_view(cache)))
    reopened = Archive.open(archive.settings.home)
    try:
        with pytest.warns(UserWarning, match="cannot be removed here; loading from the archive"):
            loaded = load_model(reopened, ref, device="cpu", cache=True)
        assert torch.equal(_logits(loaded), expected)
    finally:
        reopened.close()


# a shared MODELARC_CACHE_DIR as docs/ARCHITECTURE.md describes one: anyone may add, only an owner may remove
SHARED_LOAD = """
import json, os
import modelarc
from modelarc.archive.runtime.cache import LoadCache
from modelarc.config import load_settings
from modelarc.errors import DestinationError
from modelarc.registry.refs import SnapshotId

modelarc.load_model("acme/ours:v1", device="cpu", cache=True)
cache = LoadCache.of(load_settings())
loaded = sorted(e.snapshot for e in cache.entries())
try:
    cache.remove(SnapshotId(os.environ["THEIRS"]))
    refused = ""
except DestinationError as exc:
    refused = str(exc)
cleared = cache.clear()
print(json.dumps({"loaded": loaded, "refused": refused, "removed": [e.snapshot for e in cleared.removed],
                  "left": [str(p) for p in cleared.left]}))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv: another user's entry, and a process that permission bits bind",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the cache has no catalog in it
def test_a_capped_load_in_a_shared_cache_leaves_another_users_entry_it_may_not_remove(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load whose fill must evict another user's entry (sticky folder: only its owner may rename it) ended with
    PermissionError; it now leaves that entry, still counting its bytes, and ``clear`` leaves and reports it."""
    shared = tmp_path / "shared"
    for folder in (shared, shared / "entries", shared / "tmp"):
        folder.mkdir()
        folder.chmod(0o1777)
    monkeypatch.setenv("MODELARC_CACHE_DIR", str(shared))
    archive.push(tiny_llama(tmp_path / "theirs", seed=1), "acme/theirs:v1")
    archive.push(tiny_llama(tmp_path / "ours", seed=2), "acme/ours:v1")
    with Archive.open(archive.settings.home) as sharing:
        load_model(sharing, "acme/theirs:v1", device="cpu", cache=True)
    theirs = archive.resolve("acme/theirs:v1")[1].digest
    ours = archive.resolve("acme/ours:v1")[1].digest
    entry = shared / "entries" / theirs.hex
    for root, dirs, names in os.walk(entry):  # as if user nobody had filled it
        for name in [*dirs, *names]:
            os.lchown(os.path.join(root, name), NOBODY, NOBODY)
    os.lchown(entry, NOBODY, NOBODY)
    size = LoadCache(shared).entry(theirs).bytes
    proc = subprocess.run(
        # root without the capabilities that pass permission bits and the sticky bit: bound like any other user
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", sys.executable, "-c", SHARED_LOAD],
        env={
            **os.environ,
            "MODELARC_HOME": str(archive.settings.home),
            "MODELARC_CACHE_MAX_BYTES": str(size * 3 // 2),  # room for one entry: theirs would have to go
            "THEIRS": str(theirs),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["loaded"] == sorted([str(theirs), str(ours)])  # over the cap: theirs cannot go, ours is used
    assert "cannot remove the load cache entry" in out["refused"] and theirs.hex in out["refused"]
    assert out["removed"] == [str(ours)] and out["left"] == [str(entry)]
    assert (entry / "entry.json").exists()
