"""The archive: one home folder holding an object store, a catalog and signing keys, and every operation on them.

Ordering rules that keep the archive consistent when a process dies at any instant:
- objects are written and synced before any catalog row that mentions them is committed;
- a snapshot, its files, its objects, its signature and its tag are committed in one transaction;
- gc holds the store lock exclusively, pushes hold it shared, so gc never frees what a push is using.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelarc.archive.formats.describe import parameter_counts, read_architecture
from modelarc.archive.ingest import IngestResult, ingest, list_source_files, total_size
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.provenance.withdrawal import kept_files
from modelarc.archive.restore import file_chunks, iter_chunk_bytes, restore
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.bundles import FileDigest, sign_snapshot, verify_bundle
from modelarc.config import Settings, load_settings
from modelarc.errors import (
    IntegrityError,
    ModelarcError,
    NotInitializedError,
    ObjectCorruptError,
    ObjectMissingError,
    SignatureError,
    SigningKeyError,
    UsageError,
    WithdrawnError,
)
from modelarc.registry import keys as key_rows
from modelarc.registry import queries as q
from modelarc.registry.datasets import snapshot_datasets
from modelarc.registry.db import Catalog
from modelarc.registry.keys import KeyInfo
from modelarc.registry.leases import leased_object_ids
from modelarc.registry.models import Snapshot
from modelarc.registry.recording import NewSignature, SnapshotRecording, record_snapshot
from modelarc.registry.records import NewFile, NewSnapshot, NewTensor, ObjectRecord, Provenance
from modelarc.registry.refs import Ref, check_tag, parse_ref
from modelarc.registry.snapshot_search import format_cutoff_value
from modelarc.storage import ObjectId, ObjectStore

Progress = Callable[[int], None]
RELATIONS = ("finetune", "quantized", "merge", "adapter", "distilled", "continued-pretrain")
SIGNING_KEY_FILE = "signing-key.pem"


@dataclass(frozen=True)
class PushResult:
    ref: str
    snapshot: str
    logical_bytes: int
    stored_bytes_added: int
    new_snapshot: bool
    previous: str | None  # the snapshot the tag pointed at before, if any
    files: int
    tensors: int
    seconds: float


@dataclass(frozen=True)
class PullResult:
    ref: str
    snapshot: str
    dest: str
    files: int
    bytes: int
    signature: str | None
    key_fingerprint: str
    seconds: float


@dataclass(frozen=True)
class VerifyReport:
    snapshot: str
    ref: str
    files: int
    bytes: int
    key_fingerprint: str
    withdrawn: bool = False


@dataclass
class FsckReport:
    objects_checked: int = 0
    bytes_checked: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)  # object id -> snapshots that need it
    corrupt: dict[str, list[str]] = field(default_factory=dict)
    unreferenced: int = 0
    broken_snapshots: list[str] = field(default_factory=list)
    temp_files: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.broken_snapshots)


@dataclass(frozen=True)
class GcReport:
    objects_removed: int
    bytes_freed: int
    temp_files_removed: int
    objects_kept: int


@dataclass(frozen=True)
class SnapshotView:
    """Everything ``show`` prints about one snapshot."""

    model: str
    snapshot: str
    tags: list[str]
    created_at: str
    logical_bytes: int
    stored_bytes_added: int
    file_count: int
    tensor_count: int
    parameter_count: int
    dtypes: dict[str, int]
    architecture: dict[str, Any]
    cutoff: str | None
    license: str | None
    description: str | None
    source_url: str | None
    pushed_by: str | None
    parents: list[dict[str, str]]
    files: list[dict[str, Any]]
    signatures: list[dict[str, str]]
    withdrawn: dict[str, str] | None = None  # {"at": ..., "reason": ...} once tombstoned
    release_date: str | None = None
    datasets: list[dict[str, Any]] = field(default_factory=list)


def refuse_if_withdrawn(snap: Snapshot, label: str) -> None:
    if snap.tombstoned_at is not None:
        raise WithdrawnError(
            f"{label} ({snap.digest[:19]}) was withdrawn on {snap.tombstoned_at:%Y-%m-%d}: {snap.tombstone_reason}; "
            "its provenance is kept (modelarc show) but its weights are not handed out"
        )


def format_cutoff(snap: Snapshot) -> str | None:
    return format_cutoff_value(snap.cutoff, snap.cutoff_precision)


def parse_cutoff(text: str) -> tuple[dt.date, str]:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` -> (first day of that period, precision)."""
    try:
        parts = [int(p) for p in text.split("-")]
        if len(parts) == 1 and len(text) == 4:
            return dt.date(parts[0], 1, 1), "year"
        if len(parts) == 2 and len(text) == 7:
            return dt.date(parts[0], parts[1], 1), "month"
        if len(parts) == 3 and len(text) == 10:
            return dt.date(parts[0], parts[1], parts[2]), "day"
    except ValueError:
        pass
    raise UsageError(f"invalid date {text!r}: expected YYYY, YYYY-MM or YYYY-MM-DD")


class Archive:
    """A modelarc home. Open with ``Archive.open()``; create with ``Archive.init()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ObjectStore.open_local(settings.store_path)
        self.catalog = Catalog(settings.database_url)

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def init(cls, home: str | os.PathLike[str] | None = None) -> tuple[Archive, bool]:
        """Create the home, the store, the catalog schema and a signing key; safe to run again."""
        settings = load_settings(home)
        settings.store_path.mkdir(parents=True, exist_ok=True)
        settings.keys_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        archive = cls(settings)
        key_path = settings.keys_path / SIGNING_KEY_FILE
        created = False
        if not key_path.exists():
            keyring.write_private_key(keyring.generate_private_key(), key_path)
            created = True
        pem = keyring.public_key_pem(keyring.load_private_key(key_path))
        archive._register_key(pem, label="local signing key", local=True, actor=settings.actor)
        return archive, created

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Archive:
        settings = load_settings(home)
        if not settings.store_path.is_dir():
            raise NotInitializedError(f"no modelarc archive at {settings.home}; run `modelarc init` first")
        return cls(settings)

    def close(self) -> None:
        self.catalog.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- keys
    def _private_key(self) -> Any:
        path = self.settings.keys_path / SIGNING_KEY_FILE
        if not path.exists():
            raise SigningKeyError(f"no signing key at {path}; run `modelarc init`")
        return keyring.load_private_key(path)

    def public_key_pem(self) -> bytes:
        return keyring.public_key_pem(self._private_key())

    def _register_key(self, pem: bytes, *, label: str | None, local: bool, actor: str) -> KeyInfo:
        with self.catalog.session() as s:
            return key_rows.trust_key(
                s, keyring.key_fingerprint(pem), pem.decode(), label=label, local=local, actor=actor
            )

    def import_key(self, pem: bytes, label: str | None = None) -> str:
        keyring.load_public_key_pem(pem)
        return self._register_key(pem, label=label, local=False, actor=self.settings.actor).fingerprint

    def set_key_trust(self, fingerprint_prefix: str, trusted: bool) -> str:
        with self.catalog.session() as s:
            return key_rows.set_trust(s, fingerprint_prefix, trusted, self.settings.actor)

    def list_keys(self) -> list[KeyInfo]:
        with self.catalog.session() as s:
            return key_rows.list_keys(s)

    def trusted_pems(self) -> list[bytes]:
        with self.catalog.session() as s:
            return key_rows.trusted_pems(s)

    # ----------------------------------------------------------------- push
    def push(
        self,
        source: str | os.PathLike[str],
        ref_text: str,
        provenance: Provenance | None = None,
        *,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
        follow_symlinks: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> PushResult:
        """Archive ``source`` as ``ref_text``; symlinks out of ``source`` are refused unless ``follow_symlinks``,
        and what is left out (e.g. a symlinked folder) is reported through ``warn``."""
        started = time.perf_counter()
        ref = parse_ref(ref_text)
        if ref.digest:
            raise UsageError(f"push needs a tag to point at the new snapshot, not a digest: {ref_text}")
        provenance = provenance or Provenance()
        for _parent, relation in provenance.parents:
            if relation not in RELATIONS:
                raise UsageError(f"unknown relation {relation!r}; one of {', '.join(RELATIONS)}")
        parent_refs = [(parse_ref(text), rel) for text, rel in provenance.parents]
        with self.catalog.session() as s:  # fail on a bad parent before reading gigabytes
            for pref, _rel in parent_refs:
                q.resolve_ref(s, pref)
        key = self._private_key()
        files = list_source_files(Path(source), follow_symlinks=follow_symlinks, warn=warn)
        if on_total:
            on_total(total_size(files))
        with self.store.lock(exclusive=False):
            result = ingest(source, self.store, progress, files=files)
            manifest = result.manifest
            snapshot_id = manifest.snapshot_id
            manifest_put = self.store.put(manifest.canonical_bytes())
            if "sha256:" + manifest_put.id != snapshot_id:
                raise IntegrityError("manifest object id does not match the snapshot id")  # cannot happen
            bundle = sign_snapshot(
                [FileDigest(f.path, f.sha256) for f in manifest.files], snapshot_id, key, model_name=ref.model
            )
            bundle_put = self.store.put(bundle)
            self.store.sync()  # every object is durable before the catalog mentions it
            fingerprint = keyring.key_fingerprint(keyring.public_key_pem(key))
            record = self._snapshot_record(result, files, provenance, manifest_put.id, bundle_put.id)
            objects = [ObjectRecord(o.id, o.raw_size, o.stored_size, o.codec) for o in result.objects] + [
                ObjectRecord(p.id, p.raw_size, p.stored_size, p.codec) for p in (manifest_put, bundle_put)
            ]
            with self.catalog.session() as s:
                recorded = record_snapshot(
                    s,
                    SnapshotRecording(
                        model=Ref(ref.namespace, ref.name, tag=ref.tag or "latest"),
                        snapshot=record,
                        objects=objects,
                        signatures=[NewSignature(bundle_put.id, bundle.decode(), fingerprint)],
                        actor=self.settings.actor,
                        action="push",
                        parents=[(pref, rel) for pref, rel in parent_refs],
                        merge_into_existing=False,  # a re-push of known bytes keeps the snapshot as it was
                        audit_details={"stored_bytes_added": record.stored_bytes_added},
                    ),
                )
        return PushResult(
            ref=str(ref),
            snapshot=snapshot_id,
            logical_bytes=manifest.logical_bytes,
            stored_bytes_added=record.stored_bytes_added,
            new_snapshot=recorded.created,
            previous=recorded.previous,
            files=len(manifest.files),
            tensors=sum(1 for _ in manifest.tensors()),
            seconds=time.perf_counter() - started,
        )

    def _snapshot_record(
        self,
        result: IngestResult,
        files: list[tuple[str, Path]],
        provenance: Provenance,
        manifest_oid: str,
        bundle_oid: str,
    ) -> NewSnapshot:
        manifest = result.manifest
        params, dtypes = parameter_counts(manifest)
        new_files = catalog_files(manifest)
        added = result.stored_bytes_added
        return NewSnapshot(
            digest=manifest.snapshot_id,
            logical_bytes=manifest.logical_bytes,
            stored_bytes_added=added,
            files=new_files,
            parameter_count=params,
            dtypes=dtypes,
            architecture=read_architecture(files),
            object_ids=frozenset(manifest.object_ids() | {manifest_oid, bundle_oid}),
            provenance=provenance,
            pushed_by=self.settings.actor,
        )

    # ----------------------------------------------------------------- read side
    def resolve(self, ref_text: str) -> tuple[Ref, Snapshot]:
        ref = parse_ref(ref_text)
        with self.catalog.session() as s:
            snap = q.resolve_ref(s, ref)
            return ref, snap

    def manifest(self, snap: Snapshot) -> SnapshotManifest:
        """The manifest from the store, verified against the snapshot id."""
        return self.manifest_by_id(snap.digest)

    def manifest_by_id(self, digest: str) -> SnapshotManifest:
        oid = ObjectId(digest)
        try:
            data = self.store.get(oid)
        except (ObjectMissingError, ObjectCorruptError) as exc:
            raise type(exc)(f"manifest of snapshot {digest}: {exc}") from None
        return SnapshotManifest.from_bytes(bytes(data), expected_id=digest)

    def _verify_signature(self, snap: Snapshot, manifest: SnapshotManifest) -> tuple[str, bytes]:
        """Check the snapshot's bundle against trusted keys and the manifest; returns (key fingerprint, bundle)."""
        # read from the store, not the catalog copy: the store is the archive of record and get() re-hashes
        bundles = [bytes(self.store.get(ObjectId(oid))) for oid in self.signature_object_ids(snap)]
        return check_bundles(bundles, manifest, snap.digest, self.trusted_pems())

    def check_signature(self, snap: Snapshot) -> str:
        """The fingerprint of the trusted key whose signature covers this snapshot; ``SignatureError`` otherwise."""
        return self._verify_signature(snap, self.manifest(snap))[0]

    def signature_object_ids(self, snap: Snapshot) -> list[str]:
        with self.catalog.session() as s:
            return key_rows.signature_object_ids(s, snap.id)

    def pull(
        self,
        ref_text: str,
        dest: str | os.PathLike[str],
        *,
        force: bool = False,
        signature_path: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
        on_total: Callable[[int], None] | None = None,
    ) -> PullResult:
        started = time.perf_counter()
        ref, snap = self.resolve(ref_text)
        refuse_if_withdrawn(snap, str(ref))
        manifest = self.manifest(snap)
        fingerprint, bundle = self._verify_signature(snap, manifest)
        if on_total:
            on_total(manifest.logical_bytes)
        sig_target = Path(signature_path) if signature_path else None
        if sig_target is not None and sig_target.exists() and not force and not _holds(sig_target, bundle):
            raise UsageError(f"{sig_target} already exists; use --force to overwrite")
        with self.store.lock(exclusive=False):
            # resume: files already in place that match are kept, so a re-run after an interruption needs no --force
            restore(self.store, manifest, dest, force=force, progress=progress, resume=True)
        if sig_target is not None:
            write_atomic(sig_target, bundle)
        return PullResult(
            ref=str(ref),
            snapshot=snap.digest,
            dest=str(Path(dest).absolute()),
            files=len(manifest.files),
            bytes=manifest.logical_bytes,
            signature=str(sig_target) if sig_target else None,
            key_fingerprint=fingerprint,
            seconds=time.perf_counter() - started,
        )

    def verify(self, ref_text: str, progress: Progress | None = None) -> VerifyReport:
        """Re-read every byte of a snapshot: manifest hash, signature, every object, every file's sha256."""
        ref, snap = self.resolve(ref_text)
        return self._verify_snapshot(snap, str(ref), progress)

    def _verify_snapshot(self, snap: Snapshot, label: str, progress: Progress | None) -> VerifyReport:
        import hashlib
        from concurrent.futures import ThreadPoolExecutor

        manifest = self.manifest(snap)
        fingerprint, _bundle = self._verify_signature(snap, manifest)
        total = 0
        # a withdrawn snapshot keeps only its small files; its manifest and signature were checked above
        files = kept_files(manifest) if snap.tombstoned_at is not None else manifest.files
        with ThreadPoolExecutor(max_workers=2) as pool:
            for entry in files:
                sha = hashlib.sha256()
                size = 0
                for data in iter_chunk_bytes(self.store, file_chunks(entry), pool):
                    sha.update(data)
                    size += len(data)
                    if progress:
                        progress(len(data))
                if size != entry.size or sha.hexdigest() != entry.sha256:
                    raise IntegrityError(f"{label}: {entry.path} does not rebuild to its recorded sha256")
                total += size
        return VerifyReport(
            snap.digest, label, len(files), total, fingerprint, snap.tombstoned_at is not None
        )

    def verify_all(
        self, progress: Progress | None = None
    ) -> tuple[list[VerifyReport], list[tuple[str, str]]]:
        with self.catalog.session() as s:
            snaps = [(sn, f"{sn.model.full_name}@{sn.digest[:19]}") for sn in q.list_snapshots(s)]
        ok, failed = [], []
        for snap, label in snaps:
            try:
                ok.append(self._verify_snapshot(snap, label, progress))
            except ModelarcError as exc:
                failed.append((label, str(exc)))
        return ok, failed

    # ----------------------------------------------------------------- maintenance
    def fsck(self, progress: Progress | None = None) -> FsckReport:
        """Re-read and re-hash every object in the store; name what is missing or corrupt and what it breaks."""
        report = FsckReport()
        with self.catalog.session() as s:
            referenced = q.referenced_object_ids(s)
            snaps = q.list_snapshots(s)
        present: set[str] = set()
        for oid in self.store.iter_ids():
            present.add(oid)
            try:
                data = self.store.get(oid)
                report.bytes_checked += len(data)
            except (ObjectCorruptError, ObjectMissingError) as exc:
                report.corrupt[oid] = [str(exc)]
            report.objects_checked += 1
            if progress:
                progress(1)
        for oid in referenced - present:
            report.missing[oid] = []
        report.unreferenced = len(present - referenced)
        bad = set(report.missing) | set(report.corrupt)
        with self.catalog.session() as s:
            users = q.snapshots_using(s, bad)
            broken = set()
            for oid, snap_list in users.items():
                names = sorted(f"{sn.model.full_name}@{sn.digest}" for sn in snap_list)
                target = report.missing if oid in report.missing else report.corrupt
                target[oid] = names
                broken.update(names)
        for (
            snap
        ) in snaps:  # a manifest that no longer parses breaks its snapshot even if every object is fine
            if snap.digest.removeprefix("sha256:") in bad:
                continue
            try:
                self.manifest(snap)
            except ModelarcError:
                broken.add(f"{snap.model.full_name}@{snap.digest}")
        report.broken_snapshots = sorted(broken)
        report.temp_files = self.store.temp_count()
        return report

    def gc(self, *, dry_run: bool = False) -> GcReport:
        """Delete objects no snapshot references. Refuses to run while any push or pull holds the store."""
        with self.store.lock(exclusive=True, wait=False):
            present = set(self.store.iter_ids())
            removed, freed = self.delete_unreferenced(present, dry_run=dry_run)
            temp_removed = 0
            if not dry_run:
                temp_removed = self.store.clean_tmp(time.time())  # no writer can be running: we hold the lock
                with self.catalog.session() as s:
                    q.audit(s, self.settings.actor, "gc", "store", objects_removed=removed, bytes_freed=freed)
        return GcReport(removed, freed, temp_removed, len(present) - removed)

    def delete_unreferenced(self, candidates: set[str], *, dry_run: bool = False) -> tuple[int, int]:
        """The one deletion path (gc, withdrawal): of ``candidates``, delete those no snapshot references and no
        push in flight has leased; (objects removed, stored bytes freed). The caller holds the exclusive lock.

        Catalog rows go first: a crash between leaves orphan files for the next gc, never rows without files.
        """
        with self.catalog.session() as s:
            doomed = sorted(candidates - q.objects_in_use(s, candidates) - leased_object_ids(s))
        sizes = {}
        for oid in doomed:
            try:
                sizes[oid] = self.store.stored_size(ObjectId(oid))
            except ObjectMissingError:
                sizes[oid] = 0
        if dry_run:
            return len(doomed), sum(sizes.values())
        with self.catalog.session() as s:
            q.delete_object_rows(s, doomed)
        for oid in doomed:
            self.store.delete(ObjectId(oid))
        return len(doomed), sum(sizes.values())

    # ----------------------------------------------------------------- catalog views
    def tag(self, ref_text: str, new_tag: str) -> tuple[str, str | None]:
        ref = parse_ref(ref_text)
        check_tag(new_tag)
        with self.catalog.session() as s:
            snap = q.resolve_ref(s, ref)
            model = q.require_model(s, ref.namespace, ref.name)
            previous = q.move_tag(s, model, new_tag, snap, self.settings.actor)
            q.audit(
                s,
                self.settings.actor,
                "tag",
                f"{ref.model}:{new_tag}",
                snapshot=snap.digest,
                previous=previous,
            )
            return snap.digest, previous

    def log(self, model_name: str) -> dict[str, Any]:
        from modelarc.registry.refs import parse_model_name

        ns, name = parse_model_name(model_name)
        with self.catalog.session() as s:
            model = q.require_model(s, ns, name)
            snaps = q.list_snapshots(s, model)
            tags = q.tags_by_snapshot(s, [sn.id for sn in snaps])
            digests = {sn.id: sn.digest for sn in snaps}
            return {
                "model": model.full_name,
                "snapshots": [
                    {
                        "snapshot": sn.digest,
                        "tags": tags.get(sn.id, []),
                        "created_at": sn.created_at.isoformat(timespec="seconds"),
                        "pushed_by": sn.pushed_by,
                        "logical_bytes": sn.logical_bytes,
                        "stored_bytes_added": sn.stored_bytes_added,
                    }
                    for sn in snaps
                ],
                "tag_moves": [
                    {
                        "tag": h.tag,
                        "from": digests.get(h.old_snapshot_id) if h.old_snapshot_id else None,
                        "to": digests.get(h.new_snapshot_id),
                        "at": h.moved_at.isoformat(timespec="seconds"),
                        "actor": h.actor,
                    }
                    for h in q.tag_history(s, model)
                ],
            }

    def show(self, ref_text: str) -> SnapshotView:
        ref, snap = self.resolve(ref_text)
        with self.catalog.session() as s:
            snap = s.merge(snap)
            tags = q.tags_by_snapshot(s, [snap.id]).get(snap.id, [])
            parents = [
                {"model": p.model.full_name, "snapshot": p.digest, "relation": rel}
                for p, rel in q.parents_of(s, snap)
            ]
            files = [
                {"path": f.path, "size": f.size, "sha256": f.sha256, "kind": f.kind}
                for f in q.snapshot_files(s, snap)
            ]
            sigs = [
                {
                    "key": sig.key.fingerprint,
                    "trusted": "yes" if sig.key.trusted else "no",
                    "created_at": sig.created_at.isoformat(timespec="seconds"),
                }
                for sig in snap.signatures
            ]
            return SnapshotView(
                model=ref.model,
                snapshot=snap.digest,
                tags=tags,
                created_at=snap.created_at.isoformat(timespec="seconds"),
                logical_bytes=snap.logical_bytes,
                stored_bytes_added=snap.stored_bytes_added,
                file_count=snap.file_count,
                tensor_count=snap.tensor_count,
                parameter_count=snap.parameter_count,
                dtypes=dict(snap.dtypes),
                architecture=dict(snap.architecture),
                cutoff=format_cutoff(snap),
                license=snap.license,
                description=snap.description,
                source_url=snap.source_url,
                pushed_by=snap.pushed_by,
                parents=parents,
                files=files,
                signatures=sigs,
                release_date=snap.release_date.isoformat() if snap.release_date else None,
                datasets=snapshot_datasets(s, snap.id),
                withdrawn=(
                    {
                        "at": snap.tombstoned_at.isoformat(timespec="seconds"),
                        "reason": snap.tombstone_reason or "",
                    }
                    if snap.tombstoned_at is not None
                    else None
                ),
            )

    def stats(self) -> dict[str, Any]:
        with self.catalog.session() as s:
            st = q.catalog_stats(s)
        on_disk = 0
        for oid in self.store.iter_ids():
            try:
                on_disk += self.store.stored_size(oid)
            except ObjectMissingError:
                pass
        return {
            "models": st.models,
            "snapshots": st.snapshots,
            "objects": st.objects,
            "logical_bytes": st.logical_bytes,
            "unique_bytes": st.unique_raw_bytes,
            "stored_bytes": st.stored_bytes,
            "store_bytes_on_disk": on_disk,
            "dedup_ratio": (st.logical_bytes / st.unique_raw_bytes) if st.unique_raw_bytes else None,
            "compression_ratio": (st.stored_bytes / st.unique_raw_bytes) if st.unique_raw_bytes else None,
            "overall_ratio": (st.stored_bytes / st.logical_bytes) if st.logical_bytes else None,
        }

    def iter_snapshot_labels(self) -> Iterator[str]:
        with self.catalog.session() as s:
            for sn in q.list_snapshots(s):
                yield f"{sn.model.full_name}@{sn.digest}"


def catalog_files(manifest: SnapshotManifest) -> tuple[NewFile, ...]:
    """The per-file and per-tensor rows the catalog keeps for queries, from a manifest."""
    return tuple(
        NewFile(
            path=f.path,
            size=f.size,
            sha256=f.sha256,
            kind=f.kind,
            tensors=tuple(
                NewTensor(p.name or "", p.dtype or "", tuple(p.shape or ()), p.offset, p.length, p.digest)
                for p in f.tensors()
            ),
        )
        for f in manifest.files
    )


def check_bundles(
    bundles: list[bytes], manifest: SnapshotManifest, digest: str, trusted: list[bytes]
) -> tuple[str, bytes]:
    """The first bundle that verifies against a trusted key and signs exactly this manifest's files.

    Returns (key fingerprint, bundle); raises ``SignatureError`` naming what was wrong with each bundle.
    """
    if not bundles:
        raise SignatureError(f"snapshot {digest} has no signature")
    errors = []
    for bundle in bundles:
        try:
            verified = verify_bundle(bundle, trusted)
        except SignatureError as exc:
            errors.append(str(exc))
            continue
        # files model_signing never hashes (.git*, the bundle itself) are covered by the snapshot id instead
        expected = {f.path: f.sha256 for f in manifest.files if not verified.ignores(f.path)}
        if verified.files != expected:
            errors.append("signed file digests do not match the manifest")
            continue
        if verified.snapshot_id not in (None, digest):
            errors.append(f"signature is for snapshot {verified.snapshot_id}")
            continue
        return verified.key_fingerprint, bundle
    raise SignatureError(f"snapshot {digest}: no valid signature from a trusted key ({'; '.join(errors)})")


def _holds(path: Path, data: bytes) -> bool:
    """Whether the regular file at ``path`` already holds exactly ``data`` (a resumed pull keeps it)."""
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file beside the target, fsync, rename: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.modelarc-partial")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
