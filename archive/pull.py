"""Local pull: check the signature, then rebuild every file byte-identically into a folder (resumable)."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelarc.archive.repository import refuse_if_withdrawn
from modelarc.archive.restore import check_folder, restore
from modelarc.errors import DestinationError, UsageError
from modelarc.registry.refs import SnapshotId

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

Progress = Callable[[int], None]


@dataclass(frozen=True)
class PullResult:
    ref: str
    snapshot: SnapshotId
    dest: str
    files: int
    bytes: int
    signature: str | None
    key_fingerprint: str
    seconds: float


def pull_snapshot(
    archive: Archive,
    ref_text: str,
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    signature_path: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> PullResult:
    started = time.perf_counter()
    ref, snap = archive.resolve(ref_text)
    refuse_if_withdrawn(snap, str(ref))
    manifest = archive.manifest(snap)
    fingerprint, bundle = archive._verify_signature(snap, manifest)
    if on_total:
        on_total(manifest.logical_bytes)
    sig_target = Path(signature_path) if signature_path else None
    if sig_target is not None:  # a place the bundle cannot go is refused before the files are written
        check_folder(sig_target.parent, sig_target)
        if sig_target.is_dir():
            raise DestinationError(f"--signature {sig_target} is a folder; name the file to write the bundle to")
    if sig_target is not None and sig_target.exists() and not force and not _holds(sig_target, bundle):
        raise UsageError(f"{sig_target} already exists; use --force to overwrite")
    with archive.lock(exclusive=False, purpose="pull"):
        # resume: files already in place that match are kept, so a re-run after an interruption needs no --force
        restore(archive.store, manifest, dest, force=force, progress=progress, resume=True)
    if sig_target is not None:
        write_atomic(sig_target, bundle)
    return PullResult(
        ref=str(ref),
        snapshot=snap.digest,
        dest=str(Path(dest).absolute()),
        files=len(manifest.files),
        bytes=manifest.logical_bytes,
        signature=str(sig_target) if sig_target else None,
        key_fingerprint=fingerprint,
        seconds=time.perf_counter() - started,
    )


def _holds(path: Path, data: bytes) -> bool:
    """Whether the regular file at ``path`` already holds exactly ``data`` (a resumed pull keeps it)."""
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file beside the target, fsync, rename: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.modelarc-partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        if tmp.is_file():
            tmp.unlink()
        raise DestinationError(f"cannot write {path}: {exc.strerror}") from None
