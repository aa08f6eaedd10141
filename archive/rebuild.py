"""``modelarc rebuild-catalog``: a lost catalog rebuilt from the store alone, by replaying its catalog records.

Every record (archive/records.py, docs/FORMAT.md "Catalog records") is read and re-hashed against its name first:
one damaged record stops the rebuild before anything is written, naming it. Then, into an empty catalog and in one
transaction, each record is replayed in name order, except that none goes before the record that creates what it
names (a child after its parents: archive/record_order.py), through the functions the live command used (a push's
``record_snapshot``, ``apply_tag``, ``apply_withdrawal``, ``apply_attachment``, ``trust_key``, ``add_run``,
``apply_policy``, ``apply_grant``), with its original time and actor. A snapshot is recorded only after its manifest
re-hashes to its id, a bundle verifies against a key trusted at that point of the replay, and every object it needs
is in the store (weights excepted for a snapshot withdrawn by a later record that itself replays); a record that
fails is reported with the reason and left out, as is anything that names what it left out, and a second record of
one run, attachment or grant (two records of one fact make one: a copy, or a planted duplicate). Each replayed
record is noted as written by this archive (registry/written_records.py), so ``repair`` may put it back from a
mirror later.
Every file of a snapshot whose weights are present is rebuilt from its chunks and must hash to the manifest's
sha256 and list the tensors its header lists, as a received commit's must: a rebuild reads every byte of the store's
snapshots, as ``fsck --read-data`` does.

Anyone who can write the store can write records (docs/SECURITY.md), so a snapshot record's own word is taken only
for what cannot be checked (its time, actor, pusher, provenance, bytes added): it is recorded with only the
signatures that verify, each under the key that verified it, and with the sizes, parameters, dtypes and
architecture its manifest and config.json give, as a received commit is (archive/snapshot_figures.py); where the
record said otherwise, the report notes it. A record named more than ``CLOCK_SLACK`` after this machine's clock is
refused: it would sort after, and so override, every real change made until then.

Not recovered: API tokens (so grants to ``token:<id>`` come back revoked; grants to a token name stand), access
requests, the mirrors list, scrub results, leases and store locks, and the audit log beyond one entry per replayed
record (the actions that kept no record, such as gc, imports' details or mirror syncs, are gone).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelarc.archive.deltas import base_closure
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.manifest_checks import check_manifest_content, check_manifest_structure
from modelarc.archive.record_order import replay_order
from modelarc.archive.records import CatalogRecord, catalog_time, format_time, parse_time, read_records
from modelarc.archive.repository import apply_tag, check_bundles, signing_bundles
from modelarc.archive.snapshot_figures import snapshot_figures
from modelarc.errors import (
    CatalogNotEmptyError,
    ModelarcError,
    NotFoundError,
    ObjectCorruptError,
    ObjectMissingError,
    RecordError,
    SigningKeyError,
    UsageError,
)
from modelarc.registry import history
from modelarc.registry import keys as key_rows
from modelarc.registry import queries as q
from modelarc.registry import runs as run_rows
from modelarc.registry.db import CatalogSession, savepoint
from modelarc.registry.recording import NewSignature, SnapshotRecording, record_snapshot
from modelarc.registry.records import NewSnapshot, ObjectRecord, Provenance
from modelarc.registry.refs import Ref, SnapshotId, check_tag, parse_model_name
from modelarc.registry.snapshots import parents_of, unrecorded_parents_of
from modelarc.registry.written_records import note_written
from modelarc.storage import ObjectId
from modelarc.storage.store import ObjectInfo

if TYPE_CHECKING:
    from modelarc.archive.manifest import FileEntry
    from modelarc.archive.repository import Archive
    from modelarc.archive.store_lock import StoreLockHandle

Write = Callable[[], None]  # the catalog writes of one record, run only once every check of it has passed
# how far after this machine's clock a record's name may date it (clocks of the machines that wrote the store drift)
CLOCK_SLACK = dt.timedelta(hours=1)


@dataclass
class RebuildReport:
    records: int = 0
    replayed: dict[str, int] = field(default_factory=dict)  # kind -> records replayed
    refused: dict[str, str] = field(default_factory=dict)  # record key -> why it was left out
    notes: list[str] = field(default_factory=list)  # replayed, with something to say (a parent left out, ...)
    # load-cache copies of the snapshots the rebuilt catalog holds withdrawn: removed, and left (path: why)
    cache_removed: list[str] = field(default_factory=list)
    cache_left: list[str] = field(default_factory=list)

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
        replay = _Replay(archive, replay_order(records), report)
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
    _purge_withdrawn(archive, report)
    return report


def _purge_withdrawn(archive: Archive, report: RebuildReport) -> None:
    """Remove the load-cache copies of the snapshots the rebuilt catalog holds withdrawn, as ``rm`` does: a cache that
    outlived its catalog may hold the decoded weights of a snapshot withdrawn before the loss, or since on another
    host, and though no load through this catalog serves them, they would stay on disk (once committed: a failure
    here is reported, never a failed rebuild)."""
    from modelarc.archive.runtime.cache import purge_snapshots

    with archive.catalog.session() as s:
        withdrawn = [snap.digest for snap in q.withdrawn_snapshots(s)]
    purged = purge_snapshots(archive.settings, withdrawn)
    report.cache_removed = [str(p) for p in purged.removed]
    report.cache_left = [f"{p}: {why}" for p, why in purged.left]


@dataclass
class _Staged:
    """What one record's writes add to the replay's own state (objects with a row, snapshots excused some weights,
    the record each fact came from): kept only if its savepoint commits."""

    objects: set[str] = field(default_factory=set)
    excused: dict[tuple[str, SnapshotId], str] = field(default_factory=dict)
    first_record: dict[tuple[Any, ...], str] = field(default_factory=dict)


class _Replay:
    def __init__(self, archive: Archive, records: list[CatalogRecord], report: RebuildReport) -> None:
        self.archive = archive
        self.store = archive.store
        self.records = records  # in replay order (``replay_order``)
        self.position = {r.key: i for i, r in enumerate(records)}
        self.report = report
        self.present = {str(oid) for oid in archive.store.iter_ids()}  # one listing, not a request per object
        self.content_checked: set[str] = set()  # snapshot ids whose files were rebuilt against their manifest
        self.files_checked: set[tuple[object, ...]] = set()  # ``_file_identity`` of each file rebuilt so
        self.catalogued: set[str] = set()  # objects already given a row by an earlier record
        # what a replayed attachment, run or grant was -> the record it came from: a refused second record of it
        # names that one, so whoever reads the report can tell which of the two is the copy or the planted one
        self.first_record: dict[tuple[Any, ...], str] = {}
        self.staged = _Staged()  # what the record being replayed adds to the three above, once its rows are in
        self.latest = catalog_time() + CLOCK_SLACK  # a record named after this is refused (_refuse_if_future)
        # the withdraw records that will replay, should their snapshot be in the catalog by then: their snapshot's
        # weights may be gone already, as they are in the catalog. The checks a withdraw record can fail on its
        # own are run here, so a refused one excuses nothing; ``run`` confirms each excuse held.
        self.withdrawals: list[tuple[int, str, SnapshotId]] = []  # (position in the replay, model, snapshot)
        for r in records:
            if r.kind == "withdraw" and r.written <= self.latest:
                try:
                    ref = _withdrawal(r.body)[0]
                except (ModelarcError, KeyError, TypeError, ValueError, AttributeError):
                    continue
                assert ref.digest is not None
                self.withdrawals.append((self.position[r.key], ref.model, ref.digest))
        self.excused: dict[
            tuple[str, SnapshotId], str
        ] = {}  # snapshot replayed without some weights -> record
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
                self._refuse_if_future(rec)
                write = getattr(self, f"_{rec.kind}")(s, rec)
            except ModelarcError as exc:
                self.report.refused[rec.key] = f"{rec.kind}: {exc}"
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.report.refused[rec.key] = f"{rec.kind}: the record lacks or garbles a field ({exc!r})"
            else:
                self._write(s, rec, write)
            s.flush()
            s.expunge_all()  # rows already written need not stay in memory: a catalog of any size replays
            if progress:
                progress(1)
            # the lock's heartbeat may be shut out by this long transaction (SQLite): refresh it from inside
            if time.monotonic() - confirmed > held.ttl.total_seconds() / 4:
                held.confirm(s)
                confirmed = time.monotonic()
        self._confirm_excuses(s)
        held.confirm(s)  # still ours at the end: no gc can have deleted what was found present

    def _write(self, s: CatalogSession, rec: CatalogRecord, write: Write) -> None:
        """Run a checked record's writes in a savepoint: a record whose rows the catalog cannot hold after all (text
        it cannot store, such as a NUL or a lone surrogate, a value longer than its column) is refused alone, as
        every other failing record is, and what it had added to the replay's own state goes with its rows."""
        notes = len(self.report.notes)
        self.staged = _Staged()
        try:
            with savepoint(s):
                write()
        except ModelarcError as exc:
            del self.report.notes[notes:]
            self.report.refused[rec.key] = f"{rec.kind}: {exc}"
            return
        self.catalogued |= self.staged.objects
        self.excused.update(self.staged.excused)
        for identity, key in self.staged.first_record.items():
            self.first_record.setdefault(identity, key)
        note_written(s, rec.key)  # this catalog now says what it says: repair may put it back
        self.report.replayed[rec.kind] = self.report.replayed.get(rec.kind, 0) + 1

    def _refuse_if_future(self, rec: CatalogRecord) -> None:
        if rec.written > self.latest:
            raise RecordError(
                f"its name dates it {rec.written:%Y-%m-%d %H:%M:%S} UTC, more than {CLOCK_SLACK.total_seconds() / 3600:g} h after "
                f"this machine's clock ({self.latest - CLOCK_SLACK:%Y-%m-%d %H:%M:%S} UTC): a record from the "
                "future would sort after, and override, every real change made until then (if this clock is "
                "wrong, set it right and rebuild again)"
            )

    def _confirm_excuses(self, s: CatalogSession) -> None:
        """Every snapshot replayed without some of its weights is withdrawn by now. The withdraw records were
        checked ahead (``__init__``) with the checks they can fail alone, so this holds; were it ever not to, the
        rebuild stops, writing nothing, rather than list a snapshot whose weights are gone as live."""
        for (model, digest), key in self.excused.items():
            if not q.resolve_snapshot(s, Ref(*parse_model_name(model), digest=digest)).withdrawn:
                raise RecordError(
                    f"{key}: {model}@{digest} was replayed without weights the store lacks, for a withdrawal "
                    "that did not replay; nothing was rebuilt (a bug: please report it)"
                )

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
        from modelarc.archive.weights import weight_object_ids

        b = rec.body
        namespace, name = parse_model_name(b["model"])
        model, digest = f"{namespace}/{name}", SnapshotId(b["snapshot"])
        label = f"{model}@{digest}"
        if b.get("tag") is not None:
            check_tag(b["tag"])
        prov = b["provenance"]
        parents = [
            (Ref(*parse_model_name(p["model"]), digest=SnapshotId(p["snapshot"])), str(p["relation"]))
            for p in b["parents"]
        ]
        self._refuse_if_contradicting(s, model, digest, Provenance.from_json(prov), parents)
        # declared by a first recording whose catalog lacked them: declared here too (recorded if present now)
        parents += [
            (Ref(*parse_model_name(p["model"]), digest=SnapshotId(p["snapshot"])), str(p["relation"]))
            for p in b.get("parents_unrecorded") or []
        ]
        manifest = self.archive.manifest_by_id(digest)  # re-hashed against the snapshot id
        check_manifest_structure(manifest, f"snapshot {label}")
        signatures, offered = self._signatures(s, rec, label, manifest, digest)
        needed = (
            {str(o) for o in manifest.object_ids()} | {digest.hex} | {sig.object_id for sig in signatures}
        )
        missing = needed - self.present
        excused: set[str] = set()
        if missing and self._withdrawn(s, rec, model, digest):
            excused = missing & weight_object_ids(manifest)
        if missing - excused:
            first, *rest = sorted(missing - excused)
            more = f" (and {len(rest)} more)" if rest else ""
            raise ObjectMissingError(
                f"snapshot {label}: object {first}{more} is missing from the store (gc keeps what the store "
                "has of it; `modelarc mirror add` the mirrors and `modelarc repair` fetches what it lacks, then "
                "rebuild-catalog into an empty catalog again brings it back)"
            )
        if not excused:
            self._check_content(manifest, digest, label)
        else:  # withdrawn without some of its weights: the files it keeps whole are checked all the same
            kept = tuple(f for f in manifest.files if all(str(c.id) in self.present for p in f.parts for c in p.chunks))
            self._check_content(SnapshotManifest(kept), digest, label, whole=False)
        object_ids = needed - missing
        infos = self._infos(object_ids)
        # the bases of its delta objects, down their chains, as the headers say: kept with the snapshot
        bases = base_closure(self.store, {i.id: i.delta_base for i in infos}) - object_ids
        objects = _object_rows([i for i in infos if i.id not in self.catalogued])
        objects += _object_rows(self._infos(bases - self.catalogued))
        # what can be derived is, as a received commit derives it: a record cannot make the catalog disagree
        # with the weights (its figures are compared only to say so)
        files = catalog_files(manifest)
        figures = snapshot_figures(self.store, manifest, dict(b.get("architecture") or {}))
        derived_counts = {"file_count": len(files), "tensor_count": sum(len(f.tensors) for f in files)}
        differ = figures.differences(b) + [k for k, v in derived_counts.items() if k in b and b[k] != v]
        recording = SnapshotRecording(
            model=Ref(namespace, name, tag=b.get("tag")),
            snapshot=NewSnapshot(
                digest=digest,
                logical_bytes=figures.logical_bytes,
                stored_bytes_added=int(b["stored_bytes_added"]),
                files=files,
                parameter_count=figures.parameter_count,
                dtypes=figures.dtypes,
                architecture=figures.architecture,
                object_ids=frozenset(object_ids),
                base_object_ids=frozenset(bases),
                provenance=Provenance.from_json(prov),
                pushed_by=b.get("pushed_by"),
            ),
            objects=objects,
            signatures=signatures,
            actor=rec.actor,
            action=str(b["action"]),
            audit_details=_audit_details(b, signatures),
            parents=parents,
            lenient_parents=True,  # a parent whose own record was refused is reported, not fatal
            merge_into_existing=bool(b["merge"]),
            at=rec.at,
            # the store's records are what this archive held: a pair of names that differ only in case was
            # recorded before such pairs were refused, and both come back (noted), as both were kept
            lookalike_allowed=True,
            # and a snapshot claiming the reverse of a parent another declared while the catalog lacked it, which an
            # older modelarc recorded: it comes back; the edge that would close the cycle is left out (noted)
            refuse_declared_cycles=False,
            # and a re-push onto a withdrawn snapshot that an older modelarc recorded (a tag moved onto it) too
            refuse_withdrawn=False,
        )

        def write() -> None:
            if (clash := q.name_clash(s, namespace, name)) is not None:
                self.report.notes.append(
                    f"{rec.key}: kept {model} beside {'namespace ' if clash.namespace_only else ''}{clash.existing}, "
                    "a name that differs only in case "
                    "(recorded before such names were refused)"
                )
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
            self.staged.objects.update(object_ids | bases)
            if excused:
                self.staged.excused[(model, digest)] = rec.key
            if differ:
                self.report.notes.append(
                    f"{rec.key}: {label}: the record's {', '.join(differ)} disagree with the snapshot's manifest "
                    "and config.json; recorded as those say"
                )
            if recorded.parents_missing:
                self.report.notes.append(
                    f"{rec.key}: {label}: parents not in the rebuilt catalog: {', '.join(recorded.parents_missing)}"
                )
            if recorded.parents_refused:
                self.report.notes.append(
                    f"{rec.key}: {label}: lineage to {', '.join(p.label for p in recorded.parents_refused)} not "
                    "recorded: the parent already descends from it (the edge would close a cycle)"
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

        ref, reason, target = _withdrawal(rec.body)
        snap = q.resolve_snapshot(s, ref)
        if snap.withdrawn:
            raise UsageError(f"{ref} was already withdrawn by an earlier record")
        released = released_objects(s, snap, self.archive.manifest_by_id(snap.digest))
        return lambda: apply_withdrawal(s, snap, released, reason, actor=rec.actor, target=target, at=rec.at)

    def _data(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        from modelarc.archive.provenance.data import apply_attachment, new_dataset, parse_data_manifest
        from modelarc.registry.datasets import attachment_recorded

        b = rec.body
        ref = self._snapshot_ref(b)
        snap = q.resolve_snapshot(s, ref)
        oid = ObjectId(b["manifest"])
        # one attachment is one manifest on one snapshot at one time: a second record of it is no second one
        # (the same manifest attached again later is: `data attach` keeps both)
        identity = ("data", snap.row_id, str(oid), rec.at)
        if attachment_recorded(s, snap.row_id, str(oid), rec.at):
            raise RecordError(
                f"data attachment {oid} of {ref} at {format_time(rec.at)} was already replayed from "
                f"{self._earlier(identity)}"
            )
        manifest = parse_data_manifest(
            bytes(self.store.get(oid)), f"training-data manifest {oid}", recorded=True
        )
        datasets = [new_dataset(entry) for entry in manifest.datasets]
        (stored,) = _object_rows(self._infos({oid}))
        target = str(b.get("ref") or ref)

        def write() -> None:
            apply_attachment(s, snap, stored, datasets, actor=rec.actor, target=target, at=rec.at)
            self.staged.objects.add(oid)
            self.staged.first_record[identity] = rec.key

        return write

    def _run(self, s: CatalogSession, rec: CatalogRecord) -> Write:
        """A run whose envelope verifies against a key trusted at this point of the replay, whose signed payload is
        the object the record names, byte for byte, and is a run of the record's snapshot: only then is it a run
        anyone recorded. It is indexed as signed, under the key that verified it (the record's ``key`` is only
        compared, to say so), so `runs` lists what `rerun` checks."""
        from modelarc.archive.runtime.runs import read_signed_run

        b = rec.body
        digest = SnapshotId(b["snapshot"])
        if not q.digest_recorded(s, digest):
            raise RecordError(f"run of snapshot {digest}, which is not in the rebuilt catalog")
        oid = ObjectId(b["object"])
        where = f"run {oid}"
        data = bytes(self.store.get(oid))
        # SignatureError ("does not verify") when no key trusted at this point signed it
        payload, doc, fingerprint = read_signed_run(str(b["signature"]), key_rows.trusted_pems(s), where)
        if payload != data:
            raise RecordError(
                f"{where}: its signature is over another document than the object the record names"
            )
        if doc.get("snapshot") != digest or doc.get("ref") != b["ref"]:
            raise RecordError(
                f"{where}: the signed run is of {str(doc.get('ref'))[:200]!r} ({str(doc.get('snapshot'))[:80]}), "
                f"not of {str(b['ref'])[:200]!r} ({digest}) as the record says"
            )
        if run_rows.run_indexed(s, str(oid)):  # one run is one object: a second record of it is no second run
            raise RecordError(f"{where} was already replayed from {self._earlier(('run', str(oid)))}")
        (stored,) = _object_rows(self._infos({oid}))

        def write() -> None:
            run_rows.add_run(
                s,
                digest=digest,
                ref=str(doc["ref"]),
                actor=rec.actor,
                record=doc,
                stored=stored,
                envelope=str(b["signature"]),
                key_fingerprint=fingerprint,
                at=rec.at,
            )
            self.staged.objects.add(oid)
            self.staged.first_record[("run", str(oid))] = rec.key
            if fingerprint != b["key"]:
                self.report.notes.append(
                    f"{rec.key}: {where} is listed as signed by key {str(b['key'])[:80]} but verifies with key "
                    f"{fingerprint}; recorded as {fingerprint}'s"
                )

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
        # a received snapshot's override: it lapses to the model's policy. Version 2 when it says so; a version 1
        # record saying so (written before version 2) means the same
        received = b.get("received") is True
        return lambda: apply_policy(
            s, model, snap, level, until, reason, actor=rec.actor, at=rec.at, files=files, received=received
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
        found = q.require_model(s, *parse_model_name(model))
        if action not in ("grant", "revoke"):
            raise RecordError(f"grant record of {model}: unknown action {action!r}")
        if action == "grant":  # a second revoke revokes nothing: only a grant can be replayed twice
            self._refuse_second_grant(s, rec, found.row_id, model, subject)
        # API tokens are not recovered, and a new catalog numbers its tokens from 1 again: a grant to token:<id>
        # would go to whoever holds the new token of that id. It is replayed as history, revoked at once.
        by_id = subject.startswith("token:")

        def write() -> None:
            if action == "revoke":
                apply_revoke(s, model, subject, reason, actor=rec.actor, at=rec.at)
                return
            apply_grant(s, model, subject, reason, actor=rec.actor, at=rec.at, request=b.get("request"))
            self.staged.first_record[("grant", found.row_id, subject, rec.at)] = rec.key
            if by_id:
                apply_revoke(
                    s, model, subject, TOKEN_GRANT_LAPSED, actor=self.archive.settings.actor, at=rec.at
                )
                self.report.notes.append(
                    f"{rec.key}: the grant of {model} to {subject} is revoked: {TOKEN_GRANT_LAPSED}"
                )

        return write

    def _earlier(self, identity: tuple[Any, ...]) -> str:
        """The record that replayed ``identity`` first, named ("an earlier record" if this replay did not)."""
        key = self.first_record.get(identity)
        return f"the earlier record {key}" if key else "an earlier record"

    def _refuse_second_grant(
        self, s: CatalogSession, rec: CatalogRecord, model_id: int, model: str, subject: str
    ) -> None:
        """A grant record is refused where the live command refuses the grant (``access grant``: the subject holds
        a live grant on the model) and where it states a grant the rebuilt catalog holds already (the same model,
        subject and time; a grant to ``token:<id>`` is revoked at once, so a live grant does not show it): two
        records of one grant make one."""
        from modelarc.registry import access as access_rows

        for held in access_rows.grants(s, [model_id], subjects=[subject], live_only=False):
            earlier = self._earlier(("grant", model_id, subject, held.granted_at))
            if held.granted_at == rec.at:
                raise RecordError(
                    f"the grant of {model} to {subject} at {format_time(rec.at)} was already replayed from {earlier}"
                )
            if held.live:
                raise RecordError(
                    f"{subject} already holds a live grant on {model}, granted at {format_time(held.granted_at)} "
                    f"by {earlier} (as `access grant` refuses a second one)"
                )

    def _signatures(
        self,
        s: CatalogSession,
        rec: CatalogRecord,
        label: str,
        manifest: SnapshotManifest,
        digest: SnapshotId,
    ) -> tuple[list[NewSignature], dict[str, str]]:
        """The record's bundles that sign this snapshot with a key trusted at this point of the replay (or carried
        by the record), each under the key that verified it, as a received commit keeps them (``check_offer``);
        and the carried keys that signed one, to trust. ``SignatureError`` when none does. A listed signature that
        does not verify, or verifies with another key than the record says, is noted and not recorded as listed."""
        listed = {str(sig["object"]): sig for sig in rec.body["signatures"]}  # a bundle listed twice is one
        ids = list(listed)
        bundles = [bytes(self.store.get(ObjectId(oid))) for oid in ids]
        carried = {str(entry["fingerprint"]): str(entry["public_pem"]) for entry in rec.body["keys"]}
        known = key_rows.public_pems(s, carried)
        offered = dict(self._checked_key(fp, pem) for fp, pem in carried.items() if fp not in known)
        trusted = key_rows.trusted_pems(s) + [pem.encode() for pem in offered.values()]
        signing, errors = signing_bundles(bundles, manifest, digest, trusted)
        if not signing:
            check_bundles(bundles, manifest, digest, trusted)  # raises, saying why each failed
        signatures = []
        for i, fingerprint in signing:
            sig = listed[ids[i]]
            if sig.get("key") != fingerprint:
                self.report.notes.append(
                    f"{rec.key}: {label}: signature {ids[i]} is listed as by key {sig.get('key')} but verifies "
                    f"with key {fingerprint}; recorded as {fingerprint}'s"
                )
            at = parse_time(sig["at"]) if sig.get("at") else None
            signatures.append(NewSignature(ids[i], bundles[i].decode("utf-8"), fingerprint, at=at))
        signed = {i for i, _fp in signing}
        for i, why in zip([i for i in range(len(ids)) if i not in signed], errors, strict=True):
            self.report.notes.append(
                f"{rec.key}: {label}: signature {ids[i]} (listed as by key {listed[ids[i]].get('key')}) is not "
                f"recorded: {why}"
            )
        keys = {sig.key_fingerprint for sig in signatures}
        return signatures, {fp: pem for fp, pem in offered.items() if fp in keys}

    @staticmethod
    def _refuse_if_contradicting(
        s: CatalogSession,
        model: str,
        digest: SnapshotId,
        provenance: Provenance,
        parents: list[tuple[Ref, str]],
    ) -> None:
        """A record of a snapshot the rebuilt catalog holds already states no provenance or parent its first
        record did not: a snapshot's provenance is fixed when it is first recorded, and a live re-push or commit
        that states other is refused (archive/provenance/repush.py), so such a record was not written by one.
        It is refused (a planted record, or one that ``upgrade`` reported as ``CONTRADICTED``)."""
        try:
            existing = q.resolve_snapshot(s, Ref(*parse_model_name(model), digest=digest))
        except NotFoundError:
            return
        held = Provenance(**{f: getattr(existing, f) for f in Provenance.JSON_FIELDS}).to_json()
        differ = [name for name, value in provenance.to_json().items() if value != held.get(name)]
        declared = [*parents_of(s, existing.row_id), *unrecorded_parents_of(s, existing.row_id)]
        recorded = {(p.model, str(p.snapshot), p.relation) for p in declared}
        for ref, relation in parents:
            if (ref.model, str(ref.digest), relation) not in recorded and _holds(s, ref):
                differ.append("parents")  # one the rebuilt catalog lacks could not have been recorded either
                break
        if differ:
            raise RecordError(
                f"{model}@{digest}: its {', '.join('provenance.' + d if d != 'parents' else d for d in differ)} "
                "contradict the snapshot's first record, which the rebuilt catalog holds (a snapshot's provenance "
                "is fixed when it is first recorded): move this record out of records/"
            )

    def _withdrawn(self, s: CatalogSession, rec: CatalogRecord, model: str, digest: SnapshotId) -> bool:
        """Whether snapshot ``model@digest`` is withdrawn in the rebuilt catalog already, or will be by a withdraw
        record after ``rec`` that replays: only then may its weights be missing from the store."""
        here = self.position[rec.key]
        if any(at > here and (m, d) == (model, digest) for at, m, d in self.withdrawals):
            return True
        try:
            return q.resolve_snapshot(s, Ref(*parse_model_name(model), digest=digest)).withdrawn
        except NotFoundError:
            return False

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

    def _check_content(
        self, manifest: SnapshotManifest, digest: SnapshotId, label: str, *, whole: bool = True
    ) -> None:
        """Every file rebuilt from its chunks must hash to the manifest's sha256 and size, and list the tensors its
        header lists, as a received commit's must (archive/manifest_checks.py): a manifest written straight into
        the store may state a sha256 its chunks do not have, which a signature over paths and sha256s would then
        vouch for, and what a catalog records is taken as checked later (a push proving a file unchanged by its
        chunk ids, a commit offering a recorded snapshot). Once per snapshot id, however many records name it;
        ``whole`` False: ``manifest`` holds only some of the snapshot's files (a withdrawn one's kept files), so the
        snapshot id is not counted as checked."""
        if digest.hex in self.content_checked:
            return
        # a file identical in bytes and table to one checked already (the same weights under several snapshots, as
        # a family's configs or a re-tagged model share them) is not rebuilt again
        files = {_file_identity(f): f for f in manifest.files}
        unchecked = [f for key, f in files.items() if key not in self.files_checked]
        try:
            check_manifest_content(self.store, SnapshotManifest(tuple(unchecked)), f"snapshot {label}")
        except ObjectCorruptError as exc:
            raise ObjectCorruptError(
                f"{exc}; its files cannot be checked against the manifest (`modelarc mirror add` the mirrors and "
                "`modelarc repair --read-data` puts back a good copy, then rebuild-catalog into an empty catalog "
                "again brings it back)"
            ) from None
        if whole:
            self.content_checked.add(digest.hex)
        self.files_checked.update(files)

    def _infos(self, ids: set[str]) -> list[ObjectInfo]:
        """Sizes, codec and delta base of each object, from its header (a ranged read each; parallel on S3)."""
        workers = max(1, self.store.backend.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-rebuild") as pool:
            return list(pool.map(lambda oid: self.store.stat(ObjectId(oid)), sorted(ids)))


def _file_identity(f: FileEntry) -> tuple[object, ...]:
    """What a content check of ``f`` depends on (its entry but for its path): equal for files whose check is one."""
    return (f.kind, f.size, f.sha256, f.parts)


def _holds(s: CatalogSession, ref: Ref) -> bool:
    try:
        q.resolve_snapshot(s, ref)
    except NotFoundError:
        return False
    return True


def _object_rows(infos: list[ObjectInfo]) -> list[ObjectRecord]:
    return [ObjectRecord(i.id, i.raw_size, i.stored_size, i.codec, i.delta_base) for i in infos]


def _audit_details(body: dict[str, Any], signatures: list[NewSignature]) -> dict[str, Any]:
    """What the live recording added to its audit entry, as far as the record says it (the key, as verified)."""
    if body["action"] == "push":
        return {"stored_bytes_added": body["stored_bytes_added"]}
    if body["action"] == "transfer.commit" and signatures:
        return {"key": signatures[0].key_fingerprint}
    return {}


def _withdrawal(body: dict[str, Any]) -> tuple[Ref, str, str]:
    """A withdraw record's snapshot, reason and target: the checks it can fail on its own, before the catalog."""
    ref = _Replay._snapshot_ref(body)
    return ref, str(body["reason"]), str(body.get("ref") or ref)
