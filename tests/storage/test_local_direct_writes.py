"""LocalBackend.put writes an object's whole pages with O_DIRECT and its tail through the page cache after them.

Every way the direct path can be cut short (the file system refuses the flag or the write, a write comes back
short, the disk fills up during either write) must still leave either the exact bytes under the key or nothing at
all, with no temp file. Writes are told apart by the descriptor's O_DIRECT flag, not its number (a number is
reused as soon as a descriptor is closed).
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelarc.errors import DiskFullError
from modelarc.storage import local as local_module
from modelarc.storage.local import LocalBackend
from modelarc.storage.pages import PAGE, aligned_buffer, is_page_aligned
from modelarc.storage.store import ObjectStore, object_key

SIZES = [0, 1, PAGE - 1, PAGE, PAGE + 1, 5 * PAGE + 17, (9 << 20) + 3]


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))


def _data(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _as_aligned(data: bytes) -> memoryview:
    buf = aligned_buffer(len(data))
    view = memoryview(buf)[: len(data)]
    view[:] = data
    return view


Write = Callable[[int, Any], int]


def _patch_write(monkeypatch: pytest.MonkeyPatch, make: Callable[[Write], Write]) -> list[tuple[bool, int]]:
    """Replace ``os.write`` with ``make(real write)``; returns a log of (direct, length) of every call made."""
    real = os.write
    log: list[tuple[bool, int]] = []
    inner = make(real)

    def logged(fd: int, data: Any) -> int:
        log.append((_is_direct(fd), len(memoryview(data))))
        return inner(fd, data)

    monkeypatch.setattr(os, "write", logged)
    return log


def _skip_unless_direct(log: list[tuple[bool, int]]) -> None:
    if not any(direct for direct, _n in log):
        pytest.skip("the file system under tmp_path refuses O_DIRECT: the buffered path ran")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "aligned"])
def test_put_stores_exactly_the_bytes_given(tmp_path: Path, size: int, kind: str) -> None:
    data = _data(size, seed=size)
    value = {"bytes": data, "bytearray": bytearray(data), "aligned": _as_aligned(data)}[kind]
    backend = LocalBackend(tmp_path)
    backend.put("objects/ab/k", value)
    assert backend.get("objects/ab/k") == data
    assert backend.temp_count() == 0


def test_whole_pages_go_direct_and_the_tail_through_the_page_cache_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data(3 * PAGE + 100)
    log = _patch_write(monkeypatch, lambda real: real)
    LocalBackend(tmp_path).put("objects/ab/k", data)
    _skip_unless_direct(log)
    assert log == [(True, 3 * PAGE), (False, 100)]
    assert (tmp_path / "objects" / "ab" / "k").read_bytes() == data


def test_unaligned_bytes_are_staged_a_piece_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module._Staging, "SIZE", 2 * PAGE)
    monkeypatch.setattr(local_module, "_STAGING", local_module._Staging())
    data = _data(7 * PAGE + 5, seed=3)
    log = _patch_write(monkeypatch, lambda real: real)
    LocalBackend(tmp_path).put("objects/ab/k", data)
    _skip_unless_direct(log)
    assert log == [(True, 2 * PAGE)] * 3 + [(True, PAGE), (False, 5)]
    assert (tmp_path / "objects" / "ab" / "k").read_bytes() == data


def test_an_object_encoded_by_the_store_is_written_from_its_encode_buffer_without_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The encode buffers frame the object at the start of a page: O_DIRECT takes it as it is, with no copy."""
    staged: list[int] = []
    borrow = local_module._STAGING.borrow
    monkeypatch.setattr(local_module._STAGING, "borrow", lambda: (staged.append(1), borrow())[1])
    seen: list[bool] = []
    put = LocalBackend.put
    monkeypatch.setattr(
        LocalBackend,
        "put",
        lambda self, key, data: (seen.append(is_page_aligned(data)), put(self, key, data))[1],
    )
    store = ObjectStore.open_local(tmp_path)
    weights = np.random.default_rng(1).normal(size=300_000).astype("<f4")
    bf16 = (weights.view("<u4") >> 16).astype("<u2").tobytes()
    for data, hint in ((weights.tobytes(), "F32"), (bf16, "BF16"), (_data(PAGE * 9), None)):
        put_result = store.put(data, dtype_hint=hint)
        assert store.get(put_result.id) == data
    assert seen == [True, True, True]
    assert not staged


def _refusing_direct(real: Write) -> Write:
    """A write that refuses (EINVAL) whatever goes to an O_DIRECT descriptor, as some file systems do."""

    def write(fd: int, data: Any) -> int:
        if _is_direct(fd):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real(fd, data)

    return write


def test_a_direct_write_the_file_system_refuses_is_written_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems take the O_DIRECT flag and refuse the write (EINVAL): the object is written all the same."""

    data = _data(6 * PAGE + 9, seed=5)
    log = _patch_write(monkeypatch, _refusing_direct)
    backend = LocalBackend(tmp_path)
    backend.put("objects/ab/k", data)
    _skip_unless_direct(log)
    assert log == [(True, 6 * PAGE), (False, 6 * PAGE + 9)]
    assert backend.get("objects/ab/k") == data
    assert backend.temp_count() == 0


def test_a_refused_direct_write_after_some_went_through_is_finished_from_where_they_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module._Staging, "SIZE", 2 * PAGE)
    monkeypatch.setattr(local_module, "_STAGING", local_module._Staging())
    calls = {"direct": 0}

    def refusing_the_second(real: Write) -> Write:
        def write(fd: int, data: Any) -> int:
            if _is_direct(fd):
                calls["direct"] += 1
                if calls["direct"] == 2:
                    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            return real(fd, data)

        return write

    data = _data(6 * PAGE + 9, seed=6)
    log = _patch_write(monkeypatch, refusing_the_second)
    backend = LocalBackend(tmp_path)
    backend.put("objects/ab/k", data)
    _skip_unless_direct(log)
    assert log == [(True, 2 * PAGE), (True, 2 * PAGE), (False, 4 * PAGE + 9)]
    assert backend.get("objects/ab/k") == data


def test_a_file_system_that_refuses_the_direct_flag_gets_todays_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tmpfs (before Linux 6.6) and some overlay and NFS mounts refuse O_DIRECT when the flag is set."""
    real_fcntl = fcntl.fcntl

    def refusing(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and arg & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return int(real_fcntl(fd, cmd, arg))

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    data = _data(5 * PAGE + 1, seed=7)
    log = _patch_write(monkeypatch, lambda real: real)
    backend = LocalBackend(tmp_path)
    backend.put("objects/ab/k", data)
    assert log == [(False, 5 * PAGE + 1)]
    assert backend.get("objects/ab/k") == data


@pytest.mark.parametrize("size", [5 * PAGE + 1, (9 << 20) + 3])
def test_a_descriptor_whose_direct_flag_cannot_be_cleared_gets_its_tail_through_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Clearing O_DIRECT is refused (no known file system does; an unaligned tail through the still-direct
    descriptor would fail with a bare EINVAL): the tail goes through a second, buffered descriptor, at its offset."""
    real_fcntl = fcntl.fcntl

    def sticky(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETFL and not arg & getattr(os, "O_DIRECT", 0) and _is_direct(fd):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return int(real_fcntl(fd, cmd, arg))

    monkeypatch.setattr(fcntl, "fcntl", sticky)
    data = _data(size, seed=11)
    log = _patch_write(monkeypatch, lambda real: real)
    backend = LocalBackend(tmp_path)
    backend.put("objects/ab/k", data)
    _skip_unless_direct(log)
    assert all(direct for direct, _n in log)  # every write through the first descriptor was a direct one
    assert backend.get("objects/ab/k") == data
    assert not list(backend.tmp.iterdir())


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("short_by", ["whole pages", "part of a page"])
def test_a_direct_write_that_comes_back_short_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aligned: bool, short_by: str
) -> None:
    """A direct write may take fewer bytes than asked: whole pages (the rest goes on directly), or, as a file
    system may, an odd count (the rest goes through the page cache, from where it ended)."""

    def short(real: Write) -> Write:
        def write(fd: int, data: Any) -> int:
            if not _is_direct(fd):
                return real(fd, data)
            if short_by == "whole pages":
                return real(fd, memoryview(data)[:PAGE])  # the device took one page of several
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)  # an odd count: only a buffered write can
            try:
                return real(fd, memoryview(data)[: PAGE + PAGE // 2 + 7])
            finally:
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)

        return write

    data = _data(5 * PAGE + 3, seed=8)
    log = _patch_write(monkeypatch, short)
    backend = LocalBackend(tmp_path)
    backend.put("objects/ab/k", _as_aligned(data) if aligned else data)
    _skip_unless_direct(log)
    assert backend.get("objects/ab/k") == data
    if short_by == "whole pages":
        assert log == [(True, 5 * PAGE - k * PAGE) for k in range(5)] + [(False, 3)]
    else:
        assert log == [(True, 5 * PAGE), (False, 5 * PAGE + 3 - (PAGE + PAGE // 2 + 7))]


@pytest.mark.parametrize("which", ["direct", "buffered"])
def test_a_disk_full_during_either_write_leaves_no_temp_file_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    def full(real: Write) -> Write:
        def write(fd: int, data: Any) -> int:
            if _is_direct(fd) == (which == "direct"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data)

        return write

    log = _patch_write(monkeypatch, full)
    backend = LocalBackend(tmp_path)
    with pytest.raises(DiskFullError, match="disk full") as failed:
        backend.put("objects/ab/k", _data(4 * PAGE + 10, seed=9))
    if which == "direct":
        _skip_unless_direct(log)
    assert "\n" not in str(failed.value)
    assert not backend.has("objects/ab/k")
    assert backend.temp_count() == 0


def test_an_object_put_through_the_store_reads_back_after_a_refused_direct_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_write(monkeypatch, _refusing_direct)
    store = ObjectStore.open_local(tmp_path)
    weights = np.random.default_rng(2).normal(size=500_000).astype("<f4").tobytes()
    put = store.put(weights, dtype_hint="F32")
    assert store.get(put.id) == weights
    assert (tmp_path / object_key(put.id)).stat().st_size == put.stored_size


def test_aligned_buffers_are_not_shared_with_a_forked_child() -> None:
    """A shared anonymous map (mmap's default) would let a forked child write into the parent's buffers."""
    from modelarc.storage.pages import aligned_buffer

    buf = aligned_buffer(4096)
    buf[:4] = b"mine"
    pid = os.fork()
    if pid == 0:  # the child
        buf[:4] = b"kids"
        os._exit(0)
    os.waitpid(pid, 0)
    assert buf[:4] == b"mine"
