"""Integrity and housekeeping: verify (every byte and the signature), fsck (every object), gc, and the one path
that deletes objects (gc and withdrawal both use ``delete_unreferenced``).

gc holds the store's exclusive lock; pushes and pulls hold it shared, and a remote push's uploads are leased
(registry/leases.py), so nothing a transfer in flight relies on is ever deleted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelarc.archive.manifest_checks import check_tensors_match_header
from modelarc.archive.records import read_records
from modelarc.archive.restore import file_chunks, iter_chunk_bytes
from modelarc.archive.stored_encoding import mismatch
from modelarc.archive.unreplayed import needed_objects, unreplayed_snapshots
from modelarc.archive.weights import kept_files
from modelarc.errors import (
    DeltaBaseError,
    IntegrityError,
    ModelarcError,
    ObjectCorruptError,
    ObjectFormatError,
    ObjectMissingError,
    RecordError,
    UnsupportedObjectError,
    UsageError,
)
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.registry.leases import leased_object_ids
from modelarc.registry.records import ObjectRecord
from modelarc.registry.refs import SnapshotId
from modelarc.registry.snapshots import SnapshotRecord
from modelarc.storage import ObjectId

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive
    from modelarc.archive.store_lock import StoreLockHandle

Progress = Callable[[int], None]


@dataclass(frozen=True)
class VerifyReport:
    snapshot: SnapshotId
    ref: str
    files: int
    bytes: int
    key_fingerprint: str
    withdrawn: bool = False


@dataclass
class FsckReport:
    objects_checked: int = 0
    bytes_checked: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)  # object id -> snapshots that need it
    corrupt: dict[str, list[str]] = field(default_factory=dict)  # object id -> snapshots that need it
    corrupt_why: dict[str, str] = field(default_factory=dict)  # object id -> what is wrong with it
    # object id -> snapshots that need it, for objects of a newer format (or codec) than this modelarc reads: not
    # damage, and not broken snapshots, but nothing this modelarc can check or restore (unsupported_why: what)
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    unsupported_why: dict[str, str] = field(default_factory=dict)
    unreferenced: int = 0
    broken_snapshots: list[str] = field(default_factory=list)
    temp_files: int = 0
    # keys under objects/ that are not objects (a name not 64 hex, or a copy outside its fan-out folder): ignored
    # by every reader, reported here (docs/FORMAT.md "Keys")
    stray: list[str] = field(default_factory=list)
    read_data: bool = False  # False: presence and manifests only, object bytes not re-hashed
    # object id -> how its stored header (codec, delta base) differs from its catalog row (read_data only): gc keeps
    # bases by the catalog, so such a delta can lose its base (archive/stored_encoding.py; `repair --read-data`)
    mismatched: dict[str, str] = field(default_factory=dict)
    # catalog records in the store (records/) that a rebuild would replay to another catalog, one line each as
    # `upgrade` names them (archive/upgrade.py ``record_findings``). Contradicted: it states otherwise than the
    # catalog about something the catalog holds (a withdrawal of a live snapshot, other provenance, another time):
    # fsck fails (exit 5), as a rebuild would not bring this catalog back. Not in catalog: a change the catalog
    # never had, most often an interrupted command's (stopped between its record and its commit), which a rebuild
    # would make: a warning, as that is no damage
    records_contradicted: list[str] = field(default_factory=list)
    records_not_in_catalog: list[str] = field(default_factory=list)

    @property
    def damage_found(self) -> bool:
        return bool(self.missing or self.corrupt or self.broken_snapshots)

    @property
    def ok(self) -> bool:
        return not (self.damage_found or self.unsupported or self.mismatched or self.records_contradicted)


@dataclass(frozen=True)
class GcReport:
    objects_removed: int
    bytes_freed: int
    temp_files_removed: int
    objects_kept: int
    # references of withdrawn snapshots to what is weights now, released first (archive/provenance/withdrawal.py);
    # a dry run releases none, so what they would free is not in its objects_removed: it counts them here
    withdrawn_weights_released: int = 0


def verify(archive: Archive, ref_text: str, progress: Progress | None = None) -> VerifyReport:
    """Re-read every byte of a snapshot: manifest hash, signature, every object, every file's sha256, and the
    tensors each safetensors or GGUF header lists against the manifest's."""
    ref, snap = archive.resolve(ref_text)
    return verify_snapshot(archive, snap, str(ref), progress)


def verify_snapshot(
    archive: Archive, snap: SnapshotRecord, label: str, progress: Progress | None
) -> VerifyReport:
    manifest = archive.manifest(snap)
    fingerprint, _bundle = archive._verify_signature(snap, manifest)
    total = 0
    # a withdrawn snapshot keeps only its small files; its manifest and signature were checked above
    files = kept_files(manifest) if snap.withdrawn else manifest.files
    with ThreadPoolExecutor(max_workers=2) as pool:
        for entry in files:
            sha = hashlib.sha256()
            size = 0
            header = bytearray()  # a safetensors or GGUF file's own header, to hold the tensor table to
            for data in iter_chunk_bytes(archive.store, file_chunks(entry), pool):
                sha.update(data)
                if size < entry.header_length:
                    header += data[: entry.header_length - size]
                size += len(data)
                if progress:
                    progress(len(data))
            if size != entry.size or sha.hexdigest() != entry.sha256:
                raise IntegrityError(f"{label}: {entry.path} does not rebuild to its recorded sha256")
            # a manifest whose tensor parts its file's header does not list (one a rebuild-catalog before
            # 2026-12-02 replayed unchecked): the bytes are right, what the catalog says of them is not
            check_tensors_match_header(entry, bytes(header), label)
            total += size
    return VerifyReport(snap.digest, label, len(files), total, fingerprint, snap.withdrawn)


def verify_all(
    archive: Archive, progress: Progress | None = None
) -> tuple[list[VerifyReport], list[tuple[str, str]]]:
    with archive.catalog.session() as s:
        snaps = [(sn, f"{sn.model}@{sn.digest[:19]}") for sn in q.list_snapshots(s)]
    ok, failed = [], []
    for snap, label in snaps:
        try:
            ok.append(verify_snapshot(archive, snap, label, progress))
        except ModelarcError as exc:
            failed.append((label, str(exc)))
    return ok, failed


def fsck(archive: Archive, progress: Progress | None = None, *, read_data: bool = False) -> FsckReport:
    """Check the store against the catalog; name what is missing or corrupt and what it breaks.

    By default it lists the store (one request per thousand objects on S3) and reads only the manifests: every
    object a snapshot needs must be there and every manifest must parse and hash right. ``read_data`` also
    re-reads and re-hashes every object, which on a large bucket means downloading all of it (restic's
    ``check --read-data``).
    """
    report = FsckReport(read_data=read_data)
    with archive.catalog.session() as s:
        referenced = q.referenced_object_ids(s)
        snaps = q.list_snapshots(s)
        recorded = rows.recorded_encodings(s) if read_data else {}
    present: set[str] = set()
    base_unreadable: list[str] = []  # deltas whose base could not be read
    for key, found in archive.store.iter_keys():  # one listing
        if found is None:
            report.stray.append(key)
            continue
        oid = found
        present.add(oid)
        try:
            if read_data:
                report.bytes_checked += len(archive.store.get(oid))
                _compare_row(archive, report, oid, recorded)
        except (ObjectCorruptError, ObjectMissingError) as exc:
            _corrupt(report, oid, str(exc))
        except DeltaBaseError:
            base_unreadable.append(oid)  # decided below, once the listing is whole
            _compare_row(archive, report, oid, recorded)  # (its header is whole: only its base is not)
        except UnsupportedObjectError as exc:
            _unsupported(report, oid, str(exc))
        report.objects_checked += 1
        if progress:
            progress(1)
    if not read_data:  # (reading the data decodes every chain anyway) a delta's chain, from headers alone
        with archive.catalog.session() as s:
            deltas = q.delta_object_ids(s)
        for oid in sorted((deltas & present) - set(report.corrupt)):
            try:
                archive.store.delta_chain(ObjectId(oid))
            except (ObjectCorruptError, ObjectFormatError) as exc:  # too deep, a cycle, a malformed header
                _corrupt(report, oid, str(exc))
            except ObjectMissingError:
                base_unreadable.append(oid)
            except UnsupportedObjectError as exc:  # it, or a base down its chain, is of a newer format
                _unsupported(report, oid, str(exc))
    for oid in sorted(set(base_unreadable) & referenced):  # (an unreferenced one is gc's)
        # a base the catalog references is reported missing in its own right; one it does not know is no base
        # this delta was ever stored against: its header is damaged (one flipped bit names another object)
        try:
            base = _first_missing_base(archive, oid, present)
        except (ObjectCorruptError, ObjectFormatError, ObjectMissingError) as exc:
            _corrupt(report, oid, str(exc))
            continue
        except UnsupportedObjectError as exc:
            _unsupported(report, oid, str(exc))
            continue
        if base is not None and base not in referenced:
            _corrupt(
                report,
                oid,
                f"object {oid} is corrupt: its header names base {base}, which is neither in the store nor in the "
                "catalog",
            )
    for oid in referenced - present:
        report.missing[oid] = []
    report.unreferenced = len(present - referenced)
    bad = set(report.missing) | set(report.corrupt)
    with archive.catalog.session() as s:
        users = q.snapshots_using(s, bad | set(report.unsupported))
        broken = set()
        for oid, snap_list in users.items():
            names = sorted(sn.label for sn in snap_list)
            if oid in report.unsupported and oid not in bad:  # not damage: nothing broken
                report.unsupported[oid] = names
                continue
            target = report.missing if oid in report.missing else report.corrupt
            target[oid] = names
            broken.update(names)
    for snap in snaps:  # a manifest that no longer parses breaks its snapshot even if every object is fine
        if snap.digest.hex in bad or snap.digest.hex in report.unsupported:
            continue
        try:
            archive.manifest(snap)
        except ObjectCorruptError as exc:  # found without read_data too: manifests are always read
            _corrupt(report, snap.digest.hex, str(exc))
            report.corrupt[snap.digest.hex].append(snap.label)
            broken.add(snap.label)
        except UnsupportedObjectError as exc:
            _unsupported(report, snap.digest.hex, str(exc))
            report.unsupported[snap.digest.hex].append(snap.label)
        except ModelarcError:
            broken.add(snap.label)
    report.broken_snapshots = sorted(broken)
    report.stray.sort()
    report.temp_files = archive.store.temp_count()
    from modelarc.archive.upgrade import record_findings  # (its imports cost a plain fsck nothing until here)

    findings = record_findings(archive)
    report.records_contradicted = list(findings.contradicted)
    report.records_not_in_catalog = list(findings.not_in_catalog)
    return report


def _corrupt(report: FsckReport, oid: str, why: str) -> None:
    """Note ``oid`` corrupt for ``why``; the snapshots that need it are filled in afterwards."""
    report.corrupt[oid] = []
    report.corrupt_why[oid] = why


def _compare_row(archive: Archive, report: FsckReport, oid: str, recorded: dict[str, ObjectRecord]) -> None:
    """Note ``oid`` mismatched when its catalog row does not describe the header just read (one ranged read more:
    the object was read whole already). An object without a row is not compared: it is gc's, or a rebuild's."""
    row = recorded.get(oid)
    if row is None:
        return
    try:
        info = archive.store.stat(ObjectId(oid))
    except ModelarcError:  # changed since it was read (or its header is unreadable): reported in its own right
        return
    why = mismatch(info, row)
    if why is not None:
        report.mismatched[oid] = why


def _unsupported(report: FsckReport, oid: str, why: str) -> None:
    """Note ``oid`` of a newer format than this modelarc reads, for ``why``; its snapshots are filled in later."""
    report.unsupported[oid] = []
    report.unsupported_why[oid] = why


def _first_missing_base(archive: Archive, oid: str, present: set[str]) -> str | None:
    """The first base down ``oid``'s delta chain that the store lacks, from headers alone (None: every base is
    there, so one of them is damaged and reported in its own right)."""
    current, seen = ObjectId(oid), {oid}
    while (base := archive.store.delta_base(current)) is not None:
        if base not in present:
            return str(base)
        if base in seen:  # a cycle: every object of it is there
            return None
        seen.add(base)
        current = base
    return None


def gc(archive: Archive, *, dry_run: bool = False) -> GcReport:
    """Delete objects no snapshot references. Refuses to run while any push or pull holds the store, and on a
    catalog with no snapshot when the store's catalog records name some: that catalog is not the store's (lost and
    replaced by an empty one), and gc would delete every object; `rebuild-catalog` first.

    Keeps too what a later rebuild needs of each snapshot the records name and the catalog lacks (one a rebuild
    refused for a missing object that `repair` can still fetch; archive/unreplayed.py): its objects may be the
    last copy. The records are read once, under the lock.

    First releases what withdrawn snapshots still reference that today's definition of weights calls weights
    (withdrawals before it left pickles, NumPy arrays, ... referenced: archive/provenance/withdrawal.py)."""
    with archive.lock(exclusive=True, wait=False, purpose="gc") as held:
        # asked under the lock: a push writes its snapshot record under the shared lock just before its commit,
        # so no record seen here belongs to a push still in flight
        with archive.catalog.session() as s:
            catalogued = q.snapshot_digests(s)
        try:
            unreplayed = unreplayed_snapshots(read_records(archive.store.backend), catalogued)
        except RecordError as exc:
            raise UsageError(
                f"{exc}; gc cannot tell which objects a damaged record needs (`modelarc repair --read-data` "
                "mends it from a mirror)"
            ) from None
        if not catalogued and unreplayed:
            raise UsageError(
                "the catalog has no snapshots but the store's catalog records (records/) name some: this catalog "
                "is not the store's (lost, or a new database), and gc would delete every object; run "
                "`modelarc rebuild-catalog` first"
            )
        # what withdrawals by an older, narrower rule left referenced (a dry run only counts it)
        from modelarc.archive.provenance.withdrawal import release_withdrawn_weights

        released = release_withdrawn_weights(archive, dry_run=dry_run)
        needed = needed_objects(archive.store, unreplayed)
        if needed.unsupported:
            _oid, why, more = _first_of(needed.unsupported)
            raise UnsupportedObjectError(
                f"{why}{more}; gc cannot tell which objects it needs as bases, so it deletes nothing: run gc with "
                "that newer modelarc"
            )
        if needed.unreadable:
            label, why, more = _first_of(needed.unreadable)
            raise UsageError(
                f"snapshot {label}{more}, named by the store's catalog records but not in the catalog: {why}; gc "
                "cannot tell which objects it needs. `modelarc repair` fetches its manifest from a mirror (then "
                "`rebuild-catalog` into an empty catalog brings it back); if no copy is left, move its records out "
                "of records/"
            )
        present = set(archive.store.iter_ids())
        removed, freed = delete_unreferenced(archive, present - needed.ids, held=held, dry_run=dry_run)
        temp_removed = 0
        if not dry_run:
            temp_removed = archive.store.clean_tmp(time.time())  # no writer can be running: we hold the lock
            with archive.catalog.session() as s:
                q.audit(
                    s,
                    archive.settings.actor,
                    "gc",
                    "store",
                    objects_removed=removed,
                    bytes_freed=freed,
                    withdrawn_weights_released=released,
                )
    return GcReport(removed, freed, temp_removed, len(present) - removed, released)


def _first_of(problems: dict[str, str]) -> tuple[str, str, str]:
    """The first problem in key order, what it is, and `` (and N more)`` when there are others: one error line."""
    key, why = next(iter(sorted(problems.items())))
    return key, why, f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""


def delete_unreferenced(
    archive: Archive, candidates: set[str], *, held: StoreLockHandle, dry_run: bool = False
) -> tuple[int, int]:
    """The one deletion path (gc, withdrawal): of ``candidates``, delete those no snapshot references and no
    push in flight has leased; (objects removed, stored bytes freed). The caller holds the exclusive lock
    ``held``, and each deletion happens only while that lock is certainly still ours (``ensure_safe``).

    Catalog rows go first: a crash between leaves orphan files for the next gc, never rows without files.
    """
    with archive.catalog.session() as s:
        doomed = sorted(candidates - q.objects_in_use(s, candidates) - leased_object_ids(s))
    sizes = {}
    for oid in doomed:
        try:
            sizes[oid] = archive.store.stored_size(ObjectId(oid))
        except ObjectMissingError:
            sizes[oid] = 0
    if dry_run:
        return len(doomed), sum(sizes.values())
    with archive.catalog.session() as s:
        q.delete_object_rows(s, doomed)
    for oid in doomed:
        held.ensure_safe()
        archive.store.delete(ObjectId(oid))
    return len(doomed), sum(sizes.values())
