"""Healing by push: a push that holds the good bytes of an object the catalog knows to be damaged puts them back.

Scrub records each object it finds corrupt or missing (``objects.last_check``), and repair mends those from a
mirror. Without a mirror nothing did: a push of the same bytes deduplicated against the damaged copy, reported
"unchanged" and healed nothing, or recorded a new snapshot that was broken from birth. So a push asks the catalog
once for the objects found bad (usually none) and hands their ids to the store (``storage.Replacing``): a put of one
of them sets the damaged copy aside in ``quarantine/`` and writes the good one, as repair does. What was written is
read back, and the catalog's row for it describes the new copy, checked ``ok``, with a ``heal`` audit entry. A put
that finds a stored copy it cannot read as the object (a header of a newer format, or a flipped version or codec
byte), scrubbed or not, replaces it the same way: the push holds bytes that hash to the id.

A server receiving a push does the same for the objects of the pushed snapshot (archive/remote/receive.py): it
names as missing the ones the catalog knows damaged and those whose stored header it cannot read (``stored_copies``:
one ranged read of each header, no read-back), so the pusher sends their bytes; an upload of one replaces the copy,
and its commit refuses a snapshot whose objects are still known damaged rather than recording it broken. A pull
from a remote (archive/remote/sync.py) fetches its own such objects the same way, and its commit records them healed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelarc.archive.scrub import check_object
from modelarc.errors import IntegrityError, ObjectMissingError, UnsupportedObjectError
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.registry.db import CatalogSession
from modelarc.registry.records import ObjectRecord
from modelarc.storage import ObjectId, ObjectStore, Replacing
from modelarc.storage.store import ObjectInfo

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

QUARANTINE_STAMP = "%Y%m%dT%H%M%SZ"  # the suffix repair gives a damaged copy it sets aside, too


def quarantine_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime(QUARANTINE_STAMP)


def known_damaged(archive: Archive) -> Replacing:
    """What a local push may replace: every object the last check found corrupt or missing (one query, which
    finds none in a healthy store), and any whose stored copy a put of it finds it cannot read, scrubbed or not
    (``Replacing.found_unreadable``: a header of a newer format, or a flipped version or codec byte)."""
    with archive.catalog.session() as s:  # unsupported too: a header this modelarc cannot read, the push's bytes can
        bad = rows.objects_found_bad(s, rows.REPLACEABLE)
    return Replacing(bad, quarantine_stamp())


def damaged_among(archive: Archive, object_ids: Collection[str]) -> set[str]:
    """Those of ``object_ids`` the last check found corrupt or missing: for a server, which knows the ids of a
    push (one query; none at all when there are no ids, e.g. none of them is stored here)."""
    if not object_ids:
        return set()
    with archive.catalog.session() as s:
        return rows.found_bad_among(s, object_ids, rows.REPLACEABLE)


def header_problems(store: ObjectStore, object_ids: Sequence[ObjectId]) -> dict[ObjectId, str]:
    """What one ranged read of each object's header finds wrong, by id (ids whose header reads as an object's are
    left out): ``missing`` (nothing under its key), ``unsupported`` (a format version or codec id this modelarc does
    not know: a newer modelarc's, or a flipped version or codec byte), ``corrupt`` (a header that does not parse, or
    no regular file under the key).

    Why this check: it is the one ``ObjectStore.put`` makes when it deduplicates (``_existing``), without the size
    (a HEAD on S3): as cheap as asking whether the object is there, where reading every present object back on every
    push would cost a second copy of the model's reads. It is not a read-back: a payload damaged behind a good header
    passes here, as it passes a local push, until a scrub finds it (then the catalog knows it: ``damaged_among``).
    On a backend that serves several requests at once (S3), several headers are read at once."""

    def one(oid: ObjectId) -> str | None:
        try:
            store.delta_base(oid)  # the header parsed, its codec known (a delta's parameters too)
        except ObjectMissingError:
            return "missing"
        except UnsupportedObjectError:
            return "unsupported"
        except IntegrityError:
            return "corrupt"
        return None

    workers = store.backend.concurrency
    if workers <= 1 or len(object_ids) < 2:
        found = {oid: one(oid) for oid in object_ids}
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-headers") as pool:
            found = dict(zip(object_ids, pool.map(one, object_ids), strict=True))
    return {oid: problem for oid, problem in found.items() if problem is not None}


@dataclass(frozen=True)
class StoredCopies:
    """What a store holds of some objects, as a transfer that brings verified bytes of them sees it."""

    good: list[ObjectId]  # stored, with a header this modelarc reads, and not known damaged: nothing to send
    # stored, but known damaged or with a header it cannot read: bytes that hash to the id replace the copy
    replace: set[str]
    # the others are missing: written as any new object


def stored_copies(archive: Archive, object_ids: Iterable[ObjectId], *, record: bool) -> StoredCopies:
    """Judge this store's copies of ``object_ids`` (``header_problems``, then one catalog query for the readable
    ones: ``damaged_among``). With ``record``, a header found unreadable is remembered as a scrub would have
    (``last_check``), before anything replaces it: the commit that follows reads every known-damaged object of its
    snapshot back, records the ones now good healed (audit ``heal``) and refuses the snapshot while any is not, so
    what was found is neither lost nor recorded broken. Without ``record`` (an anonymous ``/v1/objects/missing``),
    nothing is written: the upload that follows finds it again."""
    ids = list(dict.fromkeys(object_ids))
    problems = header_problems(archive.store, ids)
    readable = [oid for oid in ids if oid not in problems]
    damaged = damaged_among(archive, readable)
    unreadable = {oid: problem for oid, problem in problems.items() if problem != "missing"}
    if record and unreadable:
        with archive.catalog.session() as s:
            rows.record_checks(s, dict(unreadable))
    return StoredCopies(
        good=[oid for oid in readable if oid not in damaged], replace={*damaged, *map(str, unreadable)}
    )


def read_back(archive: Archive, object_ids: Iterable[str]) -> dict[str, ObjectInfo]:
    """Each object written in place of a damaged copy, read back and re-hashed (as repair reads back what it
    wrote), with what is stored now. Raises ``IntegrityError`` naming any that does not read back intact: the
    store just wrote bad bytes, and a snapshot recorded on them would be broken from birth."""
    infos: dict[str, ObjectInfo] = {}
    failed: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    for oid in sorted(object_ids):
        state = check_object(archive.store, oid)
        if state == "ok":
            infos[oid] = archive.store.stat(ObjectId(oid))
        elif state == "unsupported":  # still unreadable here (the store's copy was not replaced): not damage
            unsupported[oid] = state
        else:
            failed[oid] = state
    if unsupported:
        with archive.catalog.session() as s:
            rows.record_checks(s, unsupported)
    if failed:
        with archive.catalog.session() as s:
            rows.record_checks(s, failed)
        named = ", ".join(f"{oid} ({state})" for oid, state in failed.items())
        raise IntegrityError(
            f"objects written in place of damaged copies do not read back: {named}; the store's disk may be "
            "failing (nothing was recorded)"
        )
    return infos


def record_healed(
    s: CatalogSession, infos: dict[str, ObjectInfo], actor: str, target: str, **details: object
) -> None:
    """In the caller's transaction: the healed objects' rows describe their new copies, checked ok, and the
    audit log says which were healed, by whom, for what (``target``: the snapshot pushed). A healed delta is
    written on its own; the snapshots keep referencing its old base until ``repair --read-data``, which alone
    knows every object's header (``deltas.release_unneeded_bases``)."""
    if not infos:
        return
    rows.record_replaced(
        s, [ObjectRecord(i.id, i.raw_size, i.stored_size, i.codec, i.delta_base) for i in infos.values()]
    )
    q.audit(s, actor, "heal", target, objects=sorted(infos), **details)
