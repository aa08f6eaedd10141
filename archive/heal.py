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
names the damaged ones as missing, so the pusher sends their bytes, and its commit refuses a snapshot whose
objects are still known damaged rather than recording it broken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from modelarc.archive.scrub import check_object
from modelarc.errors import IntegrityError
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.registry.db import CatalogSession
from modelarc.registry.records import ObjectRecord
from modelarc.storage import ObjectId, Replacing
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
