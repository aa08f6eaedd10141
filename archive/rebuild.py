"""``modelarc rebuild-catalog``: a lost catalog rebuilt from the store alone, by replaying its catalog records.

Every record (archive/records.py, docs/FORMAT.md "Catalog records") is read and re-hashed against its name first:
one damaged record stops the rebuild before anything is written, naming it. Then, into an empty catalog and in one
transaction, each record is replayed in name order through the functions the live command used (a push's
``record_snapshot``, ``apply_tag``, ``apply_withdrawal``, ``apply_attachment``, ``trust_key``, ``add_run``,
``apply_policy``, ``apply_grant``), with its original time and actor. A snapshot is recorded only after its manifest
re-hashes to its id, a bundle verifies against a key trusted at that point of the replay, and every object it needs
is in the store (weights excepted for a snapshot a later record withdraws); a record that fails is reported with the
reason and left out, as is anything that names what it left out. Each replayed record is noted as written by this
archive (registry/written_records.py), so `repair` may put it back from a mirror later. Chunk contents are not re-hashed here (``fsck
--read-data`` or ``scrub`` do that).

Not recovered: API tokens (so grants to ``token:<id>`` come back revoked; grants to a token name stand), access
requests, the mirrors list, scrub results, leases and store locks, and the audit log beyond one entry per replayed
record (the actions that kept no record, such as gc, imports' details or mirror syncs, are gone).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelarc.archive.deltas import base_closure
from modelarc.archive.manifest_checks import check_manifest_structure
from modelarc.archive.records import CatalogRecord, parse_time, read_records
from modelarc.archive.repository import apply_tag, check_bundles
from modelarc.errors import (
    CatalogNotEmptyError,
    ModelarcError,
    ObjectMissingError,
    RecordError,
    SigningKeyError,
    UsageError,
)
from modelarc.registry import history
from modelarc.registry import keys as key_rows
from modelarc.registry import queries as q
from modelarc.registry import runs as run_rows
from modelarc.registry.db import CatalogSession
from modelarc.registry.recording import NewSignature, SnapshotRecording, record_snapshot
from modelarc.registry.records import NewSnapshot, ObjectRecord, Provenance
from modelarc.registry.refs import Ref, SnapshotId, check_tag, parse_model_name
from modelarc.registry.written_records import note_written
from modelarc.storage import ObjectId
from modelarc.storage.store import ObjectInfo

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive
    from modelarc.archive.store_lock import StoreLockHandle

Write = Callable[[], None]  # the catalog writes of one record, run only once every check of it has passed


@dataclass
class RebuildReport:
    records: int = 0
    replayed: dict[str, int] = field(default_factory=dict)  # kind -> records replayed
    refused: dict[str, str] = field(default_factory=dict)  # record key -> why it was left out
    notes: list[str] = field(default_factory=list)  # replayed, with something to say (a parent left out, ...)

    @property
    def ok(self) -> bool:
        return not self.refused

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


def refuse_unless_empty(archive: Archive) -> None:
    with archive.catalog.session() as s:
        counts = history.content_counts(s)
    held = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    if held:
        raise CatalogNotEmptyError(
            f"the catalog ({archive.catalog.display_url}) is not empty ({held}); rebuild-catalog only fills an "
            "empty one: point MODELARC_DATABASE_URL at a new database, or move registry.db aside"
        )


def rebuild_catalog(archive: Archive, progress: Callable[[int], None] | None = None) -> RebuildReport:
    """Replay every record of the store into this archive's catalog, which must be empty (see module docstring)."""
    refuse_unless_empty(archive)
    records = read_records(archive.store.backend)
    report = RebuildReport(records=len(records))
    with archive.lock(exclusive=True, wait=False, purpose="rebuild-catalog") as held:
        refuse_unless_empty(archive)  # another rebuild may have filled it while we took the lock
        replay = _Replay(archive, records, report)
        with archive.catalog.session() as s:
            replay.run(s, held, progress)
            q.audit(
                s,
                archive.settings.actor,
                "rebuild-catalog",
                "catalog",
                records=report.records,
                replayed=report.replayed,
                refused=sorted(report.refused),
            )
    try:  # this home's own key, as `init` registers it, when no record named it (a new home on a copied store)
        archive._register_key(
            archive.public_key_pem(), label="local signing key", local=True, actor=archive.settings.actor
        )
    except SigningKeyError:
        pass
    return report


class _Replay:
    def __init__(self, archive: Archive, records: list[CatalogRecord], report: RebuildReport) -> None:
        self.archive = archive
        self.store = archive.store
        self.records = records
        self.report = report
        self.present = {str(oid) for oid in archive.store.iter_ids()}  # one listing, not a request per object
        self.catalogued: set[str] = set()  # objects already given a row by an earlier record
        # snapshots that a later record withdraws: their weights may be gone already, as they are in the catalog
        self.withdrawn = {
            (r.body.get("model"), r.body.get("snapshot")) for r in records if r.kind == "withdraw"
        }
        try:
            from modelarc.archive.signing import keys as keyring

            self.own_key: str | None = keyring.key_fingerprint(archive.public_key_pem())
        except SigningKeyError:
            self.own_key = None

    def run(self, s: CatalogSession, held: StoreLockHandle, progress: Callable[[int], None] | None) -> None:
        held.confirm(s)
        confirmed = time.monotonic()
        for rec in self.records:
            try:
                write = getattr(self, f"_{rec.kind}")(s, rec)
            except ModelarcError as exc:
                self.report.refused[rec.key] = f"{rec.kind}: {exc}"
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.report.refused[rec.key] = f"{rec.kind}: the record lacks or garbles a field ({exc!r})"
            else:
                write()
                note_written(s, rec.key)  # this catalog now says what it says: repair may put it back
                self.report.replayed[rec.kind] = self.report.replayed.get(rec.kind, 0) + 1
            s.flush()
            s.expunge_all()  # rows already written need not stay in memory: a catalog of any size replays
            if progress:
                progress(1)
            # the lock's heartbeat may be shut out by this long transaction (SQLite): refresh it from inside
            if time.monotonic() - confirmed > held.ttl.total_seconds() / 4:
                held.confirm(s)
                confirmed = time.monotonic()
        held.confirm(s)  # still ours at the end: no gc can have deleted what was found present

    # ------------------------------------------------------------------------------------------ per kind
    def _key(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        b = rec.body
        fingerprint, pem = self._checked_key(b["fingerprint"], b["public_pem"])
        label, trusted = b.get("label"), bool(b["trusted"])

        def write() -> None:
            local = fingerprint == self.own_key
            if trusted or key_rows.find_key(s, fingerprint) is None:
                key_rows.trust_key(s, fingerprint, pem, label=label, local=local, actor=rec.actor, at=rec.at)
            if not trusted:
                key_rows.set_trust(s, fingerprint, False, rec.actor, rec.at)

        return write

    def _snapshot(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        from modelarc.archive.manifest_rows import catalog_files
        from modelarc.archive.provenance.withdrawal import weight_object_ids

        b = rec.body
        namespace, name = parse_model_name(b["model"])
        digest = SnapshotId(b["snapshot"])
        label = f"{b['model']}@{digest}"
        if b.get("tag") is not None:
            check_tag(b["tag"])
        manifest = self.archive.manifest_by_id(digest)  # re-hashed against the snapshot id
        check_manifest_structure(manifest, f"snapshot {label}")
        signatures = list(b["signatures"])
        bundles = [bytes(self.store.get(ObjectId(sig["object"]))) for sig in signatures]
        known = key_rows.public_pems(s, [sig["key"] for sig in signatures])
        offered = {}  # keys this catalog does not know yet, carried by the record
        for entry in b["keys"]:
            if entry["fingerprint"] not in known:
                fingerprint, pem = self._checked_key(entry["fingerprint"], entry["public_pem"])
                offered[fingerprint] = pem
        for sig in signatures:
            if sig["key"] not in known and sig["key"] not in offered:
                raise RecordError(f"snapshot {label}: signed by key {sig['key']}, which no record holds")
        trusted = key_rows.trusted_pems(s) + [pem.encode() for pem in offered.values()]
        check_bundles(bundles, manifest, digest, trusted)
        needed = (
            {str(o) for o in manifest.object_ids()} | {digest.hex} | {sig["object"] for sig in signatures}
        )
        optional = weight_object_ids(manifest) if (b["model"], digest) in self.withdrawn else set()
        missing = sorted(needed - optional - self.present)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ObjectMissingError(f"snapshot {label}: object {missing[0]}{more} is missing from the store")
        object_ids = needed & self.present
        infos = self._infos(object_ids)
        # the bases of its delta objects, down their chains, as the headers say: kept with the snapshot
        bases = base_closure(self.store, {i.id: i.delta_base for i in infos}) - object_ids
        objects = _object_rows([i for i in infos if i.id not in self.catalogued])
        objects += _object_rows(self._infos(bases - self.catalogued))
        prov = b["provenance"]
        recording = SnapshotRecording(
            model=Ref(namespace, name, tag=b.get("tag")),
            snapshot=NewSnapshot(
                digest=digest,
                logical_bytes=int(b["logical_bytes"]),
                stored_bytes_added=int(b["stored_bytes_added"]),
                files=catalog_files(manifest),
                parameter_count=int(b["parameter_count"]),
                dtypes={str(k): int(v) for k, v in b["dtypes"].items()},
                architecture=dict(b["architecture"]),
                object_ids=frozenset(object_ids),
                base_object_ids=frozenset(bases),
                provenance=Provenance.from_json(prov),
                pushed_by=b.get("pushed_by"),
            ),
            objects=objects,
            signatures=[
                NewSignature(
                    sig["object"],
                    bundle.decode(),
                    sig["key"],
                    at=parse_time(sig["at"]) if sig.get("at") else None,
                )
                for sig, bundle in zip(signatures, bundles, strict=True)
            ],
            actor=rec.actor,
            action=str(b["action"]),
            audit_details=_audit_details(b),
            parents=[
                (Ref(*parse_model_name(p["model"]), digest=SnapshotId(p["snapshot"])), str(p["relation"]))
                for p in b["parents"]
            ],
            lenient_parents=True,  # a parent whose own record was refused is reported, not fatal
            merge_into_existing=bool(b["merge"]),
            at=rec.at,
        )

        def write() -> None:
            for fingerprint, pem in offered.items():
                key_rows.trust_key(
                    s,
                    fingerprint,
                    pem,
                    label=None,
                    local=fingerprint == self.own_key,
                    actor=rec.actor,
                    at=rec.at,
                )
                self.report.notes.append(
                    f"{rec.key}: trusted key {fingerprint} as the snapshot record names it"
                )
            recorded = record_snapshot(s, recording)
            self.catalogued.update(object_ids | bases)
            if recorded.parents_missing:
                self.report.notes.append(
                    f"{rec.key}: {label}: parents not in the rebuilt catalog: {', '.join(recorded.parents_missing)}"
                )

        return write

    def _tag(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        b = rec.body
        ref = self._snapshot_ref(b)
        tag = check_tag(b["tag"])
        q.resolve_snapshot(s, ref)  # NotFoundError when its snapshot was left out

        def write() -> None:
            apply_tag(s, ref, tag, rec.actor, rec.at)

        return write

    def _withdraw(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        from modelarc.archive.provenance.withdrawal import apply_withdrawal, released_objects

        b = rec.body
        ref = self._snapshot_ref(b)
        snap = q.resolve_snapshot(s, ref)
        if snap.withdrawn:
            raise UsageError(f"{ref} was already withdrawn by an earlier record")
        released = released_objects(s, snap, self.archive.manifest_by_id(snap.digest))
        reason, target = str(b["reason"]), str(b.get("ref") or ref)
        return lambda: apply_withdrawal(s, snap, released, reason, actor=rec.actor, target=target, at=rec.at)

    def _data(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        from modelarc.archive.provenance.data import apply_attachment, new_dataset, parse_data_manifest

        b = rec.body
        ref = self._snapshot_ref(b)
        snap = q.resolve_snapshot(s, ref)
        oid = ObjectId(b["manifest"])
        manifest = parse_data_manifest(
            bytes(self.store.get(oid)), f"training-data manifest {oid}", recorded=True
        )
        datasets = [new_dataset(entry) for entry in manifest.datasets]
        (stored,) = _object_rows(self._infos({oid}))
        target = str(b.get("ref") or ref)

        def write() -> None:
            apply_attachment(s, snap, stored, datasets, actor=rec.actor, target=target, at=rec.at)
            self.catalogued.add(oid)

        return write

    def _run(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        b = rec.body
        digest = SnapshotId(b["snapshot"])
        if not q.digest_recorded(s, digest):
            raise RecordError(f"run of snapshot {digest}, which is not in the rebuilt catalog")
        oid = ObjectId(b["object"])
        doc = json.loads(bytes(self.store.get(oid)))
        (stored,) = _object_rows(self._infos({oid}))

        def write() -> None:
            run_rows.add_run(
                s,
                digest=digest,
                ref=str(b["ref"]),
                actor=rec.actor,
                record=doc,
                stored=stored,
                envelope=str(b["signature"]),
                key_fingerprint=str(b["key"]),
                at=rec.at,
            )
            self.catalogued.add(oid)

        return write

    def _access(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        from modelarc.archive.access import INHERIT, LEVELS, apply_policy, parse_files

        b = rec.body
        model = str(b["model"])
        q.require_model(s, *parse_model_name(model))  # NotFoundError when its snapshots were all left out
        snap = q.resolve_snapshot(s, self._snapshot_ref(b)) if b.get("snapshot") else None
        level = str(b["level"])
        if level not in LEVELS + (INHERIT,) or (level == INHERIT and snap is None):
            raise RecordError(f"access level {level!r} of {model} is not one this modelarc knows")
        until, reason = (dt.date.fromisoformat(b["until"]) if b.get("until") else None), str(b["reason"])
        files = parse_files(b.get("files") or ())  # a bad pattern is the UsageError any bad record field is
        return lambda: apply_policy(
            s, model, snap, level, until, reason, actor=rec.actor, at=rec.at, files=files
        )

    def _grant(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        from modelarc.archive.access import TOKEN_GRANT_LAPSED, apply_grant, apply_revoke

        b = rec.body
        model, subject, reason, action = (
            str(b["model"]),
            str(b["subject"]),
            str(b["reason"]),
            str(b["action"]),
        )
        q.require_model(s, *parse_model_name(model))
        if action not in ("grant", "revoke"):
            raise RecordError(f"grant record of {model}: unknown action {action!r}")
        # API tokens are not recovered, and a new catalog numbers its tokens from 1 again: a grant to token:<id>
        # would go to whoever holds the new token of that id. It is replayed as history, revoked at once.
        by_id = subject.startswith("token:")

        def write() -> None:
            if action == "revoke":
                apply_revoke(s, model, subject, reason, actor=rec.actor, at=rec.at)
                return
            apply_grant(s, model, subject, reason, actor=rec.actor, at=rec.at, request=b.get("request"))
            if by_id:
                apply_revoke(
                    s, model, subject, TOKEN_GRANT_LAPSED, actor=self.archive.settings.actor, at=rec.at
                )
                self.report.notes.append(
                    f"{rec.key}: the grant of {model} to {subject} is revoked: {TOKEN_GRANT_LAPSED}"
                )

        return write

    # ------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _snapshot_ref(body: dict[str, Any]) -> Ref:
        namespace, name = parse_model_name(body["model"])
        return Ref(namespace, name, digest=SnapshotId(body["snapshot"]))

    @staticmethod
    def _checked_key(fingerprint: str, pem: str) -> tuple[str, str]:
        from modelarc.archive.signing import keys as keyring

        keyring.load_public_key_pem(pem.encode())
        if keyring.key_fingerprint(pem.encode()) != fingerprint:
            raise RecordError(f"key {fingerprint}: the public key in the record has another fingerprint")
        return fingerprint, pem

    def _infos(self, ids: set[str]) -> list[ObjectInfo]:
        """Sizes, codec and delta base of each object, from its header (a ranged read each; parallel on S3)."""
        workers = max(1, self.store.backend.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-rebuild") as pool:
            return list(pool.map(lambda oid: self.store.stat(ObjectId(oid)), sorted(ids)))


def _object_rows(infos: list[ObjectInfo]) -> list[ObjectRecord]:
    return [ObjectRecord(i.id, i.raw_size, i.stored_size, i.codec, i.delta_base) for i in infos]


def _audit_details(body: dict[str, Any]) -> dict[str, Any]:
    """What the live recording added to its audit entry, as far as the record says it."""
    if body["action"] == "push":
        return {"stored_bytes_added": body["stored_bytes_added"]}
    if body["action"] == "transfer.commit" and body["signatures"]:
        return {"key": body["signatures"][0]["key"]}
    return {}
