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

from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.records import (
    CatalogRecord,
    catalog_time,
    format_time,
    parse_time,
    read_record,
    read_record_bytes,
    record_keys,
    record_written,
    write_record,
)
from modelarc.archive.runtime.cache import CachePurge, purge_snapshot
from modelarc.archive.weights import weight_object_ids
from modelarc.errors import LockedError, ModelarcError, RecordError, UsageError
from modelarc.registry import queries as q
from modelarc.registry import written_records as written_rows
from modelarc.registry.catalog_settings import clear_setting, record_setting
from modelarc.registry.db import CatalogSession
from modelarc.registry.leases import drop_presence_leases
from modelarc.registry.refs import Ref, SnapshotId
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
    # (``records_left_unfinished``), and the keys of other withdraw records of the snapshot named since that run
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
    since = _mark_started(archive, snap)
    with archive.catalog.session() as s:
        released = released_objects(s, snap, manifest)
        left, other = records_left_unfinished(archive, snap, since, str(ref), reason.strip(), actor)
        at = left.at if left is not None else catalog_time()
        apply_withdrawal(s, snap, released, reason.strip(), actor=actor, target=str(ref), at=at)
        s.flush()  # the tombstone holds its row before the record's time is taken (archive/records.py)
        if left is not None:
            # that record is this withdrawal's, committed with it now: durable first (the run that wrote it may
            # have been stopped between its put and its sync), as a record is before the change it records commits
            archive.store.backend.put(left.key, read_record_bytes(archive.store.backend, left.key))
            archive.store.backend.sync()
            written_rows.note_written(s, left.key)
        else:
            write_record(
                archive.store.backend,
                s,
                "withdraw",
                at=at,
                actor=actor,
                model=snap.model,
                snapshot=snap.digest,
                ref=str(ref),
                reason=reason.strip(),
            )
        clear_setting(s, _started_key(snap))  # committed with the withdrawal: no later run looks for records
    deletion = _delete_unreferenced(archive, released)
    with archive.catalog.session() as s:
        kept = len(q.kept_as_bases(s, released))
    purged = purge_snapshot(archive.settings, snap.digest)
    result = _result(ref, snap, reason.strip(), released, deletion, kept, purged)
    return replace(result, record_completed=left.key if left else None, records_contradicting=other)


def _started_key(snap: SnapshotRecord) -> str:
    """The ``catalog_settings`` key that says an ``rm`` of ``snap`` started and has not committed (the column holds
    64 characters: the snapshot's hex is cut to 61, which still names one snapshot)."""
    return f"rm:{snap.digest.hex[:61]}"


def _mark_started(archive: Archive, snap: SnapshotRecord) -> dt.datetime | None:
    """Note, committed before the withdraw record is written, that an ``rm`` of ``snap`` started now; the time
    an earlier run that never committed noted (None when there was none: then no record is looked for).

    Why a note: a run killed between its record and its commit leaves nothing else in the catalog, and looking
    for such a record on every ``rm`` would list (and read) every record of the store. The earliest note is kept,
    so a record left by the first of several stopped runs is still found."""
    mine = format_time(catalog_time())
    # two at once: the second reads the first's note (whose record, if any, is not left yet: no match is found)
    noted = record_setting(archive.catalog, _started_key(snap), mine)
    if noted == mine:
        return None
    try:
        return parse_time(noted)
    except ValueError:  # garbled by hand: look from the snapshot's creation on
        return snap.created_at


def records_left_unfinished(
    archive: Archive, snap: SnapshotRecord, since: dt.datetime | None, ref: str, reason: str, actor: str
) -> tuple[CatalogRecord | None, tuple[str, ...]]:
    """The withdraw records of ``snap`` named since an earlier ``rm`` of it started (``since``, from its note) that it
    wrote but never committed (killed between its record and its commit: archive/records.py), as (the one that
    states exactly this withdrawal, the keys of the others). None and () without such a note.

    Why: such a record withdraws a snapshot the catalog holds live, which ``fsck`` reports as a contradiction (a
    rebuild would withdraw it at that record's time, with its reason). Running the same ``rm`` again is what a user
    does after a kill; it then completes the withdrawal that record states (its time, reason, reference and actor)
    instead of writing a second one dated later, which the first would still contradict. A record only counts when
    it says exactly what this run would record, and when its time and the time in its name lie, in that order,
    between the earlier run's start and now: anyone who can write the store can write records (docs/SECURITY.md), and
    a planted one must not choose the reason, the actor or the time the catalog records, nor be named where a
    rebuild would refuse it (in the future) or replay it before the snapshot existed. Any record of a withdrawal
    of a live snapshot is one that never committed or was planted, whether or not a `repair` noted it since."""
    if since is None:
        return None, ()
    backend = archive.store.backend
    now = catalog_time()
    match: CatalogRecord | None = None
    other: list[str] = []
    for key in sorted(k for k in record_keys(backend) if since <= (record_written(k) or dt.datetime.min) <= now):
        try:
            record = read_record(backend, key)
        except (RecordError, OSError, ModelarcError):
            continue  # named by fsck; not this withdrawal's
        body = record.body
        if record.kind != "withdraw" or body.get("model") != snap.model or body.get("snapshot") != str(snap.digest):
            continue
        same = body.get("ref") == ref and body.get("reason") == reason and record.actor == actor
        if match is None and same and since <= record.at <= record.written <= now:
            match = record
        else:
            other.append(key)
    return match, tuple(other)


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
