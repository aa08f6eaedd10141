"""Withdrawing a snapshot (``modelarc rm``): the weights go, the record stays.

A tombstoned snapshot keeps its catalog row, manifest, file hashes, signature, provenance and the reason it was
withdrawn, so the archive can still say what it was and prove it. Only weight objects are released, as
archive/weights.py defines them: every file that is not public metadata (configs, tokenizers, model cards, licences
are), safetensors and GGUF files save their headers. Those are kept. Released objects are deleted at once when no
other snapshot uses them and no push is running; otherwise the next ``gc`` deletes them.

The load cache's decoded copy of the snapshot (archive/runtime/cache.py) goes at once too, from the home's own
``cache/`` and MODELARC_CACHE_DIR: otherwise ``rm`` would say the weights are freed while a byte-identical copy
stayed in the home. One this user may not remove (another user's, in a shared cache folder) is reported, not an
error. A cache this process does not know (another home's, a server's own MODELARC_CACHE_DIR) is not reached,
but no load serves a withdrawn snapshot from any cache: loads check the catalog first (``refuse_if_withdrawn``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from modelarc.archive.left_records import (
    Attempt,
    LeftRecords,
    find_left,
    finish_attempt,
    start_attempt,
    write_unless_left,
)
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.records import write_record
from modelarc.archive.runtime.cache import CachePurge, purge_snapshot
from modelarc.archive.weights import weight_object_ids
from modelarc.errors import LockedError, ModelarcError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.db import CatalogSession
from modelarc.registry.leases import drop_presence_leases
from modelarc.registry.refs import Ref, SnapshotId, parse_model_name
from modelarc.registry.snapshots import SnapshotRecord, withdraw_snapshot
from modelarc.storage import ObjectId
from modelarc.storage.store import ObjectInfo

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@dataclass(frozen=True)
class WithdrawResult:
    ref: str
    snapshot: SnapshotId
    reason: str
    objects_released: int
    objects_deleted: int
    bytes_freed: int
    deferred_to_gc: bool
    # released weights that stay because fine-tunes stored as deltas against them need them (archive/deltas.py)
    kept_as_bases: int = 0
    # the load cache's decoded copies removed (entry folders) and their bytes, and those this user may not
    # remove, as "FOLDER (why)"
    cache_removed: tuple[str, ...] = ()
    cache_bytes_freed: int = 0
    cache_left: tuple[str, ...] = ()
    # a re-run of ``rm`` on a snapshot already withdrawn (on ``withdrawn_at``) that finished that withdrawal's
    # deletion, cut short by a kill or by a push holding the store: ``reason`` is the withdrawal's own
    finished: bool = False
    withdrawn_at: str | None = None
    # the record an earlier run wrote before it was stopped short of its commit, which this run completed
    # (archive/left_records.py), and the keys of other withdraw records of the snapshot named since that run
    # started, not taken (another reason, reference or actor, or a time outside that run's): they contradict the
    # catalog until moved out of records/ (fsck names them)
    record_completed: str | None = None
    records_contradicting: tuple[str, ...] = ()


def withdraw(archive: Archive, ref_text: str, reason: str | None) -> WithdrawResult:
    """Withdraw ``ref_text`` for ``reason``; on a snapshot already withdrawn, finish that withdrawal instead
    (``finish_withdrawal``: no reason needed, and one given is not recorded)."""
    ref, snap = archive.resolve(ref_text)
    if snap.tombstoned_at is not None:
        return finish_withdrawal(archive, ref, snap)
    if not reason or not reason.strip():
        raise UsageError("a reason is required: modelarc rm REF --reason TEXT")
    manifest = archive.manifest(snap)
    actor = archive.settings.actor
    attempt = _mark_started(archive, snap)
    with archive.catalog.session() as s:
        # an rm of it in flight commits first (archive/left_records.py); then this one finishes that withdrawal
        q.lock_model(s, q.require_model(s, *parse_model_name(snap.model)).row_id)
        if q.resolve_snapshot(s, Ref(*parse_model_name(snap.model), digest=snap.digest)).tombstoned_at is not None:
            raise UsageError(f"{ref} was withdrawn meanwhile by another rm: run `modelarc rm {ref}` again to finish")
        released = released_objects(s, snap, manifest)
        left = _left_withdrawals(archive, attempt, snap, str(ref), reason.strip(), actor)
        at = left.time()
        apply_withdrawal(s, snap, released, reason.strip(), actor=actor, target=str(ref), at=at)
        s.flush()  # the tombstone holds its row before the record's time is taken (archive/records.py)
        write_unless_left(
            archive,
            s,
            left,
            lambda: write_record(
                archive.store.backend,
                s,
                "withdraw",
                at=at,
                actor=actor,
                model=snap.model,
                snapshot=snap.digest,
                ref=str(ref),
                reason=reason.strip(),
            ),
        )
        finish_attempt(s, attempt)
    deletion = _delete_unreferenced(archive, released)
    with archive.catalog.session() as s:
        kept = len(q.kept_as_bases(s, released))
    purged = purge_snapshot(archive.settings, snap.digest)
    result = _result(ref, snap, reason.strip(), released, deletion, kept, purged)
    return replace(result, record_completed=left.completed, records_contradicting=left.others)


def _started_key(snap: SnapshotRecord) -> str:
    """The ``catalog_settings`` key that says an ``rm`` of ``snap`` started and has not committed (the column holds
    64 characters: the snapshot's hex is cut to 61, which still names one snapshot)."""
    return f"rm:{snap.digest.hex[:61]}"


def _mark_started(archive: Archive, snap: SnapshotRecord) -> Attempt:
    """Note, committed before the withdraw record is written, that an ``rm`` of ``snap`` started now
    (archive/left_records.py); a note garbled by hand looks from the snapshot's creation on."""
    return start_attempt(archive, _started_key(snap), fallback=snap.created_at)


def _left_withdrawals(
    archive: Archive, attempt: Attempt, snap: SnapshotRecord, ref: str, reason: str, actor: str
) -> LeftRecords:
    """The withdraw records of ``snap`` an earlier ``rm`` of it stopped before its commit may have left, and the
    one of them that states exactly this withdrawal (its reason, reference and actor): archive/left_records.py.

    Such a record withdraws a snapshot the catalog holds live, which ``fsck`` reports as a contradiction (a rebuild
    would withdraw it at that record's time, with its reason). Any record of a withdrawal of a live snapshot is one
    that never committed or was planted, whether or not a `repair` noted it since."""
    return find_left(
        archive,
        attempt,
        "withdraw",
        lambda b: b.get("model") == snap.model and b.get("snapshot") == str(snap.digest),
        lambda r: r.body.get("ref") == ref and r.body.get("reason") == reason and r.actor == actor,
    )


def finish_withdrawal(archive: Archive, ref: Ref, snap: SnapshotRecord) -> WithdrawResult:
    """``rm`` again on a withdrawn snapshot: delete what its withdrawal released that is still stored and no
    snapshot uses, and its load-cache copies. The withdrawal is committed (catalog row and record) before anything
    is deleted, so a kill or a push holding the store lock leaves its weights on disk; README promises that running
    ``rm`` again finishes the work, as ``gc`` does. The withdrawal keeps its first reason and date; nothing new is
    recorded. With nothing left to free it is the user's mistake (another snapshot meant?), said as before."""
    manifest = archive.manifest(snap)
    with archive.catalog.session() as s:
        # the bases its delta objects kept were released with the weights: those rows are gone, so the weights'
        # own headers name them (a base still stored and unused then goes too, as the first run would have done)
        candidates = weight_object_ids(manifest) | q.base_object_ids(s, snap.row_id)
        stored = {oid for oid in candidates if archive.store.has(ObjectId(oid))}
        bases = {info.delta_base for info in _infos(archive, stored) if info.delta_base}
        candidates = stored | {b for b in bases if archive.store.has(ObjectId(b))}
        pending = candidates - q.objects_in_use(s, candidates)
    purged = purge_snapshot(archive.settings, snap.digest)
    withdrawn = f"{ref} was already withdrawn on {snap.tombstoned_at:%Y-%m-%d}: {snap.tombstone_reason}"
    if not pending and not purged.removed and not purged.left:
        raise UsageError(f"{withdrawn} (nothing of its weights is left to free)")
    deletion = _delete_unreferenced(archive, pending) if pending else (0, 0, False)
    with archive.catalog.session() as s:
        kept = len(q.kept_as_bases(s, pending))
    return _result(ref, snap, snap.tombstone_reason or "", pending, deletion, kept, purged, finished=True)


def _result(
    ref: Ref,
    snap: SnapshotRecord,
    reason: str,
    released: set[str],
    deletion: tuple[int, int, bool],
    kept: int,
    purged: CachePurge,
    *,
    finished: bool = False,
) -> WithdrawResult:
    """The one way a withdrawal (first run or a finishing re-run) reports, so the two cannot drift apart in how
    they count the cache or name what was left. ``deletion`` is ``_delete_unreferenced``'s answer."""
    deleted, freed, deferred = deletion
    return WithdrawResult(
        str(ref),
        snap.digest,
        reason,
        len(released),
        deleted,
        freed,
        deferred,
        kept,
        cache_removed=tuple(str(p) for p in purged.removed),
        cache_bytes_freed=purged.bytes_freed,
        cache_left=tuple(f"{p} ({why})" for p, why in purged.left),
        finished=finished,
        withdrawn_at=snap.tombstoned_at.isoformat() if finished and snap.tombstoned_at else None,
    )


def _infos(archive: Archive, ids: set[str]) -> list[ObjectInfo]:
    """The stored headers of ``ids``; one that cannot be read names no base (gc frees an unused base later)."""
    infos = []
    for oid in sorted(ids):
        try:
            infos.append(archive.store.stat(ObjectId(oid)))
        except ModelarcError:
            continue
    return infos


def released_objects(s: CatalogSession, snap: SnapshotRecord, manifest: SnapshotManifest) -> set[str]:
    """What a withdrawal releases: the weight objects, and the bases its delta objects needed (without the
    weights it keeps nothing that needs them)."""
    return weight_object_ids(manifest) | q.base_object_ids(s, snap.row_id)


def apply_withdrawal(
    s: CatalogSession,
    snap: SnapshotRecord,
    released: set[str],
    reason: str,
    *,
    actor: str,
    target: str,
    at: dt.datetime,
) -> None:
    """Tombstone ``snap`` and release its weight objects ``released``, with the audit entry: `modelarc rm` and
    its replay from a catalog record (archive/rebuild.py) alike. Deleting the objects is the caller's business."""
    withdraw_snapshot(s, snap.row_id, reason, at)
    q.release_snapshot_objects(s, snap.row_id, released)
    drop_presence_leases(s, released)  # a pusher's `check` on these weights must not keep them from being freed
    q.audit(s, actor, "tombstone", target, at=at, snapshot=snap.digest, reason=reason)


def _delete_unreferenced(archive: Archive, candidates: set[str]) -> tuple[int, int, bool]:
    """Free the released weights now if no push or pull holds the store; otherwise the next gc frees them."""
    try:
        with archive.lock(exclusive=True, wait=False, purpose="rm") as held:
            deleted, freed = archive.delete_unreferenced(candidates, held=held)
            return deleted, freed, False
    except LockedError:
        return 0, 0, True


def release_withdrawn_weights(archive: Archive, *, dry_run: bool = False) -> int:
    """Release again, by today's definition of weights (archive/weights.py), what every withdrawn snapshot still
    references; the number of objects released now. gc calls it under its exclusive lock, before it deletes.

    Withdrawals made before that definition released only files with a known weight suffix: a pickle, a NumPy
    array or an ONNX external-data file of a withdrawn snapshot stayed referenced, so gc kept it for good. A
    rebuild replays the ``withdraw`` record with the current rule and frees them; this does the same without one.
    A withdrawn snapshot whose manifest cannot be read keeps everything (what its weights are is unknown)."""
    released_now = 0
    with archive.catalog.session() as s:
        for snap in q.withdrawn_snapshots(s):
            try:
                manifest = archive.manifest(snap)
            except ModelarcError:
                continue
            held = q.snapshot_object_ids(s, snap.row_id) & weight_object_ids(manifest)
            if held and not dry_run:  # (a dry run counts them)
                q.release_snapshot_objects(s, snap.row_id, held)
            released_now += len(held)
    return released_now
