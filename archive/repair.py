"""Repair: replace every missing or corrupt object with a good copy from a mirror (or, last, one set aside in the
primary's ``quarantine/`` that still verifies), and with ``--read-data`` make every catalog row describe its
object's stored copy (``_realign``, archive/stored_encoding.py).

A copy is good only if it decodes and hashes to the object's id, checked before anything of the primary is
touched. A damaged primary copy is moved aside to ``quarantine/`` (kept for a look, never overwritten in place),
then the good copy is written with the store's atomic put and read back. Each step is idempotent, so a repair
killed at any instant is finished by running it again: the quarantined copy is kept, and an object left missing
between "set aside" and "written" is simply missing, which the next run repairs from the same mirror.

The objects a snapshot of the store's catalog records needs that the catalog lacks (one `rebuild-catalog` refused for
an object the primary lost; archive/unreplayed.py) are fetched too, so that a rebuild into an empty catalog brings it
back afterwards.

Catalog records are put back the same way, but a lost one only if this catalog notes that it wrote it
(``repair_records``): a mirror can mend this archive's records, never add to them, unless the user names it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from modelarc.archive.deltas import release_unneeded_bases
from modelarc.archive.mirrors import good_copies, is_remote_target, mirrors, open_mirrors
from modelarc.archive.records import MAX_RECORD_BYTES, RECORDS_PREFIX, read_record_bytes, readable_records
from modelarc.archive.scrub import check_object
from modelarc.archive.stored_encoding import mismatch, rewrite_alone
from modelarc.archive.unreplayed import needed_objects, unreplayed_snapshots
from modelarc.errors import (
    ModelarcError,
    RecordError,
    StoredValueError,
    UnsupportedObjectError,
    UsageError,
)
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.registry import written_records as written_rows
from modelarc.registry.records import ObjectRecord
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.objectformat import MAX_STORED_SIZE
from modelarc.storage.store import QUARANTINE_PREFIX, delta_base_of, object_key

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@dataclass
class RepairReport:
    repaired: dict[str, str] = field(default_factory=dict)  # object id -> the mirror its copy came from
    quarantined: dict[str, str] = field(default_factory=dict)  # object id -> where its damaged copy now is
    unrepaired: dict[str, list[str]] = field(default_factory=dict)  # object id -> snapshots left broken
    # object id -> why it was not repaired, when a mirror had a good copy (else no mirror has one)
    unrepaired_why: dict[str, str] = field(default_factory=dict)
    # object id -> why: a header this modelarc cannot read (a newer format, or a flipped byte) and no mirror copy it
    # can verify; left as it is (one that a mirror had was put back, the unreadable copy kept in quarantine/)
    unsupported: dict[str, str] = field(default_factory=dict)
    broken_snapshots: list[str] = field(default_factory=list)
    checked: int = 0
    # catalog records (records/, archive/records.py): the copy a rebuild-catalog depends on
    records_repaired: dict[str, str] = field(default_factory=dict)  # record key -> the mirror it came from
    records_unrepaired: dict[str, str] = field(default_factory=dict)  # record key -> why not
    # record key -> why not, for a record the primary lacks that this catalog has no note of writing: only a
    # mirror holds it, and anyone who can write to a mirror can make one (``--records-from MIRROR`` takes it)
    records_not_taken: dict[str, str] = field(default_factory=dict)
    # mirror name -> why it could not be read at all (a missing folder: an unmounted disk)
    unreachable: dict[str, str] = field(default_factory=dict)
    # object id -> how its catalog row misdescribed the stored copy, and what was done (``read_data`` only;
    # archive/stored_encoding.py): a delta rewritten on its own, or the row of a copy that needs no base corrected
    realigned: dict[str, str] = field(default_factory=dict)
    # snapshots' references to bases no stored object decodes against any more, dropped (``read_data`` with every
    # object intact; archive/deltas.py ``release_unneeded_bases``): gc may free those bases now
    base_references_released: int = 0

    @property
    def ok(self) -> bool:
        return not (self.unrepaired or self.records_unrepaired or self.records_not_taken or self.unreachable)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


def repair(archive: Archive, *, read_data: bool = False, records_from: str | None = None) -> RepairReport:
    """Repair what the last scrub found bad, every catalogued object missing from a listing of the store and every
    object missing there that a snapshot of the catalog records needs and the catalog lacks, and
    every catalog record a mirror has and the store lacks that this catalog wrote (``records_from``: also every
    other one that mirror has); ``read_data`` re-hashes every object and record first (a full scrub) instead of
    trusting the last one, and makes each intact object's catalog row describe its stored copy (``_realign``)."""
    report = RepairReport()
    if records_from is not None:
        named = mirrors(archive, records_from)[
            0
        ]  # NotFoundError, listing the names, for one this archive lacks
        if is_remote_target(named.target):
            raise UsageError(
                f"mirror {records_from} is a served archive ({named.target}): it keeps its own catalog records, "
                "and repair takes records only from a folder or bucket mirror"
            )
    # a missing mirror (an unmounted disk) is counted, never made again: the others still lend their copies
    sources, report.unreachable = open_mirrors(archive, mirrors(archive))
    # a gc under a repair that lost its lock clears the temp file of a copy it is putting back: said as the lost
    # lock (exit 8, nothing recorded), as push says it
    with archive.lock(exclusive=False, purpose="repair") as held, held.explains_lost_writes():
        suspects, mismatched, headers = _suspects(archive, read_data)
        report.checked = len(suspects)
        with archive.catalog.session() as s:
            # what the catalog records of each suspect's stored copy: a copy put back differently is recorded so
            catalogued = rows.stored_encodings(s, suspects)
        recorded_bases = {oid: o.delta_base for oid, o in catalogued.items() if o.delta_base is not None}
        fixed: dict[str, str] = {}  # what each suspect is now, for the catalog
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        # a delta can read back only once its base is back: what a pass could not mend gets one more pass
        written: dict[str, str] = {}  # put back from a mirror but not yet readable (a delta before its base)
        recorded = _Unreplayed(archive, read_data)  # what the records' snapshots the catalog lacks need
        set_aside = _SetAside(archive)
        for oid in chain(sorted(suspects), recorded.rounds(report, suspects), _second_pass(report)):  # lazily
            report.unrepaired_why.pop(oid, None)  # (from the first pass: tried again now)
            state = _state(archive, oid)
            if state == "unsupported":
                # a header this modelarc cannot read: a newer format, or damage to its version or codec bytes. A
                # mirror copy this modelarc verifies (decodes and hashes to the id) settles it either way, and the
                # unreadable copy goes to quarantine/ (kept, whichever it was); without one it is left as it is
                outcome = _put_back(archive, report, oid, good_copies(sources, oid), stamp)
                if outcome is None:
                    report.unrepaired_why.pop(oid, None)
                    report.unsupported[oid] = _why_unsupported(archive, oid)
                    fixed[oid] = state
                    continue
            elif state == "ok":  # already fine (repaired by an earlier, interrupted run, or a false alarm)
                fixed[oid] = "ok"
                if oid in written:  # ... or by this run's first pass, once its base was back
                    report.repaired[oid] = written[oid]
                continue
            else:
                # a delta the catalog records is put back as it is, its base kept by the catalog (and mended in
                # this run if need be); on the second pass one whose base did not come back: written on its own
                keep = None if oid in written else recorded_bases.get(oid)
                # last, a copy set aside here that still verifies (a rewrite that lost its write: _realign)
                copies = chain(good_copies(sources, oid, delta_against=keep), set_aside.good_copies(oid))
                outcome = _put_back(archive, report, oid, copies, stamp, own_copy=oid in written)
            if outcome is None:  # no mirror has a good copy
                report.unrepaired[oid] = []
                fixed[oid] = state  # remembered, so the next repair (or a new mirror) tries it again
            elif outcome[1] != "ok":
                report.unrepaired[oid] = []
                fixed[oid] = state if outcome[1] == "unwritten" else outcome[1]
                if outcome[1] == "missing":  # a delta whose base is not back yet: the second pass tries again
                    written[oid] = outcome[0]
            else:
                report.repaired[oid] = outcome[0]
                fixed[oid] = "ok"
        report.checked += recorded.checked
        realigned = _realign(archive, report, mismatched, stamp, fixed)
        # a copy written in another encoding than the one lost (a mirror's delta put back on its own), read under
        # the lock: every one found ok (one written by a run killed before it recorded it too)
        rewritten = _rewritten(archive, [o for o, st in fixed.items() if st == "ok"], catalogued)
        vouched = repair_records(
            archive, sources, report, read_data=read_data, stamp=stamp, records_from=records_from
        )
        release = read_data and not (report.unrepaired or report.unsupported)
        if release:
            # every catalogued object is intact: its header is known, so no base any of them needs is released
            for oid in [o for o, st in fixed.items() if st == "ok"] + [r.id for r in realigned]:
                headers[oid] = archive.store.delta_base(ObjectId(oid))  # as mended now
        with archive.catalog.session() as s:  # (under the lock: no heal or repair rewrites meanwhile)
            # each row describes the copy now stored (gc and fsck go by it) in the same commit as the references
            # released: recorded after the lock, a crash or a gc in between left a row naming a base gc deleted
            rows.record_replaced(s, rewritten + realigned)
            if release:
                report.base_references_released = release_unneeded_bases(archive.store, s, headers)
    with archive.catalog.session() as s:
        for key in vouched:  # the user vouched for them: the next repair may put them back from any mirror
            written_rows.note_written(s, key)
        rows.record_checks(s, fixed)  # ok, or still corrupt/missing
        users = q.snapshots_using(s, report.unrepaired)
        for oid in report.unrepaired:
            report.unrepaired[oid] = sorted(
                {sn.label for sn in users.get(oid, [])}
                | {f"{label} (records only)" for label in recorded.labels.get(oid, [])}
            )
        report.broken_snapshots = sorted({label for labels in report.unrepaired.values() for label in labels})
        q.audit(
            s,
            archive.settings.actor,
            "repair",
            "store",
            repaired=len(report.repaired),
            quarantined=len(report.quarantined),
            unrepaired=len(report.unrepaired),
            records_repaired=len(report.records_repaired),
            records_unrepaired=len(report.records_unrepaired),
            records_not_taken=len(report.records_not_taken),
            records_from=records_from,
            unreachable=len(report.unreachable),
            realigned=len(report.realigned),
            base_references_released=report.base_references_released,
        )
    return report


def repair_records(
    archive: Archive,
    sources: list[tuple[str, Any]],
    report: RepairReport,
    *,
    read_data: bool,
    stamp: str,
    records_from: str | None = None,
) -> list[str]:
    """Put back every catalog record a store mirror holds and the primary lacks (records are never deleted, so a
    missing one was lost) if this catalog notes it wrote it, and with ``read_data`` every record whose body no
    longer hashes to its name (the damaged one is set aside in ``quarantine/records/``), from the first mirror
    whose copy hashes to the name. A served mirror keeps its own records and is not asked.

    A record's name is only the sha256 of its body, which anyone can compute: a record the catalog has no note of
    may have been planted by someone who can write to a mirror (a USB disk) but not to this store, and a rebuild
    would obey it (lift an embargo, trust a key). So such a record is reported, not taken, unless ``records_from``
    names a mirror the user vouches for that lists it. What a name vouches for is the one body that hashes to it,
    so any mirror's copy that does is that body (as a damaged record needs no note: the primary's own name for it
    vouches for the body). The keys taken on the user's word are returned, to be noted."""
    primary = archive.store.backend
    stores = [(name, store.backend) for name, store in sources if isinstance(store, ObjectStore)]
    have = set(primary.iterate(RECORDS_PREFIX))
    holders: dict[str, list[str]] = {}  # record key the primary lacks -> the mirrors that list it
    for name, backend in stores:
        for key in backend.iterate(RECORDS_PREFIX):
            if key not in have:
                holders.setdefault(key, []).append(name)
    with archive.catalog.session() as s:
        noted = written_rows.noted(s, holders)
        # the primary's own records are this archive's on the store's word, as a rebuild takes them (whoever can
        # write the store can write records): noted now, so that one written before catalog revision 0015 can be
        # put back from a mirror should it be lost later
        written_rows.note_all(s, have)
    damaged = set()
    if read_data:
        for key in sorted(have):
            try:
                read_record_bytes(primary, key)
            except RecordError:
                damaged.add(key)
    vouched = []
    for key in sorted(set(holders) | damaged):
        on_word = key not in damaged and key not in noted  # taken only if the user vouches for a mirror of it
        if on_word and records_from not in holders[key]:
            report.records_not_taken[key] = (
                f"held by mirror {', '.join(holders[key])}; this catalog has no note of writing it (written "
                "before catalog revision 0015, or planted in the mirror): `modelarc repair --records-from "
                f"{holders[key][0]}` takes it if you vouch for that mirror; else delete it there"
            )
            continue
        good = None
        for name, backend in sorted(stores, key=lambda m: m[0] != records_from):  # the vouched-for one first
            try:
                good = name, read_record_bytes(backend, key)
                break
            except RecordError:
                continue
        if good is None:
            report.records_unrepaired[key] = "no mirror has a copy that hashes to its name"
            continue
        try:
            if key in damaged:
                aside = f"{QUARANTINE_PREFIX}/{key}.{stamp}"
                try:
                    kept = primary.get(key, max_bytes=MAX_RECORD_BYTES)
                except StoredValueError as exc:  # a FIFO, a link, a file past the cap: nothing to keep but a note
                    kept = f"not kept: {exc}\n".encode()
                primary.put(aside, kept)
                primary.sync()
                primary.delete(key)
            primary.put(key, good[1])
            primary.sync()
        except (StoredValueError, OSError) as exc:  # a non-empty folder under its key, a read-only disk
            report.records_unrepaired[key] = f"a good copy from {good[0]} could not replace it: {exc}"
            continue
        try:
            read_record_bytes(primary, key)  # read back: the write itself must have landed intact
        except RecordError as exc:
            report.records_unrepaired[key] = str(exc)
            continue
        report.records_repaired[key] = good[0]
        if on_word:
            vouched.append(key)
    return vouched


def _put_back(
    archive: Archive,
    report: RepairReport,
    oid: str,
    copies: Iterable[tuple[str, bytes]],
    stamp: str,
    *,
    own_copy: bool = False,
) -> tuple[str, str] | None:
    """Write the first good mirror copy of ``oid`` into the primary and read it back; one that does not read back
    is followed by the next mirror's. (mirror name, what the primary's copy is now: ``ok``, ``corrupt``,
    ``missing`` (a delta whose base is not back yet: the caller tries it again once the others are mended), or
    ``unwritten`` when it could not be written at all), or None when no mirror has a good copy. Why a copy was not
    taken goes to ``report.unrepaired_why``. ``own_copy``: what is under the key is a mirror's good delta this run
    wrote (its base did not come back), deleted rather than set aside: there is no damaged copy to keep."""
    last: tuple[str, str] | None = None
    failed: list[str] = []  # mirrors whose copy was written and did not read back
    for mirror_name, blob in copies:
        try:
            # whatever else is under the key goes aside first, "missing" too (a delta whose damaged header
            # names a base that does not exist reads as missing): the put below skips a key that exists. A
            # copy equal to the good one (a delta whose base is what is missing) stays as it is.
            if own_copy and not failed:
                archive.store.delete(ObjectId(oid))
            elif not archive.store.holds(ObjectId(oid), blob):
                aside = archive.store.quarantine(ObjectId(oid), stamp)
                if aside is not None:
                    report.quarantined[oid] = aside
            archive.store.backend.put(object_key(ObjectId(oid)), blob)
            archive.store.sync()
        except (StoredValueError, OSError) as exc:  # a non-empty folder under its key, a read-only disk
            report.unrepaired_why[oid] = f"a good copy from {mirror_name} could not replace it: {exc}"
            return mirror_name, "unwritten"
        after = _state(archive, oid)  # read back: the write itself must have landed intact
        if after == "ok" or (after == "missing" and delta_base_of(ObjectId(oid), blob) is not None):
            return mirror_name, after
        failed.append(mirror_name)
        last = mirror_name, after
    if last is not None:
        report.unrepaired_why[oid] = (
            f"the good copies from {', '.join(failed)} were written but do not read back ({last[1]}): the "
            "store's disk may be failing"
        )
    return last


def _rewritten(
    archive: Archive, repaired: Iterable[str], catalogued: dict[str, ObjectRecord]
) -> list[ObjectRecord]:
    """The repaired objects whose new copy is encoded otherwise than the catalog records (a delta put back on its
    own, a mirror's other codec), as they are stored now: gc and fsck go by the catalog's delta rows."""
    out = []
    for oid in sorted(repaired):
        was = catalogued.get(oid)
        if was is None:  # not catalogued (needed by a snapshot only the records name): a rebuild reads it
            continue
        now = archive.store.stat(ObjectId(oid))
        if (now.codec, now.stored_size, now.delta_base) != (was.codec, was.stored_size, was.delta_base):
            out.append(ObjectRecord(oid, now.raw_size, now.stored_size, now.codec, now.delta_base))
    return out


class _SetAside:
    """The copies set aside in the primary's ``quarantine/``, as a source of last resort: one that decodes (its
    bases from the primary) and hashes to its id is the object, whatever set it aside. Such a copy exists when a
    rewrite of a delta on its own (``_realign``) set the delta aside and then could not write (a full disk, a
    killed process): the object is missing, no mirror may hold it, and the delta copy is the last one. Damaged
    copies never verify, so they are never taken. Listed once per run, and only when a copy is needed."""

    def __init__(self, archive: Archive) -> None:
        self.store = archive.store
        self._keys: list[str] | None = None

    def good_copies(self, oid: str) -> Iterator[tuple[str, bytes]]:
        """(its key under ``quarantine/``, a blob needing no base) for each copy of ``oid`` there that verifies."""
        if self._keys is None:
            self._keys = self.store.quarantined()
        for key in (k for k in self._keys if k.startswith(f"{QUARANTINE_PREFIX}/{oid}.")):
            try:
                blob = self.store.backend.get(key, max_bytes=MAX_STORED_SIZE)
                yield key, ObjectStore.standalone_of(ObjectId(oid), blob, fetch_base=self.store.get_stored)
            except (ModelarcError, OSError):
                continue


def _second_pass(report: RepairReport) -> Iterator[str]:
    """After the first pass: each object it left unrepaired, taken off that list to be tried once more."""
    for oid in sorted(report.unrepaired):
        del report.unrepaired[oid]
        yield oid


class _Unreplayed:
    """The objects a rebuild would need of the snapshots the store's records name and the catalog lacks (one a
    rebuild refused for a missing object; archive/unreplayed.py), found in rounds: a manifest fetched from a mirror
    names chunks, a delta fetched names its base, neither known before."""

    def __init__(self, archive: Archive, read_data: bool) -> None:
        self.archive = archive
        self.read_data = read_data
        with archive.catalog.session() as s:
            catalogued = q.snapshot_digests(s)
        # a damaged record is left out here: ``repair_records`` mends it (with ``read_data``), the next run uses it
        self.snapshots = unreplayed_snapshots(readable_records(archive.store.backend), catalogued)
        self.labels: dict[str, list[str]] = {}  # object id -> the unreplayed snapshots needing it
        self.checked = 0

    def rounds(self, report: RepairReport, suspects: set[str]) -> Iterator[str]:
        """Each object needed and missing from the store (with ``read_data`` also each one that does not read back
        intact), once, until a round finds nothing new; what could not be fetched is in ``report.unrepaired``."""
        tried = set(suspects)  # the first pass's own
        while self.snapshots:
            needed = needed_objects(self.archive.store, self.snapshots)
            self.labels = needed.labels
            present = {str(oid) for oid in self.archive.store.iter_ids()}
            todo = (needed.ids - present) - tried
            if self.read_data:
                todo |= {o for o in (needed.ids & present) - tried if _state(self.archive, o) != "ok"}
            if not todo:
                return
            tried |= todo
            self.checked += len(todo)
            yield from sorted(todo)


def _suspects(archive: Archive, read_data: bool) -> tuple[set[str], dict[str, str], dict[str, str | None]]:
    """The objects to mend from a mirror and, with ``read_data``, the intact ones whose catalog row does not
    describe their stored copy (id -> what differs; archive/stored_encoding.py) and the delta base (or None) of
    every intact catalogued object, as its header says."""
    with archive.catalog.session() as s:
        # unsupported too: a mirror added since may hold a copy this modelarc can verify
        known_bad = set(rows.objects_found_bad(s, rows.REPLACEABLE))
        recorded = rows.recorded_encodings(s)
        manifests = {digest.removeprefix("sha256:") for digest in q.snapshot_digests(s)}
    present = set(archive.store.iter_ids())
    suspects = known_bad | (set(recorded) - present)
    mismatched: dict[str, str] = {}
    headers: dict[str, str | None] = {}
    if not read_data:
        # every manifest is read, as fsck reads them without --read-data too: a damaged one that fsck names (and
        # whose snapshot it calls broken) is mended here, not left for a repair --read-data to find
        for oid in sorted((manifests & present) - suspects):
            if _state(archive, oid) != "ok":
                suspects.add(oid)
    if read_data:
        for oid in sorted((set(recorded) & present) - suspects):
            if _state(archive, oid) != "ok":
                suspects.add(oid)
                continue
            info = archive.store.stat(ObjectId(oid))
            headers[oid] = info.delta_base
            if (why := mismatch(info, recorded[oid], past=True)) is not None:
                mismatched[oid] = why
    return suspects, mismatched, headers


def _realign(
    archive: Archive, report: RepairReport, mismatched: dict[str, str], stamp: str, fixed: dict[str, str]
) -> list[ObjectRecord]:
    """Make each of ``mismatched`` (intact objects whose catalog row misdescribes the stored copy) agree with its
    row: a delta is rewritten on its own (``rewrite_alone``: verified before anything is replaced; its delta copy
    kept in ``quarantine/``), any other copy is left as it is. Returns the rows to record, as the copies read back.
    No object is deleted, so no base another object needs is lost. One that cannot be rewritten is reported
    unrepaired with its reason, and what it is now goes to ``fixed`` (the checks to record)."""
    out = []
    for oid, why in sorted(mismatched.items()):
        try:
            aside = rewrite_alone(archive.store, ObjectId(oid), stamp)
        except (ModelarcError, OSError) as exc:
            report.unrepaired[oid] = []
            report.unrepaired_why[oid] = f"{why}, and it could not be rewritten on its own: {exc}"
            fixed[oid] = _state(archive, oid)
            continue
        if aside is not None:
            report.quarantined[oid] = aside
        state = _state(archive, oid)  # read back: the write itself must have landed intact
        if state != "ok":
            report.unrepaired[oid] = []
            report.unrepaired_why[oid] = f"{why}; the copy written on its own does not read back ({state})"
            fixed[oid] = state
            continue
        info = archive.store.stat(ObjectId(oid))
        done = "rewritten on its own" if aside is not None else "its row now describes the stored copy"
        report.realigned[oid] = f"{why}: {done}"
        out.append(ObjectRecord(oid, info.raw_size, info.stored_size, info.codec, info.delta_base))
    return out


def _state(archive: Archive, oid: str) -> str:
    """What scrub would find (``check_object``), for the primary."""
    return check_object(archive.store, oid)


def _why_unsupported(archive: Archive, oid: str) -> str:
    try:
        archive.store.get(ObjectId(oid))
    except UnsupportedObjectError as exc:
        return str(exc)
    return "of a newer format"  # (read back fine since: a newer modelarc rewrote it)
