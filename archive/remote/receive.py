"""Receiving objects from another archive, and keeping a push in flight safe from gc with leases.

An object is refused unless it decodes to its id, and its declared size is bounded before it is decoded. On a
server, each upload is leased to its pusher under the store's shared lock (registry/leases.py), so gc, which reads
leases under the exclusive lock, never sees an uploaded object without its lease.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from modelarc.archive.heal import damaged_among, header_problems, quarantine_stamp, stored_copies
from modelarc.archive.manifest_checks import MAX_CHUNK_BYTES
from modelarc.archive.remote.commit import (
    check_offer,
    offered_documents,
    refuse_unproven_manifest,
    reused_objects,
)
from modelarc.archive.remote.offers import SnapshotOffer, objects_of
from modelarc.archive.repository import Archive
from modelarc.errors import MissingObjectsError, PayloadTooLargeError
from modelarc.registry import queries as q
from modelarc.registry.leases import take_leases, uploaded_object_ids
from modelarc.registry.refs import parse_ref
from modelarc.storage import ObjectId, Replacing
from modelarc.storage.objectformat import MAX_CODEC_OVERHEAD as MAX_CODEC_OVERHEAD
from modelarc.storage.objectformat import unpack_header

if TYPE_CHECKING:
    from modelarc.archive.tokens import Principal

# MAX_CODEC_OVERHEAD, from the object format: a stored object is at most its decoded size plus its header and this
# much (imported from here by the client and the server)

MAX_OBJECT_BYTES = MAX_CHUNK_BYTES  # ingest writes 8 MiB chunks; manifests of huge models stay far below this


def receive_object(
    archive: Archive,
    oid: ObjectId,
    blob: bytes | bytearray,
    *,
    write: Callable[[Callable[[], None]], None] | None = None,
    holder: str | None = None,
    out: bytearray | memoryview | None = None,
    stored: bool | None = None,
    replacing: Replacing | None = None,
) -> bytes | bytearray | memoryview:
    """Store an object sent as stored bytes, refusing it unless it decodes to exactly ``oid``; its decoded bytes.

    The header's declared raw size is bounded before decoding, so a small upload cannot expand into gigabytes.
    With ``holder`` (a server receiving a push), the object is leased to that pusher before it is written, both
    under the store's shared lock, so a gc can never see the object without its lease. With ``out``, the decoded
    bytes land in it when they fit (``ObjectStore.put_stored``). A pushed object this store holds a copy of that
    the catalog knows to be damaged, or whose header it cannot read, replaces that copy (archive/heal.py
    ``stored_copies``, which records an unreadable header as found; the commit records it healed); that costs a
    header read and a query only for an object already stored (``stored``: whether the caller found it so, None
    to look here), which a pusher sends only then. A puller passes ``replacing`` itself: the objects whose local
    copies it found so (archive/remote/sync.py); one of them is written in place of its copy the same way.
    """
    _check_declared_size(oid, blob)
    if holder is None and (replacing is None or oid not in replacing):
        return archive.store.put_stored(oid, blob, write=write, out=out)
    if holder is not None and (archive.store.has(oid) if stored is None else stored):
        if stored_copies(archive, [oid], record=True).replace:
            replacing = Replacing([oid], quarantine_stamp())
    writes: list[Callable[[], None]] = []
    if replacing is None or oid not in replacing:
        # decoded and verified, not yet written
        raw = archive.store.put_stored(oid, blob, write=writes.append, out=out)
    else:
        # the good bytes written on their own, never as the sender's blob: sent as a delta, the healed object would
        # come to depend on a base that only the sent snapshot keeps, and the snapshots that held it before (whose
        # rows name no such base) would break when that one is withdrawn and gc runs
        decoded = archive.store.put_stored(oid, blob, write=lambda _store: None)  # decoded and verified only
        raw = bytes(decoded)
        heal = replacing
        writes.append(lambda: _put_healed(archive, oid, raw, heal))
    if holder is None:  # a puller: its own lock is held, and it queues the write as it does every other
        (store,) = writes
        if write is None:
            store()
        else:
            write(store)
        return raw
    with archive.lock(exclusive=False, purpose="upload"):
        lease_objects(archive, [oid], holder, uploaded=True)
        for store in writes:
            store()
    return raw


def _put_healed(archive: Archive, oid: ObjectId, raw: bytes, replacing: Replacing) -> None:
    archive.store.put(raw, object_id=oid, replacing=replacing)


def decode_unconfirmed(
    archive: Archive, oid: ObjectId, blob: bytes | bytearray, out: bytearray | memoryview | None = None
) -> bytes | bytearray | memoryview | None:
    """The decoded bytes of an object sent as ``oid``, its declared size bounded first, but NOT yet hashed, and nothing
    stored: the caller hashes them (a pull, in the same pass as their file) and keeps the blob with
    ``archive.store.put_received`` only if the digest is ``oid``. None for a delta: use ``receive_object``."""
    _check_declared_size(oid, blob)
    return archive.store.decode_received(oid, blob, out=out)


def _check_declared_size(oid: ObjectId, blob: bytes | bytearray) -> None:
    """Before decoding: a small upload must not expand into gigabytes."""
    header = unpack_header(blob, f"object {oid}")
    if header.raw_length > MAX_OBJECT_BYTES:
        raise PayloadTooLargeError(
            f"object {oid} declares {header.raw_length} bytes; the limit is {MAX_OBJECT_BYTES}"
        )


def _check_data_manifests(archive: Archive, object_ids: list[ObjectId]) -> None:
    """``DataManifestError`` (422) for the first of these training-data manifests that does not parse or validate."""
    if not object_ids:
        return
    from modelarc.archive.provenance.data import parse_data_manifest  # jsonschema: imported only where needed

    for oid in object_ids:
        parse_data_manifest(bytes(archive.store.get(oid)), f"training-data manifest {oid}")


LEASE_TTL = dt.timedelta(hours=1)


def lacking(archive: Archive, object_ids: Iterable[ObjectId], *, read_headers: bool = True) -> list[ObjectId]:
    """Those of ``object_ids`` this archive has no good copy of: not stored, or stored but known damaged (a scrub
    found them corrupt or missing) or, with ``read_headers``, with a header it cannot read (archive/heal.py
    ``stored_copies``: a header read each, where ``has`` is a stat each). A sender asks before it sends: its bytes
    of such a copy replace it. A caller that may not push sends nothing, so it is answered from stats alone
    (``read_headers`` False): an anonymous client's question costs what it did before headers were read."""
    ids = list(object_ids)
    if read_headers:
        have = set(stored_copies(archive, ids, record=False).good)
    else:
        present = [oid for oid in ids if archive.store.has(oid)]
        damaged = damaged_among(archive, present)
        have = {oid for oid in present if oid not in damaged}
    return [oid for oid in ids if oid not in have]


def lease_objects(archive: Archive, object_ids: Iterable[str], holder: str, *, uploaded: bool = False) -> None:
    """Keep ``object_ids`` from gc for ``LEASE_TTL`` on behalf of a push in flight (registry/leases.py)."""
    with archive.catalog.session() as s:
        take_leases(s, object_ids, holder, LEASE_TTL, uploaded=uploaded)


def reusable_objects(
    archive: Archive, object_ids: Iterable[str], principal: Principal | None, holder: str
) -> set[str]:
    """Those of ``object_ids`` a pusher may build a snapshot on without sending their bytes: it may read them here
    (archive/access.py ``readable_objects``), or it uploaded them itself in this push.

    Why: objects are content-addressed and their ids are public (every manifest lists them), so "the server
    already has it" must not stand in for "the pusher has it". Otherwise a push token could commit a manifest that
    names a gated snapshot's weight chunks under a new, public model, and the server would hand them out.
    Uploading the bytes proves possession: an upload is refused unless it decodes to its id.
    """
    ids = list(dict.fromkeys(str(o) for o in object_ids))
    if principal is not None and principal.scope == "admin":
        return set(ids)
    from modelarc.archive.access import readable_objects  # the access rules: only a server's pushes need them

    allowed: set[str] = set()
    for i in range(0, len(ids), REUSE_BATCH):  # bounded queries (and snapshot lists) for models of 100k objects
        allowed |= readable_objects(archive, ids[i : i + REUSE_BATCH], principal)
    if rest := [oid for oid in ids if oid not in allowed]:
        with archive.catalog.session() as s:
            allowed |= uploaded_object_ids(s, rest, holder)
    return allowed


REUSE_BATCH = 5000


def check_push(
    archive: Archive, offer: SnapshotOffer, holder: str, principal: Principal | None
) -> list[ObjectId]:
    """Before weights move: the signer is trusted and the manifest is sane; the objects still to send.

    The objects this archive already has *and the pusher may reuse* (``reusable_objects``) are leased to
    ``holder`` under the shared store lock, so the answer "you need not send these" stays true until the commit
    (or the lease expires). Present objects it may not reuse are listed as still to send: a pusher that has their
    bytes uploads them, and one that does not cannot commit.
    """
    ref = parse_ref(offer.ref)
    with archive.catalog.session() as s:  # a name the commit would refuse is refused before a weight is sent
        q.refuse_name_clash(s, ref.namespace, ref.name)
    with archive.lock(exclusive=False, purpose="upload"):
        # the documents this check reads, asked for first: a pusher sends nothing before its first check (so a push
        # refused outright leaves no object here), then these, then the weights this answer lists
        # (a copy whose header cannot be read is asked for too: the upload replaces it, and this check reads it)
        read_here = list(dict.fromkeys([ObjectId(offer.snapshot.hex), *offered_documents(offer)]))
        if absent := list(header_problems(archive.store, read_here)):
            raise MissingObjectsError(offer.snapshot, absent)
        refuse_unproven_manifest(archive, offer, principal, holder)  # before it is read as the manifest
        # the bundles and data manifests named in the offer are read to check it: only those the pusher may reuse
        # (the client uploads the others, and an upload proves possession)
        documents = [oid for oid in offered_documents(offer) if archive.store.has(oid)]
        reusable = reusable_objects(archive, documents, principal, holder)
        if refused := [oid for oid in documents if str(oid) not in reusable]:
            why = "is not this token's to reuse: it may not read it here and has not sent it"
            raise MissingObjectsError(offer.snapshot, refused, why)
        checked = check_offer(archive, offer)
        # the training-data manifests already here (a pusher sends them with the bundles), parsed and validated as
        # the commit will: a pusher is told before any weight moves (one still to send is judged by the commit)
        _check_data_manifests(archive, [oid for oid in map(ObjectId, offer.data) if archive.store.has(oid)])
        needed = objects_of(checked.offer, checked.manifest)
        # a copy known damaged, or whose header this modelarc cannot read (recorded so, for the commit to refuse the
        # snapshot until it is replaced), is not one to build on: the pusher sends its bytes (they replace it on upload)
        present = stored_copies(archive, needed, record=True).good
        with archive.catalog.session() as s:
            judged = set(reused_objects(s, ref, checked.offer, present)) & set(present)
        reusable = reusable_objects(archive, [o for o in present if o in judged], principal, holder)
        have = [oid for oid in present if oid not in judged or oid in reusable]
        lease_objects(archive, have, holder)
    kept = set(have)
    return [oid for oid in needed if oid not in kept]
