"""A ``modelarc serve`` archive as a mirror (``modelarc mirror add NAME remote:REMOTE``).

A folder or bucket mirror is a copy of the store's keys. A served archive cannot be one: its own gc would delete
objects its catalog does not name, and it signs, vets and records what it receives. So a remote mirror is kept in
step the way a user would keep it by hand, with the transfer protocol (docs/FORMAT.md "Transfer"): every snapshot
the remote lacks is pushed whole (manifest and bundles vetted first, each object re-hashed by the remote on arrival)
and committed under the same model, moving the same tags; a snapshot no tag names is committed with
``move_tag: false``, so untagged history arrives without moving anything. The remote writes its own catalog
records for what it commits, which is what lets a catalog be rebuilt from its store.

Each object is also re-hashed here before it is sent, so a damaged local copy is named in the report (for
``repair``) instead of being refused by the remote. Repair and scrub read objects back with ``GET /v1/objects``
and verify them by id like any mirror copy. Withdrawn snapshots are not mirrored: their weights are not handed
out (the report names them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import TYPE_CHECKING

from modelarc.archive.remote.client import RemoteArchive
from modelarc.archive.remote.config import get_remote
from modelarc.archive.remote.offers import offer_for
from modelarc.archive.remote.sync import push_offer
from modelarc.errors import (
    DeltaBaseError,
    IntegrityError,
    ModelarcError,
    NotFoundError,
    ObjectCorruptError,
    ObjectMissingError,
    RemoteError,
)
from modelarc.registry import queries as q
from modelarc.storage import ObjectId, ObjectStore

if TYPE_CHECKING:
    from modelarc.archive.mirrors import SyncReport
    from modelarc.archive.repository import Archive

# the most snapshots a served mirror may list: a thousand pages of a thousand rows. Only the rows of snapshots this
# archive holds are kept, but each page is read and judged; a mirror listing more is refused, not half-read (the
# snapshots past the cut would look missing and be pushed again)
MAX_MIRROR_SNAPSHOTS = 1_000_000


class RemoteMirror:
    """What the mirror code needs of a mirror (which ids it lacks, an object's stored bytes), over HTTP."""

    def __init__(self, archive: Archive, target: str, *, jobs: int = 4) -> None:
        self.name = target.removeprefix("remote:")
        self.client = RemoteArchive(get_remote(archive.settings.home, self.name), jobs=jobs)

    def close(self) -> None:
        self.client.close()

    def probe(self) -> None:
        """It answers, and it is an archive (the keys route every ``modelarc serve`` has)."""
        self.client.keys()

    def lacks(self, ids: Collection[str]) -> set[str]:
        return {str(oid) for oid in self.client.missing(sorted(ids))}

    def get_stored(self, oid: ObjectId) -> bytes:
        """The remote's copy as stored; ``ObjectMissingError`` if it has none, ``ObjectCorruptError`` if the
        copy it sends is malformed (the caller re-hashes a well-formed one against its id)."""
        try:
            return bytes(self.client.download(oid))
        except NotFoundError:
            raise ObjectMissingError(f"object {oid} is missing from remote {self.name}") from None
        except IntegrityError as exc:
            raise ObjectCorruptError(f"remote {self.name}'s copy of object {oid} is corrupt: {exc}") from None

    def get(self, oid: ObjectId) -> bytes | bytearray:
        return ObjectStore.decode_stored(oid, self.get_stored(oid), fetch_base=self.get_stored)


def _remote_tags(mirror: RemoteMirror, local: set[tuple[str, str]]) -> dict[tuple[str, str], set[str]]:
    """The tags the mirror holds for each snapshot of ``local`` (model, digest) it has: its listing is read a page
    at a time, and rows of snapshots this archive lacks are not kept."""
    there: dict[tuple[str, str], set[str]] = {}
    listed = 0
    for row in mirror.client.iter_search({}, MAX_MIRROR_SNAPSHOTS + 1):
        listed += 1
        if listed > MAX_MIRROR_SNAPSHOTS:
            raise RemoteError(
                f"remote {mirror.name} lists more than {MAX_MIRROR_SNAPSHOTS:,} snapshots; "
                "a mirror this archive syncs to may hold at most that many"
            )
        key = (row.model, str(row.snapshot))
        if key in local:
            there[key] = set(row.tags)
    return there


def sync_to_remote(
    archive: Archive,
    mirror: RemoteMirror,
    wanted: dict[str, int],
    report: SyncReport,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> None:
    """Push every snapshot (and tag) the remote lacks, oldest first so that parents arrive before children."""
    lacking = mirror.lacks(wanted)
    report.already_there = len(wanted) - len(lacking)
    if on_total:
        on_total(sum(wanted[oid] for oid in lacking))
    with archive.catalog.session() as s:
        snaps = sorted(q.list_snapshots(s), key=lambda snap: snap.row_id)
        tags = q.tags_by_snapshot(s, [snap.row_id for snap in snaps])
    there = _remote_tags(mirror, {(snap.model, str(snap.digest)) for snap in snaps})
    lock = threading.Lock()

    def verified_read(oid: ObjectId) -> bytes:
        try:
            blob = archive.store.get_stored(oid)
            ObjectStore.decode_stored(oid, blob, fetch_base=archive.store.get_stored)
        except (ObjectCorruptError, ObjectMissingError, DeltaBaseError) as exc:
            with lock:
                report.not_copied[str(oid)] = str(exc)
            raise
        with lock:
            report.objects_copied += 1
            report.bytes_copied += len(blob)
        if progress:
            progress(len(blob))
        return blob

    for snap in snaps:
        label = f"{snap.model}@{snap.digest}"
        if snap.tombstoned_at is not None:
            report.snapshots_withdrawn.append(label)
            continue
        have_tags = there.get((snap.model, str(snap.digest)))
        todo = [t for t in tags.get(snap.row_id, []) if have_tags is None or t not in have_tags]
        if have_tags is not None and not todo:
            continue
        try:
            offer, manifest = offer_for(archive, label)
            offers = [replace(offer, ref=f"{snap.model}:{t}") for t in todo] or [replace(offer, move_tag=False)]
            for one in offers:
                result = push_offer(archive, one, manifest, mirror.client, read=verified_read)
                if not one.move_tag and "@" not in result.ref:
                    raise RemoteError(
                        f"remote {mirror.name} moved tag {result.ref} for an offer that moves none: "
                        "it is older than this client and cannot be a mirror"
                    )
            report.snapshots_copied += 1
        except (ObjectCorruptError, ObjectMissingError, DeltaBaseError):
            report.snapshots_refused[label] = "a local object is damaged (see not_copied; modelarc repair)"
        except RemoteError:
            raise  # unreachable, refused credentials, a server error: the whole sync stops and says so
        except ModelarcError as exc:  # this snapshot was refused (an untrusted signer, ...): the rest go on
            report.snapshots_refused[label] = str(exc).splitlines()[0]
