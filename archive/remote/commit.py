"""Recording a snapshot received from another archive: every claim of its offer is checked before anything is.

Both directions use this: a server commits what a client pushed to it, a client commits what it pulled. The checks
and their order are docs/FORMAT.md "Transfer between archives"; the threat model is docs/SECURITY.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from modelarc.archive.deltas import base_closure
from modelarc.archive.heal import damaged_among, record_healed
from modelarc.archive.limits import MAX_BUNDLE_BYTES, MAX_DATA_MANIFEST_BYTES, read_document
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.manifest_checks import (
    check_manifest_content,
    check_manifest_structure,
    refuse_git_paths,
)
from modelarc.archive.manifest_rows import catalog_files
from modelarc.archive.records import catalog_time, stage_snapshot, write_record
from modelarc.archive.remote.offers import CommitResult, SnapshotOffer, objects_of, parse_provenance
from modelarc.archive.repository import (
    Archive,
    coverage_problem,
    no_signature,
)
from modelarc.archive.scrub import check_object
from modelarc.archive.signing.bundles import VerifiedSignature, verify_bundle
from modelarc.archive.snapshot_figures import SnapshotFigures, snapshot_figures
from modelarc.errors import (
    MissingObjectsError,
    NotFoundError,
    ProvenanceConflictError,
    SignatureError,
    WithdrawnError,
)
from modelarc.registry import queries as q
from modelarc.registry.db import CatalogSession
from modelarc.registry.recording import NewSignature, SnapshotRecording, refuse_withdrawn
from modelarc.registry.records import NewSnapshot, ObjectRecord, Provenance
from modelarc.registry.refs import Ref, SnapshotId, parse_ref
from modelarc.registry.snapshots import SnapshotRecord
from modelarc.storage import ObjectId
from modelarc.storage.store import ObjectInfo

if TYPE_CHECKING:  # provenance imports jsonschema (about a second): only where a data manifest is read
    from modelarc.archive.provenance.data import DataManifest
    from modelarc.archive.tokens import Principal


def commit_offer(
    archive: Archive,
    offer: SnapshotOffer,
    *,
    actor: str,
    record_as: Ref | None = None,
    holder: str | None = None,
    content_checked: bool = False,
    pusher: Principal | None = None,
    pulled_by: str | None = None,
) -> CommitResult:
    """Record a received snapshot and move one tag (none if the offer says so), once every claim the offer
    makes has been checked here.

    Before anything is recorded: every object is present, the manifest hashes to the offered id (it is read by
    that id and re-hashed), its numbers are sane, every file rebuilds to its declared size and sha256 with tensor
    entries matching its own header (skipped when the caller has just rebuilt the files and checked their headers
    itself: ``content_checked``, or when this archive already holds the snapshot), and a bundle signs exactly these files
    with a key *this* archive trusts. ``record_as`` is the name and tag to record (default: the offer's ref); its
    tag is the only one that moves, and a ``record_as`` without a tag moves none. ``holder`` releases that
    pusher's leases on the objects once they are referenced. Objects must already be durable in ``archive.store``.

    ``pusher`` is the token of a push this archive receives (a server; None for a pull, which the local user
    asked for). Its commit is also refused when it names an object the token may neither read here nor uploaded
    itself (``reusable_objects``: ids are public, bytes are not), when the snapshot was withdrawn here (unless
    the token is an admin's, and then only under a model that did not withdraw it), when it states other provenance than this model already records for it, and when it
    would attach training-data manifests to a snapshot the model already holds that another token pushed (unless
    the token is an admin's); a policy it declares applies only to a snapshot the commit adds to the model, never
    to one already there. A policy that makes a snapshot stricter here removes its load-cache copies once the
    commit is in (``purge_tightened``): for a pull, one this archive held, and may have loaded, while public.

    ``actor`` is whose word the offer is: a server's pusher, or for a pull the remote
    (archive/provenance/statement.py ``remote_identity``), recorded as the snapshot's ``pushed_by`` and as the
    actor of every row and record the commit writes; ``pulled_by``, the local user who asked for the pull, is
    named in the audit entry beside it.
    """
    ref = record_as or parse_ref(offer.ref)
    if not offer.move_tag:
        ref = Ref(ref.namespace, ref.name, tag=None)
    with archive.catalog.session() as s:  # before anything is read (the recording's transaction checks again)
        q.refuse_name_clash(s, ref.namespace, ref.name)
    with archive.lock(exclusive=False, purpose="commit") as held:
        manifest_id = ObjectId(offer.snapshot.hex)
        if pusher is not None:
            refuse_unproven_manifest(archive, offer, pusher, holder)
        # what the offer names first: the manifest (up to 128 MiB of JSON) is parsed only once a bundle by a key
        # this archive trusts signs it (check_offer), so an unsigned one costs a sender's upload, not our memory
        named = [manifest_id, *map(ObjectId, offer.signatures + offer.data)]
        if missing := [oid for oid in named if not archive.store.has(oid)]:
            raise MissingObjectsError(offer.snapshot, missing)
        if pusher is not None:  # before they are read as a signature bundle or a data manifest (check_offer)
            _refuse_unreadable(archive, offer, offered_documents(offer), pusher, holder)
        checked = check_offer(archive, offer)
        # what the snapshot is recorded with: its manifest, objects and the bundles that sign it (no others)
        manifest, fingerprint, offer = checked.manifest, checked.fingerprint, checked.offer
        needed = objects_of(offer, manifest)
        # every missing chunk at once: one resend completes
        if missing := [oid for oid in needed if not archive.store.has(oid)]:
            raise MissingObjectsError(offer.snapshot, missing)
        # a received push or a pull heals what this catalog knows damaged, or is refused until it does (archive/heal.py)
        healed = _healed_objects(archive, offer, needed, pushed=pusher is not None)
        data = data_manifests(archive, offer)
        provenance = parse_provenance(offer.provenance)
        with archive.catalog.session() as s:
            # the model withdrew it: refused for every pusher and puller alike (registry/recording.py)
            refuse_withdrawn(s, ref, offer.snapshot)
            known_snapshot = q.digest_recorded(s, offer.snapshot)
            if pusher is not None:
                _refuse_for_pusher(s, offer, ref, provenance, pusher)
                # a tag moved to a snapshot this model holds exposes none of its weights anew
                reused = reused_objects(s, ref, offer, needed)
        if pusher is not None:  # before the content check, which would read (and hash) bytes for the pusher
            _refuse_unreadable(archive, offer, reused, pusher, holder)
        if not (content_checked or known_snapshot):
            check_manifest_content(archive.store, manifest, f"snapshot {offer.snapshot}")
        archive.store.sync()  # every object is durable before the catalog mentions it
        infos = {oid: archive.store.stat(oid) for oid in needed}
        # the bases its delta objects need, as this store's own headers say (the sender's word is not taken)
        lost: list[str] = []
        bases = base_closure(archive.store, {o: i.delta_base for o, i in infos.items()}, missing=lost)
        if lost:
            raise MissingObjectsError(offer.snapshot, [ObjectId(b) for b in sorted(lost)])
        bases -= set(infos)  # not judged for the pusher: a reader who may not read a base gets the delta decoded
        base_infos = [archive.store.stat(ObjectId(b)) for b in sorted(bases)]
        # derived from the manifest and the received config.json: a sender cannot make the catalog disagree
        figures = snapshot_figures(archive.store, manifest, offer.architecture)
        with archive.catalog.session() as s:
            held.confirm(s)  # the objects checked present above are still there: no gc can have run since
            known = q.known_object_ids(s, infos)
            recorded, write_snapshot_record = stage_snapshot(
                archive.store.backend,
                s,
                SnapshotRecording(
                    model=Ref(ref.namespace, ref.name, tag=ref.tag),
                    snapshot=_record(
                        offer, manifest, provenance, figures, infos, known, actor, frozenset(bases)
                    ),
                    objects=[
                        ObjectRecord(o.id, o.raw_size, o.stored_size, o.codec, o.delta_base)
                        for o in [*infos.values(), *base_infos]
                    ],
                    signatures=list(checked.signatures),
                    actor=actor,
                    action="transfer.commit",
                    parents=[(parse_ref(text), relation) for text, relation in offer.parents],
                    lenient_parents=True,
                    release_leases_of=holder,
                    audit_details={"key": fingerprint, **({"pulled_by": pulled_by} if pulled_by else {})},
                ),
            )
            by = "transfer.commit" if pusher is not None else "pull"
            record_healed(s, healed, actor, f"{ref.model}@{offer.snapshot}", by=by)
            # in the same transaction as the snapshot: recorded with its data and its policy, or not at all (a
            # policy applied after the commit and failed would leave the snapshot public, and a retried commit
            # finds it already recorded and applies no policy). Every catalog record is written once every row is
            # in: a row that fails leaves no record a rebuild would replay without the others.
            s.flush()
            snap = q.resolve_snapshot(s, Ref(ref.namespace, ref.name, digest=offer.snapshot))
            records: list[Callable[[], object]] = [write_snapshot_record]
            tightened: list[SnapshotId] = []
            _attach_data(archive, s, snap, data, infos, actor, records)
            # withheld there: withheld here too, unless this archive is already stricter; a received policy is the
            # sender's word about the snapshot it brings, so it never changes one this model already held
            if offer.access is not None and (pusher is None or recorded.created):
                from modelarc.archive.access import receive_policy

                receive_policy(
                    archive, s, snap, offer.access, actor=actor, deferred=records, tightened=tightened
                )
            # the snapshot's own record last: a record write that fails (a full disk) after some were written
            # leaves only records of its data and policy, naming a snapshot no record creates, which a rebuild
            # refuses; written first, the snapshot's record would bring it back without its embargo
            for write in reversed(records):
                write()
        # committed: a pulled snapshot this archive held, now withheld here too, loses its load-cache copies; one
        # withheld as it was loses those still open to other users (the same pull run again after one killed
        # before this purge brings no change, and must finish it)
        cache_left: tuple[str, ...] = ()
        if offer.access is not None:
            from modelarc.archive.access import effective_policy, purge_after_policy

            withheld = effective_policy(archive, snap.model, snap).level != "public"
            purged = purge_after_policy(archive, tightened, [snap.digest] if withheld else [])
            cache_left = tuple(f"{p} ({why})" for p, why in purged.left)
    return CommitResult(
        ref=f"{ref.model}:{ref.tag}" if ref.tag else f"{ref.model}@{offer.snapshot}",
        snapshot=offer.snapshot,
        new_snapshot=recorded.created,
        previous=recorded.previous,
        key_fingerprint=fingerprint,
        parents_missing=recorded.parents_missing,
        lineage_refused=tuple(p.label for p in recorded.parents_refused),
        cache_left=cache_left,
    )


def _healed_objects(
    archive: Archive, offer: SnapshotOffer, needed: list[ObjectId], *, pushed: bool
) -> dict[str, ObjectInfo]:
    """The objects of a received snapshot that the catalog knows damaged (a scrub found them corrupt, missing or
    unreadable, or the transfer found their headers unreadable: archive/heal.py ``stored_copies``), each read back
    now (one query, which usually finds none): the pusher's upload (archive/remote/receive.py), or the pull's
    download (archive/remote/sync.py), replaced the damaged copy, so it is healed. One that still does not read back
    is refused as missing, listed for the pusher to send (a pull run again fetches it), rather than recorded in a
    snapshot broken from birth."""
    damaged = damaged_among(archive, [str(oid) for oid in needed])
    if not damaged:
        return {}
    if bad := sorted(oid for oid in damaged if check_object(archive.store, oid) != "ok"):
        fix = "send its bytes to replace it" if pushed else "pull again to fetch its bytes in its place"
        raise MissingObjectsError(
            offer.snapshot,
            [ObjectId(oid) for oid in bad],
            f"is damaged here (found corrupt, missing or unreadable): {fix}",
        )
    return {oid: archive.store.stat(ObjectId(oid)) for oid in sorted(damaged)}


class CheckedOffer(NamedTuple):
    """An offer whose manifest and signatures have been checked here (``check_offer``)."""

    manifest: SnapshotManifest
    fingerprint: str  # of the trusted key of the first bundle that signs the snapshot
    offer: SnapshotOffer  # the offer with only the bundles that sign this snapshot (the others are not its own)
    signatures: tuple[NewSignature, ...]  # those bundles, each with the key that signed it, as recorded


def check_offer(
    archive: Archive, offer: SnapshotOffer, manifest: SnapshotManifest | None = None
) -> CheckedOffer:
    """The checks that need only the manifest and the bundles: run before any weight object moves.

    ``manifest``, when the caller has already read it by the offered id, is not read again.

    Raises ``MissingObjectsError`` for an absent manifest or bundle, ``IntegrityError`` for a manifest whose
    numbers cannot be true or that would write a ``.git`` path, ``SignatureError`` unless a bundle verifies
    against a key this archive trusts and covers every file of the manifest. Other bundles in the offer (another
    snapshot's, an untrusted key's, not a bundle at all) are ignored, not refused: a snapshot may carry signatures
    by keys only some archives trust, and a signature this archive cannot check is no claim it records.
    """
    head = [ObjectId(offer.snapshot.hex), *map(ObjectId, offer.signatures)]
    missing = [oid for oid in head if not archive.store.has(oid)]
    if missing:
        raise MissingObjectsError(offer.snapshot, missing)
    # the bundles first, one at a time, each bounded by its header before it is decoded: the manifest (up to
    # MAX_MANIFEST_BYTES) is parsed only once a bundle by a trusted key verifies and does not name another snapshot
    trusted = archive.trusted_pems()
    verified: list[tuple[str, str, VerifiedSignature]] = []  # (object id, bundle text, what it signs)
    errors: list[str] = []
    for oid in dict.fromkeys(offer.signatures):  # a bundle listed twice is one signature
        bundle = read_document(archive.store, ObjectId(oid), MAX_BUNDLE_BYTES, f"signature bundle {oid}")
        try:
            signed = verify_bundle(bundle, trusted)
        except SignatureError as exc:
            errors.append(str(exc))
            continue
        if signed.snapshot_id is not None and signed.snapshot_id != offer.snapshot:
            errors.append(f"signature is for snapshot {signed.snapshot_id}")
            continue
        verified.append((oid, bundle.decode("utf-8"), signed))
        del bundle
    if not verified:
        raise no_signature(offer.snapshot, errors)
    manifest = manifest or archive.manifest_by_id(offer.snapshot)
    check_manifest_structure(manifest, f"snapshot {offer.snapshot}")
    refuse_git_paths(manifest, f"snapshot {offer.snapshot}")
    signatures: list[NewSignature] = []
    for oid, text, signed in verified:
        problem = coverage_problem(signed, manifest, offer.snapshot)
        if problem:
            errors.append(problem)
        else:
            signatures.append(NewSignature(oid, text, signed.key_fingerprint))
    if not signatures:
        raise no_signature(offer.snapshot, errors)
    kept = dataclasses.replace(offer, signatures=tuple(s.object_id for s in signatures))
    return CheckedOffer(manifest, signatures[0].key_fingerprint, kept, tuple(signatures))


def _refuse_for_pusher(
    s: CatalogSession, offer: SnapshotOffer, ref: Ref, provenance: Provenance, pusher: Principal
) -> None:
    """What a received push may not do that a local push may: bring back weights this archive withdrew, or
    restate a recorded snapshot's provenance (archive/provenance/repush.py, as a local re-push is refused). An
    admin may push a withdrawn snapshot's files under another model (a new snapshot, as a local push may), never
    to the model that withdrew it (``refuse_withdrawn``, for every commit)."""
    if pusher.scope != "admin" and q.digest_withdrawn(s, offer.snapshot):
        raise WithdrawnError(
            f"snapshot {offer.snapshot} was withdrawn from this archive: it cannot be pushed again "
            "(an administrator of this archive can, under another model)"
        )
    from modelarc.archive.provenance.repush import refuse_other_provenance

    parents = []
    for text, relation in offer.parents:
        try:  # a parent this archive lacks is reported, not recorded (``parents_missing``): nothing to compare
            q.resolve_snapshot(s, parse_ref(text))
        except NotFoundError:
            continue
        parents.append((parse_ref(text), relation))
    refuse_other_provenance(s, Ref(ref.namespace, ref.name), offer.snapshot, provenance, parents)
    _refuse_others_data(s, offer, ref, pusher)


def _refuse_others_data(s: CatalogSession, offer: SnapshotOffer, ref: Ref, pusher: Principal) -> None:
    """A training-data manifest is a claim about what a snapshot was made from: a push may add one to a snapshot
    the model already holds only when the token is the one that pushed it there, or an admin's. Otherwise any
    push token could re-commit someone else's snapshot and have it say it was trained on whatever it likes
    (docs/SECURITY.md: a pusher's description is linked only to its own snapshots)."""
    if not offer.data or pusher.scope == "admin":
        return
    try:
        held = q.resolve_snapshot(s, Ref(ref.namespace, ref.name, digest=offer.snapshot))
    except NotFoundError:
        return  # new to the model: what its pusher says of it is the pusher's own
    if held.pushed_by == pusher.actor:
        return
    attached = set(q.data_manifest_object_ids(s, held.row_id))
    if added := [oid for oid in dict.fromkeys(offer.data) if oid not in attached]:
        raise ProvenanceConflictError(
            f"{ref.namespace}/{ref.name} already holds snapshot {offer.snapshot}, pushed by {held.pushed_by}: a "
            f"push may not add training-data manifests to it ({', '.join(added)}); only its pusher or an "
            "administrator can, so nothing was changed"
        )


def reused_objects(s: CatalogSession, ref: Ref, offer: SnapshotOffer, needed: list[ObjectId]) -> list[ObjectId]:
    """The objects of ``needed`` a push must be entitled to (``reusable_objects``): all of them, unless the model
    ``ref`` names already holds this snapshot, when a commit only moves a tag and the snapshot's own content is
    exposed no further: then only its signatures and training-data manifests, which the commit may add."""
    try:
        q.resolve_snapshot(s, Ref(ref.namespace, ref.name, digest=offer.snapshot))
    except NotFoundError:
        return needed
    return offered_documents(offer)


def offered_documents(offer: SnapshotOffer) -> list[ObjectId]:
    """The objects an offer names as its signature bundles and training-data manifests. Whatever else a commit
    adds, it always adds these (``reused_objects``), and the receiver reads each to check the offer: so a pusher's
    right to them is judged first, or it could make the server parse (and answer about) bytes it may not read."""
    return [ObjectId(oid) for oid in dict.fromkeys(offer.signatures + offer.data)]


def refuse_unproven_manifest(
    archive: Archive, offer: SnapshotOffer, pusher: Principal | None, holder: str | None
) -> None:
    """Before the object the offer names as its manifest is read: unless it is a snapshot this archive records
    (a manifest, and its offer is served), the pusher must have sent it or may read it (``_refuse_unreadable``).
    Otherwise the snapshot id could name a gated weight chunk, which the server would parse as a manifest and
    quote back in its error (422 "unsupported manifest format ...")."""
    manifest_id = ObjectId(offer.snapshot.hex)
    if not archive.store.has(manifest_id):
        return  # reported missing as such
    with archive.catalog.session() as s:
        if q.digest_recorded(s, offer.snapshot):
            return
    _refuse_unreadable(archive, offer, [manifest_id], pusher, holder)


def _refuse_unreadable(
    archive: Archive,
    offer: SnapshotOffer,
    object_ids: list[ObjectId],
    pusher: Principal | None,
    holder: str | None,
) -> None:
    """Unless the pusher may read, or sent, every object the snapshot uses: ``MissingObjectsError`` (409) listing
    the others, as `/v1/transfer/check` lists them. A pusher that has their bytes sends them and commits again
    (an upload proves possession); one that only knows their ids cannot."""
    from modelarc.archive.remote.receive import reusable_objects

    allowed = reusable_objects(archive, object_ids, pusher, holder or "")
    if refused := [oid for oid in object_ids if str(oid) not in allowed]:
        raise MissingObjectsError(
            offer.snapshot, refused, "is not this token's to reuse: it may not read it here and has not sent it"
        )


def _record(
    offer: SnapshotOffer,
    manifest: SnapshotManifest,
    provenance: Provenance,
    figures: SnapshotFigures,
    infos: dict[ObjectId, Any],
    known: set[str],
    actor: str,
    bases: frozenset[str] = frozenset(),
) -> NewSnapshot:
    return NewSnapshot(
        digest=offer.snapshot,
        logical_bytes=figures.logical_bytes,
        stored_bytes_added=sum(info.stored_size for oid, info in infos.items() if oid not in known),
        files=catalog_files(manifest),
        parameter_count=figures.parameter_count,
        dtypes=figures.dtypes,
        architecture=figures.architecture,
        object_ids=frozenset(str(o) for o in infos),
        base_object_ids=bases,
        provenance=provenance,
        pushed_by=actor,
    )


def data_manifests(archive: Archive, offer: SnapshotOffer) -> list[DataManifest]:
    """The offer's training-data manifests, each parsed and validated as if given on this side, before recording
    (a puller runs this before any weight moves, too: they are in the store by then, with the manifest)."""
    if not offer.data:
        return []
    # imported here: jsonschema's import costs about a second, which every CLI command would otherwise pay
    from modelarc.archive.provenance.data import parse_data_manifest

    return [  # each bounded by its header before it is decoded, as a data manifest given on this side is
        parse_data_manifest(
            read_document(archive.store, ObjectId(oid), MAX_DATA_MANIFEST_BYTES, f"training-data manifest {oid}"),
            f"training-data manifest {oid}",
        )
        for oid in offer.data
    ]


def _attach_data(
    archive: Archive,
    s: CatalogSession,
    snap: SnapshotRecord,
    manifests: list[DataManifest],
    infos: dict[ObjectId, Any],
    actor: str,
    records: list[Callable[[], object]],
) -> None:
    """Attach each training-data manifest not yet attached to the snapshot, in the commit's transaction ``s``:
    each is in the store (``infos`` has it) and recorded as an object by the same commit. Each attachment's
    ``data`` record is appended to ``records``, for the caller to write once every row is in."""
    if not manifests:
        return
    from modelarc.archive.provenance.data import apply_attachment, new_dataset

    have = set(q.data_manifest_object_ids(s, snap.row_id))
    target = f"{snap.model}@{snap.digest}"
    for manifest in manifests:
        oid = ObjectId.of(manifest.raw)
        if str(oid) in have:
            continue
        have.add(str(oid))
        info = infos[oid]
        stored = ObjectRecord(info.id, info.raw_size, info.stored_size, info.codec)
        at = catalog_time()
        datasets = [new_dataset(entry) for entry in manifest.datasets]
        apply_attachment(s, snap, stored, datasets, actor=actor, target=target, at=at)
        s.flush()  # the rows are held before the record's time is taken (archive/records.py)
        fields = {"model": snap.model, "snapshot": snap.digest, "ref": target, "manifest": str(oid)}
        records.append(
            functools.partial(write_record, archive.store.backend, s, "data", at=at, actor=actor, **fields)
        )
