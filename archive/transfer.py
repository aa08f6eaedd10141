"""Receiving a snapshot from another archive: objects arrive by id, then a commit that is refused unless it is whole.

Both directions use this module: a server commits what a client pushed to it, and a client commits what it pulled
from a remote. The wire document, a ``SnapshotOffer`` (format 1, docs/FORMAT.md "Transfer"), carries only what the
objects cannot: the ref, which objects are signature bundles, provenance and lineage. Everything integrity-relevant
is re-derived from the objects themselves: the manifest must hash to the snapshot id, every object it names must be
present, and a bundle must verify against a key *this* archive trusts and sign exactly the manifest's files.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelarc.archive.describe import architecture_from_config, parameter_counts
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.manifest_checks import (
    MAX_CHUNK_BYTES,
    check_manifest_content,
    check_manifest_structure,
)
from modelarc.archive.repository import RELATIONS, Archive, catalog_files, check_bundles, refuse_if_withdrawn
from modelarc.archive.restore import file_chunks
from modelarc.errors import (
    ModelarcError,
    NotFoundError,
    PayloadTooLargeError,
    SigningKeyError,
    UsageError,
)
from modelarc.registry import queries as q
from modelarc.registry.leases import release_leases, take_leases
from modelarc.registry.models import DataAttachment, Signature, SigningKey, Snapshot
from modelarc.registry.records import NewSnapshot, ObjectRecord, Provenance
from modelarc.registry.refs import Ref, parse_ref
from modelarc.storage import ObjectId
from modelarc.storage.objectformat import unpack_header

if TYPE_CHECKING:  # provenance imports jsonschema (about a second): only where a data manifest is read
    from modelarc.archive.provenance import DataManifest

TRANSFER_FORMAT = 1
MAX_OFFER_BYTES = 1 << 20  # an offer is a few KiB; the server reads no more than this before parsing
MAX_OFFER_ITEMS = 64  # signatures, parents, data manifests
MAX_OFFER_TEXT = 64 << 10  # each provenance string; the architecture object as JSON
MAX_CONFIG_BYTES = 4 << 20  # config.json is read back from the store to describe the architecture
_PROVENANCE_FIELDS = ("cutoff", "cutoff_precision", "license", "description", "source_url", "release_date")


class MissingObjectsError(ModelarcError):
    """A commit named objects the receiving store does not have; ``missing`` lists them so the sender can resume."""

    exit_code = 5

    def __init__(self, snapshot: str, missing: list[str]) -> None:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        super().__init__(f"snapshot {snapshot} is incomplete: object {missing[0]} is missing{more}")
        self.missing = missing


@dataclass(frozen=True)
class SnapshotOffer:
    """What one archive tells another about a snapshot, besides its objects."""

    ref: str  # ns/name:tag to move on the receiving side
    snapshot: str  # sha256:<hex>, the manifest's object id
    signatures: tuple[str, ...]  # object ids of signature bundles
    provenance: dict[str, Any]  # the _PROVENANCE_FIELDS, dates as ISO strings
    parents: tuple[tuple[str, str], ...]  # (ns/name@sha256:<hex>, relation)
    architecture: dict[str, Any]  # used only when the snapshot has no config.json to derive it from
    data: tuple[str, ...] = ()  # object ids of attached training-data manifests (docs/PROVENANCE.md)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TRANSFER_FORMAT,
            "ref": self.ref,
            "snapshot": self.snapshot,
            "signatures": list(self.signatures),
            "provenance": self.provenance,
            "parents": [{"ref": ref, "relation": rel} for ref, rel in self.parents],
            "architecture": self.architecture,
            "data": list(self.data),
        }

    @classmethod
    def from_json(cls, doc: Any) -> SnapshotOffer:
        """Parse and validate; every problem is a ``UsageError`` naming the field."""
        if not isinstance(doc, dict):
            raise UsageError("snapshot offer: expected a JSON object")
        if doc.get("format") != TRANSFER_FORMAT:
            raise UsageError(f"snapshot offer: format {doc.get('format')!r} is not {TRANSFER_FORMAT}")
        ref = parse_ref(_string(doc, "ref"))
        if ref.digest:
            raise UsageError("snapshot offer: ref must name a tag (ns/name:tag), not a digest")
        snapshot = _string(doc, "snapshot")
        ObjectId(snapshot.removeprefix("sha256:"))  # validates the hex
        if not snapshot.startswith("sha256:"):
            raise UsageError("snapshot offer: snapshot must be sha256:<hex>")
        sigs = doc.get("signatures")
        if (
            not isinstance(sigs, list)
            or not 0 < len(sigs) <= MAX_OFFER_ITEMS
            or not all(isinstance(x, str) for x in sigs)
        ):
            raise UsageError(
                f"snapshot offer: signatures must be a list of 1 to {MAX_OFFER_ITEMS} object ids"
            )
        for oid in sigs:
            ObjectId(oid)
        prov = doc.get("provenance") or {}
        if not isinstance(prov, dict) or not all(
            k in _PROVENANCE_FIELDS and (v is None or (isinstance(v, str) and len(v) <= MAX_OFFER_TEXT))
            for k, v in prov.items()
        ):
            raise UsageError(
                f"snapshot offer: provenance may only hold strings (at most {MAX_OFFER_TEXT} characters) "
                f"for {', '.join(_PROVENANCE_FIELDS)}"
            )
        parents = []
        if len(doc.get("parents") or []) > MAX_OFFER_ITEMS:
            raise UsageError(f"snapshot offer: at most {MAX_OFFER_ITEMS} parents")
        for i, p in enumerate(doc.get("parents") or []):
            if (
                not isinstance(p, dict)
                or not isinstance(p.get("ref"), str)
                or p.get("relation") not in RELATIONS
            ):
                raise UsageError(
                    f"snapshot offer: parents[{i}] needs a ref and a relation in {', '.join(RELATIONS)}"
                )
            if not parse_ref(p["ref"]).digest:
                raise UsageError(f"snapshot offer: parents[{i}].ref must name a digest (ns/name@sha256:...)")
            parents.append((p["ref"], p["relation"]))
        arch = doc.get("architecture") or {}
        if not isinstance(arch, dict) or len(json.dumps(arch)) > MAX_OFFER_TEXT:
            raise UsageError(
                f"snapshot offer: architecture must be an object of at most {MAX_OFFER_TEXT} bytes"
            )
        data = doc.get("data") or []
        if (
            not isinstance(data, list)
            or len(data) > MAX_OFFER_ITEMS
            or not all(isinstance(x, str) for x in data)
        ):
            raise UsageError(f"snapshot offer: data must be a list of at most {MAX_OFFER_ITEMS} object ids")
        return cls(
            str(ref),
            snapshot,
            tuple(sigs),
            dict(prov),
            tuple(parents),
            arch,
            tuple(ObjectId(x) for x in data),
        )


@dataclass(frozen=True)
class CommitResult:
    ref: str
    snapshot: str
    new_snapshot: bool
    previous: str | None
    key_fingerprint: str
    parents_missing: tuple[str, ...]  # lineage the receiver could not record because it lacks the parent


def offer_for(archive: Archive, ref_text: str) -> tuple[SnapshotOffer, SnapshotManifest]:
    """Describe a local snapshot for sending, with its verified manifest."""
    ref, snap = archive.resolve(ref_text)
    refuse_if_withdrawn(snap, str(ref))
    manifest = archive.manifest(snap)
    with archive.catalog.session() as s:
        row = s.get(Snapshot, snap.id)
        assert row is not None
        parents = tuple(
            (f"{p.parent.model.namespace}/{p.parent.model.name}@{p.parent.digest}", p.relation)
            for p in row.parents
        )
        tag = ref.tag
        if tag is None:  # a digest ref: send it under the tag that points at it, else `latest`
            tags = [t.name for t in row.model.tags if t.snapshot_id == row.id]
            tag = "latest" if not tags or "latest" in tags else sorted(tags)[0]
        provenance = {
            name: (value.isoformat() if isinstance(value, dt.date) else value)
            for name in _PROVENANCE_FIELDS
            if (value := getattr(row, name)) is not None
        }
        offer = SnapshotOffer(
            ref=f"{ref.model}:{tag}",
            snapshot=snap.digest,
            signatures=tuple(archive.signature_object_ids(snap)),
            provenance=provenance,
            parents=parents,
            architecture=dict(row.architecture or {}),
            data=tuple(
                a.object_id
                for a in s.query(DataAttachment).filter_by(snapshot_id=row.id).order_by(DataAttachment.id)
                if a.object_id
            ),
        )
    return offer, manifest


def objects_of(offer: SnapshotOffer, manifest: SnapshotManifest) -> list[ObjectId]:
    """Every object a receiver needs: the manifest first (so a partial pull can read it), then bundles, then data."""
    head = [ObjectId(offer.snapshot.removeprefix("sha256:"))] + [
        ObjectId(o) for o in offer.signatures + offer.data
    ]
    return head + sorted(manifest.object_ids() - set(head))


def commit_offer(
    archive: Archive,
    offer: SnapshotOffer,
    *,
    actor: str,
    record_as: Ref | None = None,
    holder: str | None = None,
    content_checked: bool = False,
) -> CommitResult:
    """Record a received snapshot and move one tag, once every claim the offer makes has been checked here.

    Before anything is recorded: every object is present, the manifest hashes to the offered id (it is read by
    that id and re-hashed), its numbers are sane, every file rebuilds to its declared size and sha256 with tensor
    entries matching its own header (skipped when the caller has just rebuilt the files itself:
    ``content_checked``, or when this archive already holds the snapshot), and a bundle signs exactly these files
    with a key *this* archive trusts. ``record_as`` is the name and tag to record (default: the offer's ref); its
    tag is the only one that moves, and a ``record_as`` without a tag moves none. ``holder`` releases that
    pusher's leases on the objects once they are referenced. Objects must already be durable in ``archive.store``.
    """
    ref = record_as or parse_ref(offer.ref)
    with archive.store.lock(exclusive=False):
        if missing := missing_objects(archive, offer):  # all of them at once, so one resend completes a push
            raise MissingObjectsError(offer.snapshot, missing)
        manifest, fingerprint, bundles = check_offer(archive, offer)
        needed = objects_of(offer, manifest)
        data = _data_manifests(archive, offer)
        with archive.catalog.session() as s:
            recorded = q.digest_recorded(s, offer.snapshot)
        if not (content_checked or recorded):
            check_manifest_content(archive.store, manifest, f"snapshot {offer.snapshot}")
        archive.store.sync()  # every object is durable before the catalog mentions it
        infos = {oid: archive.store.stat(oid) for oid in needed}
        architecture = _architecture(archive, manifest) or offer.architecture
        with archive.catalog.session() as s:
            known = q.known_object_ids(s, infos)
            parents, parents_missing = [], []
            for parent_text, relation in offer.parents:
                try:
                    parents.append((q.resolve_ref(s, parse_ref(parent_text)), relation))
                except NotFoundError:
                    parents_missing.append(parent_text)
            q.record_objects(
                s, [ObjectRecord(o.id, o.raw_size, o.stored_size, o.codec) for o in infos.values()]
            )
            record = _record(offer, manifest, architecture, infos, known, actor)
            model = q.get_or_create_model(s, ref.namespace, ref.name)
            snap, created = q.record_snapshot(s, model, record, parents)
            have = {sig.object_id for sig in s.query(Signature).filter_by(snapshot_id=snap.id)}
            key_row = s.query(SigningKey).filter_by(fingerprint=fingerprint).one_or_none()
            if key_row is None:  # cannot happen: the fingerprint came from the trusted keys just read
                raise SigningKeyError(f"key {fingerprint} vanished from the catalog during the commit")
            for oid, bundle in zip(offer.signatures, bundles, strict=True):
                if oid not in have:
                    s.add(
                        Signature(
                            snapshot_id=snap.id, key_id=key_row.id, object_id=oid, bundle=bundle.decode()
                        )
                    )
            if not created:
                q.add_snapshot_objects(s, snap, [str(o) for o in needed])
            previous = q.move_tag(s, model, ref.tag, snap, actor) if ref.tag else None
            if holder is not None:
                release_leases(s, needed, holder)
            label = f"{ref.model}:{ref.tag}" if ref.tag else f"{ref.model}@{offer.snapshot}"
            q.audit(
                s,
                actor,
                "transfer.commit",
                label,
                snapshot=offer.snapshot,
                new_snapshot=created,
                previous=previous,
                key=fingerprint,
            )
    _attach_data(archive, data, f"{ref.model}@{offer.snapshot}")
    return CommitResult(
        ref=label,
        snapshot=offer.snapshot,
        new_snapshot=created,
        previous=previous if previous != offer.snapshot else None,
        key_fingerprint=fingerprint,
        parents_missing=tuple(parents_missing),
    )


def missing_objects(archive: Archive, offer: SnapshotOffer) -> list[ObjectId]:
    """Every object of the offer this store lacks; without the manifest, only what the offer itself names."""
    manifest_id = ObjectId(offer.snapshot.removeprefix("sha256:"))
    head = [manifest_id, *map(ObjectId, offer.signatures + offer.data)]
    needed = (
        objects_of(offer, archive.manifest_by_id(offer.snapshot)) if archive.store.has(manifest_id) else head
    )
    return [oid for oid in needed if not archive.store.has(oid)]


def check_offer(archive: Archive, offer: SnapshotOffer) -> tuple[SnapshotManifest, str, list[bytes]]:
    """The checks that need only the manifest and the bundles: run before any weight object moves.

    Returns the manifest, the fingerprint of the trusted key that signed it, and the bundles' bytes. Raises
    ``MissingObjectsError`` for an absent manifest or bundle, ``IntegrityError`` for a manifest whose numbers
    cannot be true, ``SignatureError`` unless a bundle verifies against a key this archive trusts.
    """
    head = [ObjectId(offer.snapshot.removeprefix("sha256:")), *map(ObjectId, offer.signatures)]
    missing = [oid for oid in head if not archive.store.has(oid)]
    if missing:
        raise MissingObjectsError(offer.snapshot, missing)
    manifest = archive.manifest_by_id(offer.snapshot)
    check_manifest_structure(manifest, f"snapshot {offer.snapshot}")
    bundles = [bytes(archive.store.get(ObjectId(oid))) for oid in offer.signatures]
    fingerprint, _bundle = check_bundles(bundles, manifest, offer.snapshot, archive.trusted_pems())
    return manifest, fingerprint, bundles


def _record(
    offer: SnapshotOffer,
    manifest: SnapshotManifest,
    architecture: dict[str, Any],
    infos: dict[ObjectId, Any],
    known: set[str],
    actor: str,
) -> NewSnapshot:
    params, dtypes = parameter_counts(manifest)
    prov = offer.provenance
    try:
        provenance = Provenance(
            cutoff=_date(prov.get("cutoff")),
            cutoff_precision=prov.get("cutoff_precision"),
            license=prov.get("license"),
            description=prov.get("description"),
            source_url=prov.get("source_url"),
            release_date=_date(prov.get("release_date")),
        )
    except ValueError as exc:
        raise UsageError(f"snapshot offer: bad date in provenance: {exc}") from None
    if provenance.cutoff_precision not in (None, "year", "month", "day"):
        raise UsageError("snapshot offer: cutoff_precision must be year, month or day")
    return NewSnapshot(
        digest=offer.snapshot,
        logical_bytes=manifest.logical_bytes,
        stored_bytes_added=sum(info.stored_size for oid, info in infos.items() if oid not in known),
        files=catalog_files(manifest),
        parameter_count=params,
        dtypes=dtypes,
        architecture=architecture,
        object_ids=frozenset(str(o) for o in infos),
        provenance=provenance,
        pushed_by=actor,
    )


def _data_manifests(archive: Archive, offer: SnapshotOffer) -> list[DataManifest]:
    """The offer's training-data manifests, each parsed and validated as if given on this side, before recording."""
    if not offer.data:
        return []
    # imported here: jsonschema's import costs about a second, which every CLI command would otherwise pay
    from modelarc.archive.provenance import parse_data_manifest

    return [
        parse_data_manifest(bytes(archive.store.get(ObjectId(oid))), f"training-data manifest {oid}")
        for oid in offer.data
    ]


def _attach_data(archive: Archive, manifests: list[DataManifest], ref_text: str) -> None:
    """Attach each training-data manifest not yet attached to the snapshot here."""
    if not manifests:
        return
    from modelarc.archive.provenance import attach_data

    _ref, snap = archive.resolve(ref_text)
    with archive.catalog.session() as s:
        have = {a.object_id for a in s.query(DataAttachment).filter_by(snapshot_id=snap.id)}
    for manifest in manifests:
        if ObjectId.of(manifest.raw) not in have:
            attach_data(archive, ref_text, manifest)


def _architecture(archive: Archive, manifest: SnapshotManifest) -> dict[str, Any]:
    """Derived from the received config.json, so a sender cannot make the catalog disagree with the weights."""
    entry = next((f for f in manifest.files if f.path == "config.json"), None)
    if entry is None or entry.size > MAX_CONFIG_BYTES:
        return {}
    data = b"".join(bytes(archive.store.get(c.id)) for c in file_chunks(entry))
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return architecture_from_config(doc) if isinstance(doc, dict) else {}


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _string(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise UsageError(f"snapshot offer: {name} must be a non-empty string")
    return value


MAX_OBJECT_BYTES = MAX_CHUNK_BYTES  # ingest writes 8 MiB chunks; manifests of huge models stay far below this
MAX_CODEC_OVERHEAD = 1 << 20  # a stored object is at most its decoded size plus its header and this much


def receive_object(
    archive: Archive,
    oid: ObjectId,
    blob: bytes | bytearray,
    *,
    write: Callable[[Callable[[], None]], None] | None = None,
    holder: str | None = None,
) -> bytes | bytearray:
    """Store an object sent as stored bytes, refusing it unless it decodes to exactly ``oid``; its decoded bytes.

    The header's declared raw size is bounded before decoding, so a small upload cannot expand into gigabytes.
    With ``holder`` (a server receiving a push), the object is leased to that pusher before it is written, both
    under the store's shared lock, so a gc can never see the object without its lease.
    """
    header = unpack_header(blob, f"object {oid}")
    if header.raw_length > MAX_OBJECT_BYTES:
        raise PayloadTooLargeError(
            f"object {oid} declares {header.raw_length} bytes; the limit is {MAX_OBJECT_BYTES}"
        )
    if holder is None:
        return archive.store.put_stored(oid, blob, write=write)
    writes: list[Callable[[], None]] = []
    raw = archive.store.put_stored(oid, blob, write=writes.append)  # decoded and verified, not yet written
    with archive.store.lock(exclusive=False):
        lease_objects(archive, [oid], holder)
        for store in writes:
            store()
    return raw


LEASE_TTL = dt.timedelta(hours=1)


def lease_objects(archive: Archive, object_ids: Iterable[str], holder: str) -> None:
    """Keep ``object_ids`` from gc for ``LEASE_TTL`` on behalf of a push in flight (registry/leases.py)."""
    with archive.catalog.session() as s:
        take_leases(s, object_ids, holder, LEASE_TTL)


def check_push(archive: Archive, offer: SnapshotOffer, holder: str) -> list[ObjectId]:
    """Before weights move: the signer is trusted and the manifest is sane; the objects still to send.

    The objects this archive already has are leased to ``holder`` under the shared store lock, so the answer
    "you need not send these" stays true until the commit (or the lease expires).
    """
    with archive.store.lock(exclusive=False):
        manifest, _fingerprint, _bundles = check_offer(archive, offer)
        needed = objects_of(offer, manifest)
        present = [oid for oid in needed if archive.store.has(oid)]
        lease_objects(archive, present, holder)
    have = set(present)
    return [oid for oid in needed if oid not in have]
