"""restore()'s data path: the whole-file sha256 check, recycled chunk buffers and writeback started per file."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import mmap
import os
import threading
import time
from pathlib import Path

import pytest
from hangkit import raised_within
from modelfactory import big_model, write_model, write_odd_header_safetensors

from modelarc.archive import restore as restore_module
from modelarc.archive.ingest import ingest
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.restore import READ_AHEAD, restore
from modelarc.errors import DiskFullError, IntegrityError, ObjectCorruptError
from modelarc.storage import ObjectId, ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _with_sha256(manifest: SnapshotManifest, path: str, sha256: str) -> SnapshotManifest:
    files = tuple(dataclasses.replace(f, sha256=sha256) if f.path == path else f for f in manifest.files)
    return SnapshotManifest(files)


def test_restore_refuses_a_file_whose_intact_objects_do_not_rebuild_its_sha256(
    tmp_path: Path, store: ObjectStore
) -> None:
    """Every object hashes to its id, yet the file is not what the manifest (and a signature over it) says."""
    manifest = ingest(write_model(tmp_path / "m"), store).manifest
    lied = _with_sha256(manifest, "model.safetensors", "0" * 64)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="model.safetensors: rebuilt file does not match the manifest"):
        restore(store, lied, out)
    assert not (out / "model.safetensors").exists()
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def test_restore_decodes_into_no_more_buffers_than_its_window(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3 * READ_AHEAD):  # incompressible: raw objects, decoded into the recycled buffers
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(1000 + i))
    big_model(src / "big", megabytes=24)  # float-planes objects of 8 MiB, several per file
    manifest = ingest(src, store).manifest
    handed_out: set[int] = set()
    take = restore_module.ChunkBuffers.take

    def counting_take(self: restore_module.ChunkBuffers) -> bytearray:
        buf = take(self)
        handed_out.add(id(buf))
        return buf

    monkeypatch.setattr(restore_module.ChunkBuffers, "take", counting_take)
    restore(store, manifest, tmp_path / "out")
    assert _files(tmp_path / "out") == _files(src)
    chunks = sum(len(p.chunks) for f in manifest.files for p in f.parts)
    assert chunks > 2 * (READ_AHEAD + 1)
    assert 0 < len(handed_out) <= READ_AHEAD + 1  # the window and the chunk being written


def test_writeback_starts_while_a_file_is_written(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = big_model(tmp_path / "m", megabytes=24)
    manifest = ingest(src, store).manifest
    monkeypatch.setattr(restore_module, "WRITEBACK_STEP", 8 << 20)
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    restore(store, manifest, tmp_path / "out")
    assert _files(tmp_path / "out") == _files(src)
    assert len(synced) >= 2  # b.safetensors alone is 16 MiB: at least two starts, before its final fsync


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [(errno.EIO, OSError, "Input/output error"), (errno.ENOSPC, DiskFullError, "disk full")],
)
def test_a_failed_writeback_fails_the_file_and_leaves_nothing_under_its_name(
    tmp_path: Path,
    store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[Exception],
    message: str,
) -> None:
    """A lost write reported to the early fdatasync may not be reported again to the final fsync: it must count."""
    src = big_model(tmp_path / "m", megabytes=24)
    manifest = ingest(src, store).manifest
    monkeypatch.setattr(restore_module, "WRITEBACK_STEP", 8 << 20)

    def failing(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fdatasync", failing)
    out = tmp_path / "out"
    with pytest.raises(error, match=message):
        restore(store, manifest, out)
    assert not (out / "b.safetensors").exists()
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def test_a_failed_file_leaves_no_temp_file_of_the_files_the_pool_wrote_ahead(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool writes each chunk into its file's temp file as it fetches it, ahead of the file being hashed: when
    one file fails its sha256, the temp files already begun for the files after it are deleted too."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3 * READ_AHEAD):
        (src / f"f{i:02d}.bin").write_bytes(os.urandom(1000 + i))
    manifest = ingest(src, store).manifest
    first = manifest.files[0].path
    begun: list[Path] = []  # temp files opened by the pool
    open_direct = restore_module._open_direct

    def counting(path: Path) -> int:
        begun.append(path)
        return open_direct(path)

    monkeypatch.setattr(restore_module, "_open_direct", counting)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match=f"{first}: rebuilt file does not match the manifest"):
        restore(store, _with_sha256(manifest, first, "0" * 64), out)
    assert len(set(begun)) > 1  # the pool had begun files after the one that failed
    assert not list(out.rglob("*.bin"))
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def _delaying(store: ObjectStore, slow: set[str], fail: bool = False) -> restore_module.ChunkSource:
    """A chunk source that takes its time over (or fails on) the objects in ``slow``, so the chunks after them in
    the same file are decoded first."""

    def source(oid: ObjectId, buf: bytearray | None) -> restore_module.ChunkBytes:
        if oid in slow:
            time.sleep(0.5)
            if fail:
                raise ObjectCorruptError(f"object {oid} is corrupt (planted)")
        return store.get_into(oid, buf) if buf is not None else store.get(oid)

    return source


def test_restore_hashes_each_file_in_order_when_later_chunks_are_decoded_first(
    tmp_path: Path, store: ObjectStore
) -> None:
    """The pool hashes a file's chunks in file order, whichever finished decoding first."""
    src = big_model(tmp_path / "m", megabytes=24)
    manifest = ingest(src, store).manifest
    firsts = {f.parts[0].chunks[0].id for f in manifest.files if sum(len(p.chunks) for p in f.parts) > 1}
    assert firsts  # a file of several chunks
    restore(store, manifest, tmp_path / "out", source=_delaying(store, firsts), jobs=3)
    assert _files(tmp_path / "out") == _files(src)


def test_a_chunk_that_fails_while_the_next_waits_to_be_hashed_fails_the_restore_cleanly(
    tmp_path: Path, store: ObjectStore
) -> None:
    """The pool thread holding the chunk after a failed one waits for its turn to hash: the failure must wake it
    (no hang) and its file's temp file must go."""
    src = big_model(tmp_path / "m", megabytes=24)
    manifest = ingest(src, store).manifest
    firsts = {f.parts[0].chunks[0].id for f in manifest.files if sum(len(p.chunks) for p in f.parts) > 1}
    out = tmp_path / "out"
    failed = raised_within(
        lambda: restore(store, manifest, out, source=_delaying(store, firsts, fail=True), jobs=3),
        60,
        "restore after a chunk failed",
    )
    assert len(failed) == 1 and isinstance(failed[0], ObjectCorruptError)
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def test_restore_writes_whole_pages_around_the_page_cache_and_the_ends_through_it(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = big_model(tmp_path / "m", megabytes=24)
    manifest = ingest(src, store).manifest
    direct: list[int] = []
    open_direct = restore_module._open_direct
    monkeypatch.setattr(
        restore_module, "_open_direct", lambda p: (fd := open_direct(p), direct.append(fd))[0]
    )
    restore(store, manifest, tmp_path / "out")
    assert _files(tmp_path / "out") == _files(src)
    if not [fd for fd in direct if fd >= 0]:
        pytest.skip("the file system under tmp_path refuses O_DIRECT: the buffered path ran")


def test_restore_finishes_through_the_page_cache_when_a_direct_write_is_refused(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems take O_DIRECT at open and refuse the write (EINVAL): the chunk is written all the same."""
    src = big_model(tmp_path / "m", megabytes=24)
    manifest = ingest(src, store).manifest
    pwrite = os.pwrite
    refused: list[int] = []

    def refusing(fd: int, data: bytes, offset: int) -> int:
        # by the descriptor's flags, not its number: a closed O_DIRECT descriptor's number is reused
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0):
            refused.append(fd)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", refusing)
    restore(store, manifest, tmp_path / "out")
    assert _files(tmp_path / "out") == _files(src)
    if not refused:
        pytest.skip("the file system under tmp_path refuses O_DIRECT at open: no direct write was tried")


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))


def test_the_ends_of_direct_chunks_go_through_the_page_cache_after_the_files_direct_writes_as_whole_pages(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffered write into a file with direct writes in flight waits for them: the unaligned ends are kept until
    the file's last direct write, and one chunk's tail joined to the next one's head is one whole page."""
    src = big_model(tmp_path / "m", megabytes=24)
    manifest = ingest(src, store).manifest
    pwrite = os.pwrite
    log: list[tuple[int, bool, int, int]] = []  # (inode, direct, offset, length), in call order
    lock = threading.Lock()

    def logging(fd: int, data: bytes, offset: int) -> int:
        with lock:
            log.append((os.fstat(fd).st_ino, _is_direct(fd), offset, len(memoryview(data))))
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", logging)
    restore(store, manifest, tmp_path / "out")
    assert _files(tmp_path / "out") == _files(src)
    direct_files = {ino for ino, direct, _o, _n in log if direct}
    if not direct_files:
        pytest.skip("the file system under tmp_path refuses O_DIRECT: the buffered path ran")
    for ino in direct_files:
        calls = [(n, direct, offset) for n, (i, direct, offset, size) in enumerate(log) if i == ino and size]
        last_direct = max(n for n, direct, _o in calls if direct)
        buffered = [(n, offset) for n, direct, offset in calls if not direct]
        assert buffered, "a file of several unaligned chunks has ends to write"
        assert all(n > last_direct for n, _o in buffered)
        assert all(offset % mmap.PAGESIZE == 0 for _n, offset in buffered)


@pytest.fixture
def big_stored(tmp_path: Path, store: ObjectStore) -> SnapshotManifest:
    """A 24 MB model of several 8 MiB float-planes chunks per file, ingested into ``store``."""
    return ingest(big_model(tmp_path / "m", megabytes=24), store).manifest


def test_a_disk_full_while_the_ends_are_written_fails_the_file_and_leaves_nothing(
    tmp_path: Path, store: ObjectStore, big_stored: SnapshotManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, out = big_stored, tmp_path / "out"
    pwrite = os.pwrite

    def full_but_direct(fd: int, data: bytes, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(out)) and not _is_direct(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full_but_direct)
    with pytest.raises(DiskFullError, match="disk full"):
        restore(store, manifest, out)
    assert not [p for p in out.rglob("*") if p.is_file()]


def test_a_failure_to_close_the_direct_descriptor_leaves_no_temp_file(
    tmp_path: Path, store: ObjectStore, big_stored: SnapshotManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, out = big_stored, tmp_path / "out"
    close = os.close
    failed: list[int] = []

    def failing_once(fd: int) -> None:
        if not failed and _is_direct(fd):
            failed.append(fd)
            close(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        close(fd)

    monkeypatch.setattr(os, "close", failing_once)
    with pytest.raises(OSError, match="Input/output error"):
        restore(store, manifest, out)
    if not failed:
        pytest.skip("the file system under tmp_path refuses O_DIRECT: no direct descriptor to close")
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def test_with_confirm_every_chunk_written_is_hashed_on_its_own_in_its_files_pass(
    tmp_path: Path, store: ObjectStore
) -> None:
    """A remote pull's ``confirm`` gets each chunk's digest, computed in the same pass as its file's sha256 over the
    pieces actually written (O_DIRECT middles, deferred ends): every chunk once, each digest its id, and the files
    still checked whole; a source's unverified bytes are handed back with it, as the very objects it returned."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):  # small raw objects, and files whose chunks start at unaligned offsets
        (src / f"f{i}.bin").write_bytes(os.urandom(3000 + 4099 * i))
    big_model(src / "big", megabytes=24)
    manifest = ingest(src, store).manifest
    chunks = [c for f in manifest.files for p in f.parts for c in p.chunks]
    handed: dict[int, str] = {}
    seen: list[tuple[str, str, bool]] = []
    lock = threading.Lock()

    def source(oid: ObjectId, out: bytearray | None) -> bytes | bytearray | memoryview:
        data = store.get_into(oid, out, verify=False) if out is not None else store.get(oid, verify=False)
        with lock:
            handed[id(data)] = oid
        return data

    def confirm(chunk: object, data: bytes | bytearray | memoryview, digest: bytes) -> None:
        with lock:
            seen.append((chunk.id, digest.hex(), handed.pop(id(data), None) == chunk.id))  # type: ignore[attr-defined]

    restore(store, manifest, tmp_path / "out", source=source, confirm=confirm)
    assert _files(tmp_path / "out") == _files(src)
    assert sorted(seen) == sorted((c.id, c.id, True) for c in chunks)


def test_a_chunk_that_confirm_refuses_fails_the_restore_and_leaves_its_file_unnamed(
    tmp_path: Path, store: ObjectStore
) -> None:
    manifest = ingest(big_model(tmp_path / "m", megabytes=24), store).manifest
    victim = manifest.files[-1]
    refused = victim.parts[-1].chunks[-1].id

    def confirm(chunk: object, data: bytes | bytearray | memoryview, digest: bytes) -> None:
        if chunk.id == refused:  # type: ignore[attr-defined]
            raise IntegrityError(f"remote sent a bad object: {refused}")

    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match=refused):
        restore(store, manifest, out, confirm=confirm)
    assert not (out / victim.path).exists()
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def _direct_writes_by_source(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of O_DIRECT writes by where their bytes were: ``decoded`` (the chunk's own decode buffer) or
    ``staged`` (copied into a thread's staging buffer, the anonymous map ``aligned_buffer`` makes)."""
    counts = {"decoded": 0, "staged": 0}
    pwrite = os.pwrite
    lock = threading.Lock()

    def counting(fd: int, data: bytes, offset: int) -> int:
        if _is_direct(fd):
            with lock:
                counts["staged" if isinstance(memoryview(data).obj, mmap.mmap) else "decoded"] += 1
        return pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", counting)
    return counts


def test_restore_writes_chunks_at_unaligned_offsets_straight_from_their_decode_buffers(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk is decoded at its file offset's place in a page, so O_DIRECT writes its whole pages from the
    buffer it was decoded into, with no copy into a staging buffer; the files come out byte-identical."""
    src = tmp_path / "src"
    write_odd_header_safetensors(src / "odd.safetensors")
    big_model(src / "big", megabytes=24)
    for i in range(3):  # small raw objects at unaligned offsets of one file each
        (src / f"f{i}.bin").write_bytes(os.urandom(5000 + 4099 * i))
    manifest = ingest(src, store).manifest
    odd = next(f for f in manifest.files if f.path == "odd.safetensors")
    assert odd.header_length % 2 == 1 and sum(len(p.chunks) for p in odd.parts) >= 4
    counts = _direct_writes_by_source(monkeypatch)
    staging: list[int] = []
    make = restore_module.aligned_buffer
    monkeypatch.setattr(restore_module, "aligned_buffer", lambda size: (staging.append(size), make(size))[1])
    restore(store, manifest, tmp_path / "out")
    assert _files(tmp_path / "out") == _files(src)
    if not counts["decoded"] + counts["staged"]:
        pytest.skip("the file system under tmp_path refuses O_DIRECT: the buffered path ran")
    assert counts == {"decoded": counts["decoded"], "staged": 0}
    assert counts["decoded"] >= 6  # the odd file's chunks and big/'s
    assert staging == []  # no thread needed a staging buffer at all


def test_restore_stages_bytes_it_could_not_decode_in_place_and_writes_them_identically(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object decoded into fresh bytes (zstd: a compressible file) is copied into a page-aligned staging buffer
    for its direct write, beside chunks written from their decode buffers, in the same restore."""
    src = tmp_path / "src"
    write_odd_header_safetensors(src / "odd.safetensors")
    (src / "notes.txt").write_bytes(b"a line of text that compresses well\n" * 300_000)  # ~10 MiB
    manifest = ingest(src, store).manifest
    codecs = {store.stat(c.id).codec for f in manifest.files for p in f.parts for c in p.chunks}
    assert "zstd" in codecs, codecs
    counts = _direct_writes_by_source(monkeypatch)
    restore(store, manifest, tmp_path / "out")
    assert _files(tmp_path / "out") == _files(src)
    if not counts["decoded"] + counts["staged"]:
        pytest.skip("the file system under tmp_path refuses O_DIRECT: the buffered path ran")
    assert counts["staged"] >= 1 and counts["decoded"] >= 1
