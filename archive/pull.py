"""Local pull: check the signature, then rebuild every file byte-identically into a folder (resumable)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelarc.archive.output_file import OutputFile, check_output_place
from modelarc.archive.own_state import refuse_state_place, state_places
from modelarc.archive.repository import refuse_if_withdrawn
from modelarc.archive.restore import restore
from modelarc.errors import DestinationError, UsageError
from modelarc.registry.refs import SnapshotId

if TYPE_CHECKING:
    from modelarc.archive.manifest import SnapshotManifest
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
    bundle_file = None
    places = state_places(archive.settings)
    if sig_target is not None:  # where the bundle cannot go is refused before the files are written
        refuse_state_place(sig_target, places, "the signature bundle")
        _refuse_a_pulled_file(sig_target, dest, manifest)
        check_output_place(sig_target, "--signature")
        if os.path.lexists(sig_target) and not force and not _holds(sig_target, bundle):
            raise UsageError(f"{sig_target} already exists; use --force to overwrite")
        bundle_file = OutputFile(sig_target, option="--signature")
    try:
        with archive.lock(exclusive=False, purpose="pull"):
            # resume: files already in place that match are kept, so a re-run after an interruption needs no --force
            restore(
                archive.store, manifest, dest, force=force, progress=progress, resume=True, protected=places
            )
        if bundle_file is not None:
            bundle_file.write(bundle)
    finally:
        if bundle_file is not None:
            bundle_file.discard()
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


def _refuse_a_pulled_file(signature: Path, dest: str | os.PathLike[str], manifest: SnapshotManifest) -> None:
    """The bundle must not land on a file the pull writes: it replaced the weights it vouches for, and the pull
    still said "verified"."""
    where = signature.parent.resolve() / signature.name
    root = Path(dest).resolve()
    for entry in manifest.files:
        if root.joinpath(*entry.path.split("/")) == where:
            raise DestinationError(f"--signature {signature} is {entry.path} of the snapshot being pulled there")
