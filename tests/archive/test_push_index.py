"""The push index (archive/push_index.py): an unchanged file is not read again, and nothing else is ever trusted.

Each test settles its files the way the index requires (last written at least ``SETTLE_SECONDS`` before the read
began) by setting ``SETTLE_SECONDS`` to 0, except the one that checks the settling rule itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pushkit import files_read_as_new, small_model

from modelarc.archive import chunk_proof, push_index
from modelarc.archive.provenance.withdrawal import withdraw
from modelarc.archive.repository import Archive
from modelarc.archive.scrub import scrub
from modelarc.storage import ObjectId
from modelarc.storage.store import object_key


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push_index, "SETTLE_SECONDS", 0.0)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return small_model(tmp_path / "model", seed=7, tensors=4, shape=(128, 64))


read_files = files_read_as_new


def proof_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """The chunk lengths every later proof hashes, by the absolute path of the file they are read from."""
    seen: dict[str, list[int]] = {}
    real = chunk_proof._Reader.digest

    def spy(self, fd, span):  # type: ignore[no-untyped-def]
        seen.setdefault(os.readlink(f"/proc/self/fd/{fd}"), []).append(span.length)
        return real(self, fd, span)

    monkeypatch.setattr(chunk_proof._Reader, "digest", spy)
    return seen


def pulled_bytes(archive: Archive, ref: str, dest: Path) -> dict[str, bytes]:
    archive.pull(ref, dest)
    return {p.name: p.read_bytes() for p in dest.iterdir()}


def test_unchanged_files_are_not_read_again(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = archive.push(model, "acme/m:v1")
    seen = read_files(monkeypatch)
    again = archive.push(model, "acme/m:v1")
    assert seen == []
    assert again.unchanged_files == 2 and again.snapshot == first.snapshot and not again.new_snapshot
    assert again.stored_bytes_added == 0
    # a new tag on the same files: the same snapshot, still nothing read, and it restores byte for byte
    other = archive.push(model, "acme/m:v2")
    assert other.snapshot == first.snapshot and seen == []
    restored = pulled_bytes(archive, "acme/m:v2", tmp_path / "out")
    assert restored == {p.name: p.read_bytes() for p in model.iterdir()}


def test_rehash_reads_every_file(archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--rehash trusts no stat: every byte of every file is read, here to prove each file holds what the index
    says it held (archive/proven_files.py), so nothing is read a second time as a new file."""
    archive.push(model, "acme/m:v1")
    seen = read_files(monkeypatch)
    hashed = proof_reads(monkeypatch)
    again = archive.push(model, "acme/m:v1", rehash=True)
    assert seen == [] and again.unchanged_files == 0 and again.proven_files == 2
    assert sorted(hashed) == sorted(os.path.abspath(p) for p in model.iterdir())
    assert {path: sum(n for n in lengths) for path, lengths in hashed.items()} == {
        os.path.abspath(p): p.stat().st_size for p in model.iterdir()
    }


def test_a_write_that_puts_size_and_mtime_back_is_still_read(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Same size, mtime restored with utime: only the ctime (which user space cannot set) tells, and it does."""
    first = archive.push(model, "acme/m:v1")
    path = model / "model.safetensors"
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor
    with open(path, "r+b") as fh:  # in place: same inode
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns
    seen = read_files(monkeypatch)
    changed = archive.push(model, "acme/m:v2")
    assert seen == ["model.safetensors"] and changed.unchanged_files == 1
    assert changed.snapshot != first.snapshot
    assert pulled_bytes(archive, "acme/m:v2", tmp_path / "out")["model.safetensors"] == bytes(data)


def test_a_replaced_file_is_read(archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive.push(model, "acme/m:v1")
    path = model / "config.json"
    replacement = model / "config.json.new"
    replacement.write_text('{"model_type": "gpt2"}\n')
    os.replace(replacement, path)
    seen = read_files(monkeypatch)
    archive.push(model, "acme/m:v2")
    assert seen == ["config.json"]


def test_recently_written_files_are_not_trusted(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settling rule at its real value: a file written within SETTLE_SECONDS of the read is read next time."""
    monkeypatch.setattr(push_index, "SETTLE_SECONDS", 3600.0)
    archive.push(model, "acme/m:v1")
    seen = read_files(monkeypatch)
    again = archive.push(model, "acme/m:v1")
    assert sorted(seen) == ["config.json", "model.safetensors"] and again.unchanged_files == 0


def test_an_object_gone_from_the_store_makes_the_file_read_and_stored_again(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = archive.push(model, "acme/m:v1")
    manifest = archive.manifest_by_id(first.snapshot)
    entry = next(f for f in manifest.files if f.path == "model.safetensors")
    victim = entry.parts[-1].chunks[0].id
    (archive.settings.store_path / object_key(ObjectId(victim))).unlink()
    seen = read_files(monkeypatch)
    again = archive.push(model, "acme/m:v1")
    assert seen == ["model.safetensors"] and again.stored_bytes_added > 0
    assert archive.store.stat(ObjectId(victim)).raw_size > 0  # stored again
    assert pulled_bytes(archive, "acme/m:v1", tmp_path / "out")["model.safetensors"] == (
        model / "model.safetensors"
    ).read_bytes()


def test_a_file_whose_object_a_scrub_found_corrupt_is_read_again_and_heals_it(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The index vouches for the file, its objects are all present, but the catalog knows one is corrupt: the
    file is read, and its bytes replace the damaged copy (archive/heal.py)."""
    first = archive.push(model, "acme/m:v1")
    manifest = archive.manifest_by_id(first.snapshot)
    entry = next(f for f in manifest.files if f.path == "model.safetensors")
    victim = entry.parts[-1].chunks[0].id
    path = archive.settings.store_path / object_key(ObjectId(victim))
    damaged = bytearray(path.read_bytes())
    damaged[-5] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert victim in scrub(archive).corrupt
    seen = read_files(monkeypatch)
    again = archive.push(model, "acme/m:v1")
    assert seen == ["model.safetensors"] and again.unchanged_files == 1 and again.healed == (victim,)
    archive.verify("acme/m:v1")
    restored = pulled_bytes(archive, "acme/m:v1", tmp_path / "out")
    assert restored["model.safetensors"] == (model / "model.safetensors").read_bytes()


def test_files_of_a_removed_snapshot_are_read_again(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`rm` frees the weights; the index still names the snapshot, and must not vouch for weights that are gone."""
    archive.push(model, "acme/m:v1")
    removed = withdraw(archive, "acme/m:v1", "test")
    assert removed.objects_deleted > 0
    (model / "config.json").write_text('{"model_type": "llama", "revision": 2}\n')  # a new snapshot, same weights
    seen = read_files(monkeypatch)
    again = archive.push(model, "acme/m:v2")
    assert "model.safetensors" in seen and again.stored_bytes_added > 0
    assert pulled_bytes(archive, "acme/m:v2", tmp_path / "out")["model.safetensors"] == (
        model / "model.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    "tamper",
    [
        "garbage",
        "wrong sha256",
        "other path",
        "unknown snapshot",
        "bad snapshot id",
        "wrong types",
    ],
)
def test_a_damaged_or_forged_index_costs_a_read_never_a_wrong_snapshot(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tamper: str, tmp_path: Path
) -> None:
    first = archive.push(model, "acme/m:v1")
    index_path = archive.settings.home / push_index.INDEX_FILE
    doc = json.loads(index_path.read_text())
    key = os.path.abspath(model / "model.safetensors")
    entry = doc["files"][key]
    if tamper == "garbage":
        index_path.write_text("{not json")
    else:
        if tamper == "wrong sha256":
            entry["sha256"] = "0" * 64
        elif tamper == "other path":
            entry["path"] = "config.json"
        elif tamper == "unknown snapshot":
            entry["snapshot"] = "1" * 64
        elif tamper == "bad snapshot id":
            entry["snapshot"] = "../../etc/passwd"
        elif tamper == "wrong types":
            entry["size"] = str(entry["size"])
        index_path.write_text(json.dumps(doc))
    seen = read_files(monkeypatch)
    again = archive.push(model, "acme/m:v1")
    assert "model.safetensors" in seen
    assert again.snapshot == first.snapshot
    assert pulled_bytes(archive, "acme/m:v1", tmp_path / "out")["model.safetensors"] == (
        model / "model.safetensors"
    ).read_bytes()


def test_the_index_is_written_atomically_and_keeps_settled_files_only(archive: Archive, model: Path) -> None:
    archive.push(model, "acme/m:v1")
    index_path = archive.settings.home / push_index.INDEX_FILE
    doc = json.loads(index_path.read_text())
    assert doc["format"] == push_index.INDEX_FORMAT and doc["version"] == push_index.INDEX_VERSION
    assert sorted(doc["files"]) == sorted(os.path.abspath(p) for p in model.iterdir())
    assert [p.name for p in index_path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_pushes_that_overlap_keep_each_others_entries(tmp_path: Path, model: Path) -> None:
    """Each push loads the index at its start and saves at its end; the later save must not drop what an earlier
    one, begun before it, recorded (nor bring back what it forgot)."""
    home = tmp_path / "home"
    home.mkdir()
    weights, config = model / "model.safetensors", model / "config.json"

    def read(path: Path) -> push_index.FileRead:
        st = os.stat(path)
        return push_index.FileRead(path, path.name, st, st, st.st_mtime_ns / 1e9 + 60, "ab" * 32)

    first = push_index.PushIndex.load(home)
    first.remember([read(config)], "11" * 32)
    first.save()
    one, two = push_index.PushIndex.load(home), push_index.PushIndex.load(home)
    one.remember([read(weights)], "22" * 32)
    two.moved([(config, "renamed.json")], "33" * 32)
    one.save()
    two.save()
    entries = push_index.PushIndex.load(home).files
    assert entries[os.path.abspath(weights)].snapshot == "22" * 32
    assert (entries[os.path.abspath(config)].snapshot, entries[os.path.abspath(config)].path) == (
        "33" * 32,
        "renamed.json",
    )
