"""Push snapshots to, and pull them from, another archive over HTTP (the server side is ``modelarc serve``).

The protocol (docs/FORMAT.md "Transfer") moves objects as they are stored - header plus encoded payload - so
nothing is re-compressed on either side, and every receiver decodes and hashes each object before keeping it:

1. the sender asks which of the snapshot's object ids the receiver lacks (``POST /v1/objects/missing``);
2. only those move, ``--jobs`` at a time (``PUT``/``GET /v1/objects/{id}``), each durable on arrival, so a
   broken transfer resumes by sending only what is still missing;
3. a commit (``POST /v1/transfer/commit`` with a ``SnapshotOffer``) records the snapshot and moves the tag; it is
   refused unless every object is present and a signature verifies against a key the receiver trusts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

from modelarc.archive.deltas import base_closure, send_order
from modelarc.archive.heal import quarantine_stamp, stored_copies
from modelarc.archive.limits import MAX_BUNDLE_BYTES, MAX_DATA_MANIFEST_BYTES, MAX_MANIFEST_BYTES
from modelarc.archive.manifest import Chunk, SnapshotManifest
from modelarc.archive.manifest_checks import check_tensors_match_header
from modelarc.archive.own_state import state_places
from modelarc.archive.provenance.statement import remote_identity
from modelarc.archive.remote.client import RemoteArchive
from modelarc.archive.remote.commit import check_offer, commit_offer, data_manifests
from modelarc.archive.remote.offers import CommitResult, SnapshotOffer, objects_of, offer_for
from modelarc.archive.remote.prefetch import ObjectPrefetch
from modelarc.archive.remote.receive import MAX_OBJECT_BYTES, decode_unconfirmed, receive_object
from modelarc.archive.repository import Archive
from modelarc.archive.restore import CHUNK_BUFFER, READ_AHEAD, ChunkBuffers, ChunkBytes, restore
from modelarc.errors import (
    AccessDeniedError,
    DeltaBaseError,
    IntegrityError,
    MissingObjectsError,
    ModelarcError,
    ObjectCorruptError,
    PayloadTooLargeError,
    RemoteError,
    UsageError,
    WithdrawnError,
)
from modelarc.registry import queries as q
from modelarc.registry.refs import Ref, SnapshotId, parse_ref
from modelarc.storage import ObjectId, ObjectStore, Replacing
from modelarc.storage.codecs.delta import MAX_DELTA_DEPTH
from modelarc.storage.store import check_object_id, delta_base_of

Progress = Callable[[int], None]
T = TypeVar("T")
# verified objects waiting for the store's writer threads, at most (or twice the writers): a disk slower than the
# network slows the pull down instead of holding every object of the model in memory
MAX_PENDING_WRITES = 8
FULL_DIGEST_LENGTH = len("sha256:") + 64  # what a pull from a remote by digest must give
# a downloaded object as stored: a chunk that its codec could not shrink (raw) is its length plus a header
BODY_BUFFER = CHUNK_BUFFER + (64 << 10)


def _damaged_here(archive: Archive, base: ObjectId, oid: ObjectId, remote: str) -> ObjectCorruptError | None:
    """The error for a delta ``oid`` the remote sent against ``base``, which this store holds and cannot read back
    (damaged, or a base of its own chain lost), or None when it reads back intact now."""
    try:
        archive.store.get(base)
    except IntegrityError as exc:
        return ObjectCorruptError(
            f"this archive's copy of object {base} does not read back ({exc}); remote {remote} sent object {oid} "
            f"as a delta against it, so it cannot be read either: run `modelarc scrub` then `modelarc repair` "
            "(a mirror's copy, or a push of the files it came from, replaces it), then pull again"
        )
    return None


def pull_workers(jobs: int) -> int:
    """Threads that fetch and decode objects in a pull: more than the ``jobs`` downloads the client allows at once,
    so that objects that have arrived are decoded (and hashed, and written into their file) while the next ones are
    on the wire. Each holds at most one object, so memory is bounded by this number, not by the size of the
    model."""
    return max(READ_AHEAD, 2 * jobs)


@dataclass(frozen=True)
class TransferResult:
    ref: str
    snapshot: SnapshotId
    remote: str
    objects: int  # objects the snapshot needs
    objects_sent: int  # objects that actually moved (the rest were already there)
    bytes_sent: int  # stored (encoded) bytes that moved
    new_snapshot: bool
    previous: str | None
    key_fingerprint: str
    parents_missing: tuple[str, ...]
    seconds: float
    lineage_refused: tuple[str, ...] = ()  # declared lineage the receiver left out: it would close a cycle
    cache_left: tuple[str, ...] = ()  # load-cache copies of weights a pull made withheld, not removed ("path (why)")


def push_to_remote(
    archive: Archive,
    ref_text: str,
    client: RemoteArchive,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> TransferResult:
    """Send a local snapshot and move its tag on the remote; sends only the objects the remote lacks."""
    offer, manifest = offer_for(archive, ref_text)
    return push_offer(archive, offer, manifest, client, progress=progress, on_total=on_total)


def push_offer(
    archive: Archive,
    offer: SnapshotOffer,
    manifest: SnapshotManifest,
    client: RemoteArchive,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    read: Callable[[ObjectId], bytes] | None = None,
) -> TransferResult:
    """Send the objects of ``offer`` the remote lacks, then commit it there.

    The remote is asked first (``POST /v1/transfer/check``) with nothing sent, then sent the manifest, signature
    bundles and training-data manifests it asks for, and vets them: a ref outside the token's namespaces leaves
    nothing there, and a snapshot signed by a key the remote does not trust, or naming a data manifest it refuses,
    is refused before a single weight object moves.
    ``read`` gives an object as stored (default: straight from the store; a mirror passes one that verifies it
    first, so that a damaged local copy is named here rather than refused by the remote).
    """
    started = time.perf_counter()
    needed = objects_of(offer, manifest)
    sent = 0
    moved: list[ObjectId] = []
    read_stored = read or archive.store.get_stored

    def send(oid: ObjectId) -> int:
        blob = read_stored(oid)
        try:
            client.upload(oid, blob)
        except AccessDeniedError:
            if delta_base_of(oid, blob) is None:
                raise
            # a delta against a base this token may not read there (a public fine-tune of a gated parent): the
            # remote rightly refuses it, as it would hand out the base's bytes with it. The object on its own
            # instead, as the remote itself serves such a delta to a reader who may not read its base.
            blob = ObjectStore.standalone_of(oid, blob, fetch_base=archive.store.get_stored)
            client.upload(oid, blob)
        return len(blob)

    def send_all(ids: list[ObjectId], report: bool) -> None:
        nonlocal sent
        for oid, size in _parallel(send, ids, client.jobs):
            sent += size
            moved.append(oid)
            if progress and report:
                progress(sizes.get(oid, 0))

    sizes = _raw_sizes(manifest)
    # what the remote may ask for: this snapshot's objects and the delta bases they decode against, nothing else
    # (ids are public, bytes are not: a remote naming another local object must not get it)
    allowed = _sendable(archive, needed)

    def asked(ids: Sequence[str]) -> list[ObjectId]:
        for oid in ids:
            if oid not in allowed:
                raise RemoteError(
                    f"remote {client.remote.name} asked for object {oid}, which is not part of this snapshot "
                    f"({offer.snapshot}); nothing of it was sent and the push stopped"
                )
        return [ObjectId(oid) for oid in ids]

    # The check comes first, with nothing sent: a push the remote refuses outright (a ref outside the token's
    # namespaces) leaves no object there. It answers which of the manifest, bundles and data manifests it lacks
    # (409), those go, and it is asked again; a present one this token may not reuse is asked for the same way.
    todo = asked(
        _retry_missing(lambda: client.check(offer), lambda ids: send_all(asked(ids), report=False), attempts=4)
    )
    if on_total:
        on_total(sum(sizes.get(oid, 0) for oid in todo))
    # a delta object decodes only against a base the receiver holds: the bases it lacks go too, each wave
    # (objects on their own, then deltas on them, ...) complete before the next
    with (
        archive.catalog.session() as s
    ):  # bases as recorded: no header read per object (a request each on S3)
        known: dict[str, str | None] = {oid: None for oid in todo}
        known.update({d.id: d.delta_base for d in q.delta_objects(s, todo)})
    bases = base_closure(archive.store, known) - set(todo)
    extra = asked(client.missing([ObjectId(b) for b in sorted(bases)])) if bases else []
    for wave in send_order(archive.store, [*extra, *todo], known):
        send_all(wave, report=True)
    # the remote lost objects between upload and commit (its leases expired): send them again and retry
    result = _retry_missing(lambda: client.commit(offer, manifest.logical_bytes), lambda ids: send_all(asked(ids), report=False))
    return TransferResult(
        ref=result.ref,
        snapshot=offer.snapshot,
        remote=client.remote.name,
        objects=len(needed) + len(extra),  # the bases the remote lacked moved too
        objects_sent=len(moved),
        bytes_sent=sent,
        new_snapshot=result.new_snapshot,
        previous=result.previous,
        key_fingerprint=result.key_fingerprint,
        parents_missing=result.parents_missing,
        seconds=time.perf_counter() - started,
        lineage_refused=result.lineage_refused,
    )


def _sendable(archive: Archive, needed: list[ObjectId]) -> set[str]:
    """The objects a push of a snapshot may upload: ``needed`` and, down their chains, the delta bases they decode
    against (as the catalog records them; a base this store lacks is left out, as it could not be sent anyway)."""
    with archive.catalog.session() as s:
        direct: dict[str, str | None] = {oid: None for oid in needed}
        direct.update({d.id: d.delta_base for d in q.delta_objects(s, needed)})
    return set(direct) | base_closure(archive.store, direct, missing=[])


MAX_ANCESTORS = 1000


def ancestors_of(archive: Archive, ref_text: str) -> list[str]:
    """The declared ancestors of a snapshot, as ``model@digest`` refs, each after its own ancestors (oldest first):
    what ``push --remote --with-parents`` sends before it so the remote records the lineage too. Withdrawn
    ancestors are left out (their weights are gone; the remote reports the link as missing)."""
    from modelarc.registry.snapshots import parents_of

    _ref, snap = archive.resolve(ref_text)
    order: list[str] = []
    seen: set[str] = {snap.digest}
    with archive.catalog.session() as s:
        # depth first with an explicit stack (a long line of fine-tunes must not hit the recursion limit); a node
        # is emitted once every ancestor of it has been
        stack: list[tuple[int, str, bool, bool]] = [(snap.row_id, "", False, False)]
        while stack:
            row_id, label, withdrawn, expanded = stack.pop()
            if expanded:
                if label and not withdrawn:
                    order.append(label)
                continue
            stack.append((row_id, label, withdrawn, True))
            for parent in parents_of(s, row_id):
                if parent.snapshot in seen or len(seen) > MAX_ANCESTORS:
                    continue
                seen.add(parent.snapshot)
                found = q.resolve_snapshot(s, parse_ref(f"{parent.model}@{parent.snapshot}"))
                stack.append((found.row_id, f"{parent.model}@{parent.snapshot}", found.withdrawn, False))
    return order


def _retry_missing(call: Callable[[], T], resend: Callable[[Sequence[str]], None], attempts: int = 3) -> T:
    """``call``; when it answers that objects are missing, ``resend`` them and try again (``attempts`` in all)."""
    for attempt in range(attempts):
        try:
            return call()
        except MissingObjectsError as exc:
            if attempt == attempts - 1:
                raise
            resend(exc.missing)  # judged by ``resend`` (a push sends only its own snapshot's objects)
    raise AssertionError("unreachable")


def fetch_from_remote(
    archive: Archive,
    ref_text: str,
    client: RemoteArchive,
    *,
    dest: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> TransferResult:
    """Copy a remote snapshot into this archive (objects, catalog rows, signature, tag), and optionally into ``dest``.

    The remote's answer is a claim, checked here before it is recorded: pulling by digest yields exactly that
    digest; pulling by tag records the answer under the name and tag asked for (the only tag that moves; a
    digest pull moves none), whatever ref the offer names. The manifest and signature bundles come first and
    must verify against keys *this* archive trusts before any weights move. Every object is decoded and hashed
    against its id before it is kept in the local store. Without ``dest`` that happens on arrival; with ``dest``,
    the decoded bytes are first written straight into the files (one decode per object, into a recycled buffer;
    the download lands in one too, reused once the object is in the store) and each chunk is hashed in the same
    pass as its file (``restore``'s ``confirm``), so each byte is hashed once for both checks; an object is kept
    only once its digest is its id, and each file is checked against its sha256 before it is renamed in. The store's
    shared lock is held throughout, so a local gc cannot free what the pull has fetched but not yet recorded.
    """
    started = time.perf_counter()
    wanted = parse_ref(ref_text)
    if wanted.digest and len(wanted.digest) != FULL_DIGEST_LENGTH:
        # the remote chooses the answer: a prefix of a few hex digits pins nothing (one that matches is found in
        # seconds), so a pull from a remote by digest names the snapshot whole
        raise UsageError(
            f"{ref_text}: a pull from a remote by digest needs the full sha256:<64 hex digits>, not a prefix "
            "(a remote could answer a prefix with any snapshot it makes to match)"
        )
    with archive.catalog.session() as s:  # recorded here under the name asked for: refused before it is asked
        q.refuse_name_clash(s, wanted.namespace, wanted.name)
    offer = client.offer(wanted)
    if wanted.digest and offer.snapshot != wanted.digest:
        raise IntegrityError(
            f"remote {client.remote.name} answered {ref_text} with snapshot {offer.snapshot}, not the one asked for"
        )
    with archive.catalog.session() as s:
        gone = q.withdrawn_with_digest(s, offer.snapshot)
        if gone is not None:  # its weights were taken out here: a pull must not bring them back (nor move a tag)
            raise WithdrawnError(
                f"{ref_text} ({str(offer.snapshot)[:19]}) was withdrawn on {gone.tombstoned_at:%Y-%m-%d}: "
                f"{gone.tombstone_reason}; its provenance is kept (modelarc show) but its weights are not handed out"
            )
    lock = threading.Lock()
    moved = {"bytes": 0, "bases": 0}  # bases: fetched for deltas, not in the snapshot's own list
    downloaded: set[ObjectId] = set()  # only the snapshot's own objects and their bases are counted
    bases: set[ObjectId] = set()
    sizes: dict[ObjectId, int] = {}

    bodies = ChunkBuffers(BODY_BUFFER)  # downloads land in these, each back once its object is in the store
    # the weights are downloaded ahead, several per request, in the order they are fetched below
    prefetch = ObjectPrefetch(client, sizes)

    # objects this store holds copies of that it cannot read as them (a header of a newer format, a flipped version
    # or codec byte) or that its catalog knows damaged: fetched as if missing, their verified bytes written in place of
    # those copies (set aside in quarantine/), and recorded healed by the commit (archive/heal.py)
    heal: set[ObjectId] = set()
    judged: set[ObjectId] = set()
    replacing = Replacing((), quarantine_stamp())

    def judge(ids: list[ObjectId]) -> None:
        """Look at this store's copies of ``ids`` (a header read each, one query: ``stored_copies``) before they
        are fetched or read; any found unreadable is remembered in the catalog for the commit."""
        nonlocal replacing
        fresh = [oid for oid in dict.fromkeys(ids) if oid not in judged]
        judged.update(fresh)
        if found := stored_copies(archive, fresh, record=True).replace:
            heal.update(map(ObjectId, found))
            replacing = Replacing(heal, replacing.stamp)

    def have(oid: ObjectId) -> bool:
        """Whether the object is to be read from this store rather than fetched."""
        return oid not in heal and archive.store.has(oid)

    def plan(ids: list[ObjectId]) -> None:
        prefetch.plan([oid for oid in ids if not have(oid)])

    # objects handed to restore decoded but not yet hashed (``fetch(..., unconfirmed_ok=True)``), by the identity of
    # the bytes handed over (each entry holds them, so no other object can take that identity while it waits):
    # each is kept in the store by ``confirm`` once restore has hashed it with its file
    unconfirmed: dict[int, tuple[ChunkBytes, Callable[[bytes], None]]] = {}

    def fetch(
        oid: ObjectId,
        out: bytearray | memoryview | None = None,
        *,
        depth: int = 0,
        unconfirmed_ok: bool = False,
        limit: int = MAX_OBJECT_BYTES,
    ) -> ChunkBytes:
        """The object's decoded bytes, downloaded (and kept in the store once verified) unless the store has it.
        With ``unconfirmed_ok`` (restore's source), a downloaded object that is not a delta is handed over before it
        is hashed: restore hashes it in the same pass as its file and gives ``confirm`` the digest, and only then
        is it kept. Every other object is hashed here, before it is handed over or kept. ``limit``: the most
        decoded bytes a download may declare (a document is held to its own bound: ``client.download``)."""
        if have(oid):
            if out is not None:
                return archive.store.get_into(oid, out, verify=dest is None)
            return archive.store.get(oid, verify=dest is None)
        blob: ChunkBytes
        body: bytearray | None
        if (fetched := prefetch.take(oid)) is not None:
            blob, body = fetched, None  # fresh bytes of its own: no buffer to give back
        else:
            body = bodies.take()
            try:
                blob = client.download(oid, sizes.get(oid), into=body, limit=limit)
            except BaseException:
                bodies.give(body)
                raise
        returned = False
        waiting = False  # handed over unconfirmed: the download buffer goes back once the object is kept
        own_damage: IntegrityError | None = None  # this store's copy of the delta's base does not read back

        def store_then_return(store: Callable[[], None]) -> None:
            """Queue the verified write; the download buffer is reused once the object is in the store."""
            nonlocal returned
            returned = True

            def write() -> None:
                try:
                    store()
                finally:
                    if body is not None:
                        bodies.give(body)

            later(write)

        try:
            try:
                # one to write in place of a copy goes through ``receive_object``, which hashes it before it is kept
                decoded = None
                if unconfirmed_ok and oid not in heal:
                    decoded = decode_unconfirmed(archive, oid, blob, out)
                if decoded is not None:

                    def keep(digest: bytes) -> None:
                        archive.store.put_received(oid, blob, digest, write=store_then_return)

                    with lock:
                        unconfirmed[id(decoded)] = (decoded, keep)
                    waiting = True
                    raw = decoded
                else:
                    raw = receive_object(
                        archive, oid, blob, write=store_then_return, out=out, replacing=replacing
                    )
            except DeltaBaseError:
                # a delta whose base this store lacks: fetch the base (written at once: the delta is decoded
                # against it right after), then the delta again; chains are bounded, so is this
                base = delta_base_of(oid, blob)
                if base is not None and archive.store.has(base):
                    # the base is here and does not read back: the damage is this archive's, not the remote's
                    # (a server sends a delta whenever the caller may read its base; it cannot tell ours is bad)
                    own_damage = _damaged_here(archive, base, oid, client.remote.name)
                    if own_damage is not None:
                        raise own_damage from None
                if base is None or depth >= MAX_DELTA_DEPTH or archive.store.has(base):
                    raise
                fetch(base, depth=depth + 1)
                with lock:
                    moved["bases"] += 1
                    bases.add(base)
                flush_writes()
                raw = receive_object(
                    archive, oid, blob, write=store_then_return, out=out, replacing=replacing
                )
        except (IntegrityError, PayloadTooLargeError) as exc:
            if exc is own_damage:
                raise
            raise IntegrityError(f"remote {client.remote.name} sent a bad object: {exc}") from None
        finally:
            if not returned and not waiting and body is not None:  # refused (or failed) before its write was queued
                bodies.give(body)
        with lock:
            downloaded.add(oid)
            moved["bytes"] += len(blob)
        return raw

    # verified objects are written by their own threads while the next ones download and decode; all writes are waited
    # for (and their errors raised) before the commit, and on the way out of a failed pull
    # two writers at least: each object is fsynced before its rename, and one thread waiting on every fsync in turn
    # was what the fetch threads waited for (profiled); a remote store (S3) takes as many as it needs
    writers = max(2, archive.store.backend.concurrency)
    writer = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="modelarc-store-writer")
    writes: list[Future[None]] = []
    room = threading.BoundedSemaphore(max(MAX_PENDING_WRITES, 2 * writers))

    def confirm(chunk: Chunk, data: ChunkBytes, digest: bytes) -> None:
        """Restore's digest of a chunk it has written: an object downloaded for it is kept only if it matches; one
        read from this store unverified (the file's hash covers it) is checked against its id all the same."""
        with lock:
            held = unconfirmed.pop(id(data), None)
        if held is None:
            check_object_id(chunk.id, digest.hex())
            return
        _data, keep = held
        try:
            keep(digest)
        except IntegrityError as exc:
            raise IntegrityError(f"remote {client.remote.name} sent a bad object: {exc}") from None

    def later(store: Callable[[], None]) -> None:
        room.acquire()  # each queued write holds its object's bytes: wait for the writer when it is behind

        def write() -> None:
            try:
                store()
            finally:
                room.release()

        with lock:
            writes.append(writer.submit(write))

    def flush_writes() -> None:
        with lock:
            pending = list(writes)
        for fut in pending:
            fut.result()

    def written() -> None:
        writer.shutdown(wait=True)
        for fut in writes:
            fut.result()

    resumed = False
    # a gc under a pull that lost its lock clears the temp file of an object it is keeping: said as push says it
    with archive.lock(exclusive=False, purpose="pull") as held, held.explains_lost_writes():
        try:
            # the manifest, bundles and training-data manifests: everything checkable before a weight moves, each
            # held to its own bound by its header before its body is read (a bundle is no 256 MiB weight chunk)
            documents = [
                (ObjectId(offer.snapshot.hex), MAX_MANIFEST_BYTES),
                *((ObjectId(oid), MAX_BUNDLE_BYTES) for oid in dict.fromkeys(offer.signatures)),
                *((ObjectId(oid), MAX_DATA_MANIFEST_BYTES) for oid in dict.fromkeys(offer.data)),
            ]
            judge([oid for oid, _limit in documents])
            for oid, limit in documents:
                fetch(oid, limit=limit)
            for fut in list(writes):  # the manifest and bundles are read back from the store right away
                fut.result()
            checked = check_offer(archive, offer)
            manifest, offer = checked.manifest, checked.offer  # bundles that do not sign it are not its objects
            data_manifests(archive, offer)  # every training-data manifest parses, before a weight moves
            sizes.update(_raw_sizes(manifest))
            needed = objects_of(offer, manifest)
            judge(needed)
            if dest is not None:
                if on_total:
                    on_total(manifest.logical_bytes)
                rebuilt = restore(
                    archive.store,
                    manifest,
                    dest,
                    force=force,
                    resume=True,  # as a local pull: files already in place and matching are kept, so a re-run resumes
                    progress=progress,
                    jobs=pull_workers(client.jobs),
                    source=lambda oid, out: fetch(oid, out, unconfirmed_ok=True),
                    # and after them, the objects of the files it keeps in place (fetched below)
                    announce=lambda ids: plan([*ids, *needed]),
                    confirm=confirm,
                    protected=state_places(archive.settings),
                    # what check_manifest_content would compare at commit, on the header bytes restore has anyway
                    check_header=lambda entry, header: check_tensors_match_header(
                        entry, header, f"snapshot {offer.snapshot}"
                    ),
                )
                if unconfirmed:  # restore hands every chunk it wrote to confirm: any left were never hashed
                    raise IntegrityError(
                        f"{len(unconfirmed)} downloaded object(s) were written but never checked against their ids; "
                        "nothing was recorded (a bug: please report it)"
                    )
                # a file kept in place (its sha256 matches) was not rebuilt: its objects still come, each verified
                resumed = len(rebuilt) < len(manifest.files)
                if resumed:
                    todo = [oid for oid in needed if not have(oid) and oid not in downloaded]
                    for _oid, _size in _parallel(lambda oid: len(fetch(oid)), todo, pull_workers(client.jobs)):
                        pass
            else:
                todo = [oid for oid in needed if not have(oid) and oid not in downloaded]
                if on_total:
                    on_total(sum(sizes.get(oid, 0) for oid in todo))
                prefetch.plan(todo)
                for oid, _size in _parallel(lambda oid: len(fetch(oid)), todo, pull_workers(client.jobs)):
                    if progress:
                        progress(sizes.get(oid, 0))
        except AccessDeniedError as exc:
            prefetch.close()
            writer.shutdown(wait=True)  # let verified objects land: a re-run resumes from them
            raise _withheld(client, offer, exc) from None
        except BaseException:
            prefetch.close()
            writer.shutdown(wait=True)  # let verified objects land: a re-run resumes from them
            raise
        prefetch.close()
        if prefetch.failure is not None:  # a batch that broke the protocol after its last object: nothing recorded
            writer.shutdown(wait=True)
            raise prefetch.failure
        written()
        committed: CommitResult = commit_offer(
            archive,
            # the puller, not the remote, says which tag moves: the one it asked for (an offer's "move_tag": false
            # would record the snapshot, move nothing, and still report the tag pulled), none for a digest pull
            replace(offer, move_tag=True),
            # the offer (provenance, parents, data, policy) is the remote's word, not the puller's: no signature
            # covers it (the bundles sign the files), so it is recorded as the remote's, by name and URL
            actor=remote_identity(client.remote.name, client.remote.url),
            pulled_by=archive.settings.actor,
            record_as=Ref(wanted.namespace, wanted.name, tag=wanted.tag),
            # restore has just rebuilt and hashed every file, and compared each header with its tensor parts
            # (not the files a resumed pull kept in place: commit rebuilds and checks them all)
            content_checked=dest is not None and not resumed,
        )
    return TransferResult(
        ref=committed.ref,
        snapshot=offer.snapshot,
        remote=client.remote.name,
        objects=len(needed) + moved["bases"],
        objects_sent=len(downloaded & (set(needed) | bases)),  # not the offered bundles that did not sign it
        bytes_sent=moved["bytes"],
        new_snapshot=committed.new_snapshot,
        previous=committed.previous,
        key_fingerprint=committed.key_fingerprint,
        parents_missing=committed.parents_missing,
        seconds=time.perf_counter() - started,
        lineage_refused=committed.lineage_refused,
        cache_left=committed.cache_left,
    )


def _withheld(client: RemoteArchive, offer: SnapshotOffer, exc: AccessDeniedError) -> AccessDeniedError:
    """The refusal of one object, said of the snapshot: what the remote's policy is and how to get a grant."""
    model = offer.ref.split(":")[0]
    if offer.access is None:
        return exc
    until = f" until {offer.access['until']}" if offer.access.get("until") else ""
    why = f" ({offer.access['reason']})" if offer.access.get("reason") else ""
    ask = (
        "only an admin token may pull them"
        if offer.access["level"] == "restricted"
        else f"a token holding a grant may pull them; ask for one with POST /v1/access/{model}/requests"
    )
    return AccessDeniedError(
        f"remote {client.remote.name} withholds the weights of {model}@{offer.snapshot}: "
        f"{offer.access['level']}{until}{why}; {ask}"
    )


# a modelarc archive signs with one key of its own (archive/repository.py makes it at init), and several servers
# sharing one catalog (docs/DEPLOY.md) each with theirs; a remote that calls many more keys its own is not one, and
# trusting them all would let it add any number of signers to this archive
MAX_REMOTE_OWN_KEYS = 8


@dataclass(frozen=True)
class RemoteKeys:
    """What ``remote add`` did with the remote's own signing keys: fingerprints newly or already trusted, and those
    left untrusted because the user distrusted them (``keys distrust``) - a remote never undoes that."""

    trusted: list[str]
    kept_distrusted: list[str]
    # trusted here before (this archive's own key, one imported by hand, a remote added earlier): nothing to undo
    already_trusted: list[str] = field(default_factory=list)


def trust_remote_keys(archive: Archive, client: RemoteArchive) -> RemoteKeys:
    """Trust the remote's own signing key (trust on first use, at ``remote add``), as it marks it (``local``) in
    ``GET /v1/transfer/keys``; the other keys it trusts are its business, not this archive's.

    Every key is judged before any is trusted (so a bad answer trusts nothing): at most ``MAX_REMOTE_OWN_KEYS``,
    each a valid public key whose fingerprint is the one the remote states. A key this archive knows and does not
    trust was distrusted by the user and stays so (``keys trust`` is how to undo that).
    """
    from modelarc.archive.signing import keys as keyring

    where = f"remote {client.remote.name}"
    own = [key for key in client.keys() if key.local]
    if len(own) > MAX_REMOTE_OWN_KEYS:
        raise RemoteError(
            f"{where} calls {len(own)} keys its own signing keys; an archive has at most {MAX_REMOTE_OWN_KEYS}: "
            "none was trusted (add it with --no-trust-keys and import its key with `modelarc keys import`)"
        )
    pems: list[tuple[str, bytes]] = []
    for key in own:
        pem = key.public_pem.encode()
        try:
            fingerprint = keyring.key_fingerprint(pem)
        except ModelarcError as exc:
            raise RemoteError(f"{where}: its signing key {key.fingerprint[:16]} is unusable ({exc})") from None
        if fingerprint != key.fingerprint:
            raise RemoteError(
                f"{where}: its signing key is named {key.fingerprint[:16]} but its fingerprint is {fingerprint[:16]}"
            )
        pems.append((fingerprint, pem))
    known = {k.fingerprint: k.trusted for k in archive.list_keys()}
    result = RemoteKeys([], [])
    for fingerprint, pem in pems:
        if known.get(fingerprint) is False:
            result.kept_distrusted.append(fingerprint)
        elif known.get(fingerprint) is True:  # left as it is (its label, even if it is this archive's own key)
            result.already_trusted.append(fingerprint)
        else:
            result.trusted.append(archive.import_key(pem, label=f"remote {client.remote.name}"))
    return result


def _raw_sizes(manifest: SnapshotManifest) -> dict[ObjectId, int]:
    return {c.id: c.length for f in manifest.files for p in f.parts for c in p.chunks}


def _parallel(
    work: Callable[[ObjectId], int], ids: list[ObjectId], jobs: int
) -> Iterator[tuple[ObjectId, int]]:
    """Run ``work`` over ``ids`` with at most ``jobs`` in flight (bounded memory), yielding as each finishes in order.

    The first failure stops new work and propagates once the in-flight transfers have ended; everything that
    finished before it is durable on the receiver, which is what makes a re-run resume.
    """
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="modelarc-transfer") as pool:
        pending: list[tuple[ObjectId, Future[int]]] = []
        it = iter(ids)
        try:
            for oid in it:
                pending.append((oid, pool.submit(work, oid)))
                if len(pending) >= jobs * 2:
                    done_oid, fut = pending.pop(0)
                    yield done_oid, fut.result()
            while pending:
                done_oid, fut = pending.pop(0)
                yield done_oid, fut.result()
        except BaseException:
            for _oid, fut in pending:
                fut.cancel()
            raise
