"""The store lock lives in the catalog (registry/store_locks.py): holders on other machines, crashed holders,
expiry, heartbeats, and a holder that lost its lock recording nothing. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelfactory import tiny_tensors, write_model
from sqlalchemy import update

import modelarc.archive.push as push_module
from modelarc.archive import mirrors
from modelarc.archive.repair import repair
from modelarc.archive.repository import Archive
from modelarc.errors import LockedError, LockLostError, StoreWriteLostError
from modelarc.registry import store_locks
from modelarc.registry.models import utcnow
from modelarc.registry.store_models import StoreLock


@pytest.fixture
def archive(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    arc, _created = Archive.init(tmp_path / "home")
    with arc:
        yield arc


def _foreign_row(
    archive: Archive, *, exclusive: bool, expires_in: float, machine: str = "other-host/pid:[1]"
) -> None:
    """A lock row as another host's process would have written it."""
    now = utcnow()
    with archive.catalog.session() as s:
        s.add(
            StoreLock(
                id=f"f{time.monotonic_ns():031x}"[-32:],
                exclusive=exclusive,
                purpose="push",
                actor="bob",
                machine=machine,
                pid=4242,
                acquired_at=now,
                expires_at=now + dt.timedelta(seconds=expires_in),
            )
        )


def _rows(archive: Archive) -> int:
    with archive.catalog.session() as s:
        return len(store_locks.holders(s))


def test_a_live_holder_on_another_host_keeps_gc_out_and_is_named(archive: Archive) -> None:
    _foreign_row(archive, exclusive=False, expires_in=300)
    with pytest.raises(LockedError, match=r"busy: push by bob on other-host \(pid 4242\)"):
        archive.gc()
    with archive.lock(exclusive=False, purpose="pull"):  # readers and writers share it
        pass


def test_an_exclusive_holder_keeps_pushes_waiting_and_gc_out(archive: Archive) -> None:
    _foreign_row(archive, exclusive=True, expires_in=300)
    with pytest.raises(LockedError, match="busy"):
        with archive.lock(exclusive=False, purpose="push", wait=False):
            pass
    with pytest.raises(LockedError):
        archive.gc()


def test_an_expired_holder_blocks_nothing_and_is_cleared(archive: Archive) -> None:
    _foreign_row(archive, exclusive=True, expires_in=-1)
    assert archive.gc().objects_removed == 0
    assert _rows(archive) == 0


def test_a_dead_process_on_this_machine_blocks_nothing(archive: Archive) -> None:
    _foreign_row(archive, exclusive=False, expires_in=300, machine=store_locks.machine_id())
    with archive.catalog.session() as s:  # pid 4242 is not running here (it would be odd for a test box)
        s.execute(update(StoreLock).values(pid=2**22 + 17))
    archive.gc()
    assert _rows(archive) == 0


def _dead_pid_row(archive: Archive, machine: str) -> None:
    _foreign_row(archive, exclusive=False, expires_in=300, machine=machine)
    with archive.catalog.session() as s:  # a pid not running here, as the other host's live push has
        s.execute(update(StoreLock).values(pid=2**22 + 17))


def test_a_row_of_the_old_machine_format_from_a_host_of_the_same_name_keeps_gc_out(archive: Archive) -> None:
    """Before the boot id, ``machine`` was host name + PID namespace, which is the same on two VMs cloned from one
    image (the initial namespace is one inode on every host): such a row may be another host's live push."""
    _dead_pid_row(archive, f"{socket.gethostname()}/{os.readlink('/proc/self/ns/pid')}")
    with pytest.raises(LockedError, match="busy: push by bob"):
        archive.gc()
    assert _rows(archive) == 1


def test_a_clone_of_this_host_with_another_boot_id_keeps_gc_out(archive: Archive) -> None:
    """Same host name, machine id and PID namespace (a VM cloned without a new machine id), another kernel boot."""
    host, _, ident = store_locks.machine_id().partition("/")
    fmt, machine, _boot, pidns = ident.split(":")
    _dead_pid_row(archive, f"{host}/{fmt}:{machine}:{'b' * 32}:{pidns}")
    with pytest.raises(LockedError, match="busy"):
        archive.gc()


def test_the_heartbeat_keeps_a_long_operation_locked(archive: Archive) -> None:
    # a 2 s expiry refreshed every 0.5 s: after 3 s the holder is still alive to everyone else
    archive.settings = dataclasses.replace(archive.settings, lock_ttl=2.0)
    with archive.lock(exclusive=False, purpose="push") as held:
        time.sleep(3)
        with pytest.raises(LockedError):
            archive.gc()
        assert held.safe()
    assert _rows(archive) == 0  # released on the way out


def test_a_push_that_lost_its_lock_records_nothing(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push is "paused" past its expiry after writing its objects; gc runs meanwhile and collects them."""
    real_ingest = push_module.ingest
    collected = {}

    def paused_ingest(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_ingest(*args, **kwargs)
        with archive.catalog.session() as s:
            s.execute(update(StoreLock).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
        collected["gc"] = archive.gc()
        return result

    monkeypatch.setattr(push_module, "ingest", paused_ingest)
    with pytest.raises(LockLostError, match="nothing was recorded"):
        archive.push(write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    assert collected["gc"].objects_removed > 0  # gc really ran under the push
    assert list(archive.iter_snapshot_labels()) == []
    monkeypatch.setattr(push_module, "ingest", real_ingest)
    archive.push(write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")  # a re-run succeeds
    archive.verify("acme/m:v1")
    assert archive.fsck().ok


def test_a_push_whose_temp_file_gc_cleared_reports_the_lost_lock(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push is "paused" past its expiry between writing an object's temp file and renaming it; gc runs meanwhile
    and clears tmp/. The rename then finds no temp file: the lock was lost, nothing is recorded (not a raw
    "no such file or directory")."""
    real_replace = os.replace
    collected = {}
    once = threading.Lock()  # the push writes from several threads: the first rename runs gc, the rest wait for it

    def paused_before_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        with once:
            if "gc" not in collected and Path(src).parent == archive.store.backend.tmp:  # type: ignore[attr-defined]
                with archive.catalog.session() as s:
                    s.execute(update(StoreLock).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
                collected["gc"] = archive.gc()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", paused_before_rename)
    with pytest.raises(LockLostError, match="nothing was recorded; run the command again"):
        archive.push(write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    assert collected["gc"].temp_files_removed >= 1  # gc really ran under the push and took its temp file(s)
    assert list(archive.iter_snapshot_labels()) == []
    monkeypatch.setattr(os, "replace", real_replace)
    archive.push(write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")  # a re-run succeeds
    archive.verify("acme/m:v1")
    assert archive.fsck().ok


def _expire_every_lock(archive: Archive) -> None:
    """What a pause past the lock's expiry leaves in the catalog: the holder's row no longer counts."""
    with archive.catalog.session() as s:
        s.execute(update(StoreLock).values(expires_at=utcnow() - dt.timedelta(seconds=1)))


def test_a_repair_whose_temp_file_gc_cleared_reports_the_lost_lock(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a push does: the repair is "paused" past its expiry between writing a mirror's good copy to a temp file
    and renaming it into the store; gc runs meanwhile and clears tmp/. Then the lost lock is what is said (exit 8,
    nothing recorded), not the storage error about a temp file that "something" cleared."""
    archive.push(write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    usb = mirrors.add_mirror(archive, "usb", str(tmp_path / "usb"))
    assert mirrors.sync(archive, usb).ok
    objects = archive.store.backend.root / "objects"  # type: ignore[attr-defined]
    victim = max((p for p in objects.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.unlink()
    real_replace = os.replace
    collected = {}

    def paused_before_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if "gc" not in collected and Path(src).parent == archive.store.backend.tmp:  # type: ignore[attr-defined]
            _expire_every_lock(archive)
            collected["gc"] = archive.gc()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", paused_before_rename)
    with pytest.raises(LockLostError, match="this repair lost the store lock: .*nothing was recorded; run the command again") as lost:
        repair(archive)
    assert lost.value.exit_code == 8
    assert collected["gc"].temp_files_removed >= 1  # gc really ran under the repair and took its temp file
    assert not victim.exists()
    monkeypatch.setattr(os, "replace", real_replace)
    assert list(repair(archive).repaired) == [victim.name]  # a re-run mends it
    archive.verify("acme/m:v1")
    assert archive.fsck().ok


@pytest.mark.parametrize("paused_past_the_lock", [True, False])
def test_a_mirror_sync_whose_temp_file_another_sync_cleared_says_so(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paused_past_the_lock: bool
) -> None:
    """The sync is "paused" for over an hour between writing an object's temp file in the mirror and renaming it;
    another sync of that mirror runs meanwhile and removes it as a killed sync's debris. A pause that long outlasts
    the store lock too (300 s by default): said as push says it (exit 8). With a lock that outlasted it (its expiry
    set above an hour), the lost write, naming the mirror rather than the primary's gc, which never touches it."""
    archive.push(write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    usb = mirrors.add_mirror(archive, "usb", str(tmp_path / "usb"))
    mirror_tmp = tmp_path / "usb" / "tmp"
    real_replace = os.replace
    state: dict[str, object] = {}
    once = threading.Lock()  # the sync writes from several threads: the first rename runs the other sync

    def paused_before_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if state.get("phase") != "other sync" and Path(src).parent == mirror_tmp:
            with once:
                if "phase" not in state:
                    state["phase"] = "other sync"  # (its own renames pass straight through)
                    if paused_past_the_lock:
                        _expire_every_lock(archive)
                    an_hour_ago = time.time() - mirrors.MIRROR_TEMP_AGE - 60
                    os.utime(src, (an_hour_ago, an_hour_ago))
                    state["other"] = mirrors.sync(archive, usb)
                    state["phase"] = "done"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", paused_before_rename)
    if paused_past_the_lock:
        with pytest.raises(LockLostError, match="this mirror sync lost the store lock: .*nothing was recorded") as lost:
            mirrors.sync(archive, usb)
        assert lost.value.exit_code == 8
    else:
        with pytest.raises(StoreWriteLostError, match=r"mirror usb at .*/usb: a temp file this sync wrote there was removed before its rename: another `mirror sync` removes those untouched for 1 h") as lost:
            mirrors.sync(archive, usb)
        assert "gc" not in str(lost.value)
    other = state["other"]
    assert isinstance(other, mirrors.SyncReport) and other.temp_removed == 1  # the other sync took the temp file
    monkeypatch.setattr(os, "replace", real_replace)
    again = mirrors.sync(archive, usb)  # a re-run finds the mirror complete
    assert again.ok and again.objects_copied == 0
    assert not list(mirror_tmp.iterdir())


def test_gc_stops_deleting_once_it_cannot_be_sure_it_still_holds_the_lock(archive: Archive) -> None:
    with archive.lock(exclusive=True, purpose="gc") as held:
        with archive.catalog.session() as s:
            store_locks.release(s, held.holder.id)  # as a peer would after our expiry
        held._confirmed_at -= held.ttl.total_seconds()  # and our safe window has run out
        with pytest.raises(LockLostError):
            held.ensure_safe()
