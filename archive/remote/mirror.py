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
from typing import TYPE_CHECKING, Any

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
    from modelarc.archive.access import ModelAccess, PolicyState
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

    live = {(snap.model, str(snap.digest)) for snap in snaps if snap.tombstoned_at is None}
    # policies first, for what the mirror already holds: a policy tightened here must reach it even when a snapshot
    # push below stops the sync (an unreachable mirror, a server error)
    sync_policies(archive, mirror, set(there) & live, report)
    arrived: set[tuple[str, str]] = set()
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
            arrived.add((snap.model, str(snap.digest)))
        except (ObjectCorruptError, ObjectMissingError, DeltaBaseError):
            report.snapshots_refused[label] = "a local object is damaged (see not_copied; modelarc repair)"
        except RemoteError:
            raise  # unreachable, refused credentials, a server error: the whole sync stops and says so
        except ModelarcError as exc:  # this snapshot was refused (an untrusted signer, ...): the rest go on
            report.snapshots_refused[label] = str(exc).splitlines()[0]
    # then the models that received snapshots: a new model's policy, and its new snapshots' (an offer brings a
    # snapshot's policy only where it is stricter than the mirror's: never a looser one, nor the model's own)
    new_models = {model for model, _digest in arrived}
    touched = {(m, d) for m, d in (set(there) & live) | arrived if m in new_models}
    sync_policies(archive, mirror, touched, report)


POLICY_BATCH = 200  # policies per PUT at most, and at most POLICY_BATCH_BYTES of them as JSON
# well inside the server's body bound (api/access.py MAX_POLICIES_BODY, 1 MiB): one policy is at most ~37 KB (a
# 4000-character reason and 64 withheld-file patterns of 500), so a part always holds at least one
POLICY_BATCH_BYTES = 512 << 10
# the reason a policy this archive never set is given there (the model's default, a snapshot with no override)
IN_STEP = "in step with the archive it mirrors (mirror sync): no policy is set there"


def sync_policies(
    archive: Archive, mirror: RemoteMirror, held: set[tuple[str, str]], report: SyncReport
) -> None:
    """Make the mirror's access policies this archive's, for every model and snapshot of ``held`` (model, digest)
    the mirror holds: the model's policy, and each snapshot's override (or none), compared by what they withhold
    and until when (``policy_state``) and by their reason. Each model's changes go in one transaction there
    (``PUT /v1/access/{ns}/{name}``). A model whose change the mirror refuses (a push token may tighten, only an
    admin token may loosen; a token outside the namespace; an older server) is named in
    ``report.policies_refused``: the sync fails, loudly, rather than leave weights handed out that are withheld
    here."""
    from modelarc.archive.access import list_policies

    by_model: dict[str, set[str]] = {}
    for model, digest in held:
        by_model.setdefault(model, set()).add(digest)
    for model in sorted(by_model):
        try:
            (local,) = list_policies(archive, model)
            wanted = _policies_wanted(local, mirror.client.access(model), by_model[model])
            for part in _parts(wanted):
                changed = mirror.client.set_access(model, part)
                report.policies_changed += [{"model": model, **c} for c in changed]
        except ModelarcError as exc:
            report.policies_refused[model] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _parts(wanted: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``wanted`` in order, cut into parts of at most ``POLICY_BATCH`` policies and ``POLICY_BATCH_BYTES`` of JSON."""
    import json

    parts: list[list[dict[str, Any]]] = []
    size = 0
    for doc in wanted:
        length = len(json.dumps(doc, ensure_ascii=False).encode()) + 1
        if not parts or len(parts[-1]) >= POLICY_BATCH or size + length > POLICY_BATCH_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(doc)
        size += length
    return parts


def _policies_wanted(local: ModelAccess, theirs: dict[str, Any], digests: set[str]) -> list[dict[str, Any]]:
    """What ``PUT /v1/access`` must set for the mirror's policies of ``local.model`` (and of its snapshots
    ``digests``) to be this archive's: the model's own first."""
    from modelarc.archive.access import INHERIT, policy_state

    out: list[dict[str, Any]] = []
    mine = local.policy.to_json()
    if policy_state(mine) != policy_state(theirs):
        out.append(_wanted(None, policy_state(mine), "public"))
    overrides = {str(o.snapshot): o.to_json() for o in local.overrides}
    their_overrides = {
        str(o.get("snapshot")): o for o in theirs.get("snapshots") or () if isinstance(o, dict)
    }
    for digest in sorted(digests):
        state = policy_state(overrides.get(digest), override=True)
        if state != policy_state(their_overrides.get(digest), override=True):
            out.append(_wanted(digest, state, INHERIT))
    return out


def _wanted(snapshot: str | None, state: PolicyState | None, default: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"level": default, "reason": IN_STEP} if state is None else {
        "level": state[0], "reason": state[3] or IN_STEP
    }  # fmt: skip
    if snapshot is not None:
        doc["snapshot"] = snapshot
    if state is not None and state[1]:
        doc["until"] = state[1]
    if state is not None and state[2]:
        doc["files"] = list(state[2])
    return doc
