"""Local push: read a folder once into the store, sign it, and record it in one transaction.

The CLI's `push`, the Hub import (`push hf://...`) and `push ... --remote` (which archives locally first) all come
through ``push_folder``; objects are durable before the catalog mentions them (registry/recording.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelarc.archive.catalog.units import human_bytes
from modelarc.archive.deltas import DeltaBases, base_closure, check_renamed_tensors, delta_bases
from modelarc.archive.formats.describe import parameter_counts
from modelarc.archive.heal import known_damaged, read_back, record_healed
from modelarc.archive.ingest import IngestResult, ObjectWrite, Reused, ingest, list_source_files, total_size
from modelarc.archive.limits import MAX_BUNDLE_BYTES
from modelarc.archive.manifest import FileEntry, SnapshotManifest, file_kind
from modelarc.archive.manifest_rows import catalog_files
from modelarc.archive.own_state import state_places
from modelarc.archive.proven_files import Candidate, prove_unchanged
from modelarc.archive.provenance.dates import refuse_impossible_dates
from modelarc.archive.provenance.text import refuse_unstorable_text
from modelarc.archive.push_index import FileRead, PushIndex
from modelarc.archive.records import record_snapshot
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.bundles import FileDigest, sign_snapshot
from modelarc.archive.snapshot_figures import pushed_architecture
from modelarc.errors import (
    IntegrityError,
    ModelarcError,
    ObjectMissingError,
    SourceError,
    SourceLimitError,
    UsageError,
)
from modelarc.registry import queries as q
from modelarc.registry.recording import NewSignature, SnapshotRecording, refuse_withdrawn
from modelarc.registry.records import RELATIONS, NewSnapshot, ObjectRecord, Provenance
from modelarc.registry.refs import Ref, SnapshotId, parse_ref
from modelarc.storage import ObjectId, ObjectStore, Replacing

if TYPE_CHECKING:
    from modelarc.archive.provenance.data import DataManifest
    from modelarc.archive.repository import Archive

Progress = Callable[[int], None]
# A push SOURCE that starts so is a Hub repository (archive/remote/hf_import.py), anything else a local path
HUB_SCHEME = "hf://"


@dataclass(frozen=True)
class PushResult:
    ref: str
    snapshot: SnapshotId
    logical_bytes: int
    stored_bytes_added: int
    new_snapshot: bool
    previous: str | None  # the snapshot the tag pointed at before, if any
    files: int
    tensors: int
    seconds: float
    delta_base: str | None = None  # the snapshot tensors were tried as deltas against
    delta_objects: int = 0  # chunks this push stored as deltas
    delta_stored_bytes: int = 0  # what they take
    delta_standalone_bytes: int = 0  # what they would have taken stored on their own
    unchanged_files: int = 0  # files not read: unchanged since an earlier push (archive/push_index.py)
    # files read and found to hold an earlier push's bytes by their chunk ids (archive/proven_files.py)
    proven_files: int = 0
    # objects the catalog knew corrupt or missing that this push wrote back from its bytes (archive/heal.py)
    healed: tuple[str, ...] = ()
    # declared parents (unrecorded until now) whose edge was left out: the parent already descends from the snapshot
    lineage_refused: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeltaRequest:
    """How a push stores a fine-tune against its family: by default each tensor is tried as a delta against the
    same tensor of the first ``--parent``."""

    base: str | None = None  # a REF to delta against instead of the first parent
    rename: Mapping[str, str] = field(default_factory=dict)  # new tensor name -> the base's tensor name
    enabled: bool = True


def push_folder(
    archive: Archive,
    source: str | os.PathLike[str],
    ref_text: str,
    provenance: Provenance | None = None,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    follow_symlinks: bool = False,
    warn: Callable[[str], None] | None = None,
    delta: DeltaRequest | None = None,
    rehash: bool = False,
    stated: Provenance | None = None,
) -> PushResult:
    """Archive ``source`` as ``ref_text``; symlinks out of ``source`` are refused unless ``follow_symlinks``,
    and what is left out (e.g. a symlinked folder) is reported through ``warn``. Tensors are tried as deltas
    against a parent as ``delta`` says (archive/deltas.py). A file unchanged since an earlier push (by the push
    index's rules, archive/push_index.py) is not read again unless ``rehash``. An object the catalog knows to be
    corrupt or missing, or whose stored copy a put finds unreadable, that the push holds the bytes of is written
    back in place of the damaged copy (archive/heal.py).

    A re-push of bytes the model already holds is refused if it states provenance the record does not say
    (archive/provenance/repush.py). ``stated`` is what the user stated, when ``provenance`` holds more that the
    caller derived (a Hub import's source URL, the card's license and base_model, a "possibly partial" note): that is
    recorded by a first push only, and a re-push of the same bytes keeps the record as it is, since the user gave no
    option that could be dropped (the refusal named --description for a note the import wrote)."""
    started = time.perf_counter()
    ref = parse_ref(ref_text)
    if ref.digest:
        raise UsageError(f"push needs a tag to point at the new snapshot, not a digest: {ref_text}")
    provenance = provenance or Provenance()
    refuse_impossible_dates(provenance, "push")
    refuse_unstorable_text(provenance, "push")
    for _parent, relation in provenance.parents:
        if relation not in RELATIONS:
            raise UsageError(f"unknown relation {relation!r}; one of {', '.join(RELATIONS)}")
    parent_refs = [(parse_ref(text), rel) for text, rel in provenance.parents]
    stated = provenance if stated is None else stated
    stated_parents = [(parse_ref(text), rel) for text, rel in stated.parents]
    with archive.catalog.session() as s:  # fail on a lookalike name or a bad parent before reading gigabytes
        q.refuse_name_clash(s, ref.namespace, ref.name)
        q.refuse_repeated_parents([(q.resolve_ref(s, pref), rel) for pref, rel in parent_refs])
    bases = _delta_bases(archive, provenance, delta or DeltaRequest(), warn)
    key = archive._private_key()
    files = list_source_files(
        Path(source), follow_symlinks=follow_symlinks, warn=warn, own_state=state_places(archive.settings)
    )
    if on_total:
        on_total(total_size(files))
    index = PushIndex.load(archive.settings.home)
    # a gc under a push that lost its lock: a temp file cleared, or an object it wrote gone when read back (heals,
    # delta bases, the archived config.json): said as the lost lock, not as a missing object or file
    with archive.lock(exclusive=False, purpose="push") as held, held.explains_lost_writes(ObjectMissingError):
        damaged = known_damaged(archive)  # one query: what a scrub found bad; a put adds any it finds unreadable
        # under the lock: the objects a reused file names cannot be collected by gc until this push is recorded
        reuse, to_prove = _unchanged_files(archive, index, files, damaged, rehash=rehash)
        proven, wasted = prove_unchanged(to_prove, progress)
        if wasted and on_total:  # bytes of changed files hashed before the difference: they are read again
            on_total(total_size(files) + wasted)
        reuse.update((rel, p.reused) for rel, p in proven.items())
        result = ingest(
            source,
            archive.store,
            progress,
            files=files,
            bases=bases,
            warn=warn,
            reuse=reuse,
            replacing=damaged,
        )
        manifest = result.manifest
        if bases is not None and bases.rename:
            check_renamed_tensors(bases, manifest)
        snapshot_id = manifest.snapshot_id
        model_ref = Ref(ref.namespace, ref.name, tag=ref.tag or "latest")
        # before the manifest and a new bundle: refused here, it writes no more
        with archive.catalog.session() as s:
            refuse_withdrawn(s, model_ref, snapshot_id, written=_written_note(result.stored_bytes_added))
        refuse_other_provenance = _provenance_check(stated, stated_parents)
        if refuse_other_provenance is not None:
            with archive.catalog.session() as s:  # before the manifest, bundle and tag: a refusal changes nothing
                refuse_other_provenance(s, model_ref, snapshot_id, stated, stated_parents)
        manifest_bytes = manifest.canonical_bytes()
        _check_reads_back(source, manifest_bytes)
        manifest_put = archive.store.put(manifest_bytes, replacing=damaged)
        if manifest_put.id != snapshot_id.hex:
            raise IntegrityError("manifest object id does not match the snapshot id")  # cannot happen
        bundle = sign_snapshot(
            [FileDigest(f.path, f.sha256) for f in manifest.files], snapshot_id, key, model_name=ref.model
        )
        if len(bundle) > MAX_BUNDLE_BYTES:  # no reader would take it (docs/FORMAT.md, Limits)
            raise SourceLimitError(
                f"{source}: not archived: its signature would be {len(bundle):,} bytes, more than the "
                f"{MAX_BUNDLE_BYTES:,} a bundle may have (see docs/FORMAT.md, Limits)"
            )
        bundle_put = archive.store.put(bundle, replacing=damaged)
        archive.store.sync()  # every object is durable before the catalog mentions it
        replaced = [*result.replaced, *(p.id for p in (manifest_put, bundle_put) if p.replaced)]
        fingerprint = keyring.key_fingerprint(keyring.public_key_pem(key))
        healed = read_back(archive, replaced) if replaced else {}
        # the bases the snapshot's delta objects need, down their chains: kept with it (gc, rm) and sent with it
        needed_bases = base_closure(archive.store, {o.id: o.delta_base for o in result.objects})
        record = _snapshot_record(
            archive, result, provenance, manifest_put.id, bundle_put.id, frozenset(needed_bases)
        )
        objects = [
            ObjectRecord(o.id, o.raw_size, o.stored_size, o.codec, o.delta_base, o.standalone_size)
            for o in result.objects
        ] + [ObjectRecord(p.id, p.raw_size, p.stored_size, p.codec) for p in (manifest_put, bundle_put)]
        for info in (archive.store.stat(ObjectId(b)) for b in sorted(needed_bases)):
            objects.append(ObjectRecord(info.id, info.raw_size, info.stored_size, info.codec, info.delta_base))
        with archive.catalog.session() as s:
            held.confirm(s)  # gc cannot have run under us: our lock row is alive, and now locked until commit
            if refuse_other_provenance is not None:
                # again in the recording's transaction: the same bytes may have been recorded since the check above
                refuse_other_provenance(s, model_ref, snapshot_id, stated, stated_parents)
            # (record_snapshot refuses a withdrawn snapshot again: one may have been withdrawn since the check)
            recorded = record_snapshot(
                archive.store.backend,
                s,
                SnapshotRecording(
                    model=model_ref,
                    snapshot=record,
                    objects=objects,
                    signatures=[NewSignature(bundle_put.id, bundle.decode(), fingerprint)],
                    actor=archive.settings.actor,
                    action="push",
                    parents=[(pref, rel) for pref, rel in parent_refs],
                    merge_into_existing=False,  # a re-push of known bytes keeps the snapshot as it was
                    audit_details={"stored_bytes_added": record.stored_bytes_added},
                ),
            )
            record_healed(s, healed, archive.settings.actor, f"{model_ref.model}@{snapshot_id}", by="push")
    read = {r.rel for r in result.reads}
    taken = [p for rel, p in proven.items() if rel not in read]  # (one ingest would not take was read as new)
    _update_index(index, result, [p.read for p in taken], files, snapshot_id, warn)
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
        # an unchanged snapshot stored no delta: it was not stored against the base, whatever was tried
        delta_base=bases.label if bases and (recorded.created or result.deltas_added) else None,
        delta_objects=len(result.deltas_added),
        delta_stored_bytes=sum(o.stored_size for o in result.deltas_added),
        delta_standalone_bytes=sum(o.standalone_size or 0 for o in result.deltas_added),
        unchanged_files=result.reused - len(taken),
        proven_files=len(taken),
        healed=tuple(sorted(healed)),
        lineage_refused=tuple(p.label for p in recorded.parents_refused),
    )


def _written_note(stored: int) -> str:
    """What a push refused after reading its files says of the bytes it wrote: no snapshot references them."""
    if not stored:
        return ""
    return f"; the {human_bytes(stored)} this push wrote to the store are unreferenced, and the next gc frees them"


def _provenance_check(provenance: Provenance, parents: list[tuple[Ref, str]]) -> Callable[..., None] | None:
    """archive/provenance/repush.py's check when this push states any provenance, else None: what a re-push does
    not state is no difference, so a plain push (most are) pays neither the import nor the queries (issue 12)."""
    stated = parents or any(
        value is not None
        for value in (
            provenance.cutoff,
            provenance.license,
            provenance.description,
            provenance.source_url,
            provenance.release_date,
        )
    )
    if not stated:
        return None
    from modelarc.archive.provenance.repush import refuse_other_provenance

    return refuse_other_provenance


def _unchanged_files(
    archive: Archive,
    index: PushIndex,
    files: list[tuple[str, Path]],
    damaged: Replacing | None = None,
    *,
    rehash: bool = False,
) -> tuple[dict[str, Reused], list[Candidate]]:
    """The source files the index vouches for by their stat (none with ``rehash``), and those it names whose
    stat changed (all it names, with ``rehash``), to be proven by their chunks (archive/proven_files.py). Each
    comes with its entry from the verified manifest of a snapshot the catalog records (whose entries every way in
    checked against their chunks) and its objects, all present in the store and none known ``damaged``; any doubt
    leaves a file out, and it is read (which is how its damaged objects are written back)."""
    candidates: dict[str, tuple[Path, FileEntry, bool]] = {}
    manifests: dict[str, dict[str, FileEntry] | None] = {}
    for rel, path in files:
        hit = index.named(path)
        if hit is None:
            continue
        if hit.snapshot not in manifests:
            try:
                digest = SnapshotId("sha256:" + hit.snapshot)
                with archive.catalog.session() as s:  # a manifest the catalog records, not any object named so
                    recorded = q.digest_recorded(s, digest)
                manifest = archive.manifest_by_id(digest) if recorded else None
                manifests[hit.snapshot] = {f.path: f for f in manifest.files} if manifest else None
            except ModelarcError:  # gone, corrupt, or a malformed id in the index
                manifests[hit.snapshot] = None
        entry = (manifests[hit.snapshot] or {}).get(hit.path)
        if entry is not None and entry.sha256 == hit.sha256 and entry.size == hit.size:
            if damaged is not None and any(c.id in damaged for p in entry.parts for c in p.chunks):
                continue  # read, so that its bytes replace the damaged copies
            if entry.kind != file_kind(rel) or _size(path) != entry.size:
                continue  # could not stand for the file (archive/ingest.py _fits): read it, not prove it first
            candidates[rel] = (path, entry, not rehash and index.lookup(path) is not None)
    if not candidates:
        return {}, []
    chunks = {c.id: c.length for _, e, _ in candidates.values() for p in e.parts for c in p.chunks}
    stored = _stored_objects(archive.store, chunks)
    trusted: dict[str, Reused] = {}
    to_prove: list[Candidate] = []
    for rel, (path, entry, by_stat) in candidates.items():
        objects = [stored[i] for i in dict.fromkeys(c.id for p in entry.parts for c in p.chunks)]
        present = tuple(o for o in objects if o is not None)
        if len(present) == len(objects):
            if by_stat:
                trusted[rel] = Reused(entry, present)
            else:
                to_prove.append(Candidate(rel, path, Reused(entry, present, counted=True)))
    return trusted, to_prove


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _stored_objects(store: ObjectStore, chunks: dict[str, int]) -> dict[str, ObjectWrite | None]:
    """Each chunk's object as the store has it, or None when it is missing, unreadable or of another length.
    One header read per object; on a remote store (S3) several at once, as a push's dedup checks are."""

    def one(item: tuple[str, int]) -> ObjectWrite | None:
        oid, length = item
        try:
            info = store.stat(ObjectId(oid))
        except ModelarcError:
            return None
        if info.raw_size != length:
            return None
        return ObjectWrite(info.id, info.raw_size, info.stored_size, info.codec, False, info.delta_base)

    workers = store.backend.concurrency
    if workers <= 1 or len(chunks) < 2:
        return {oid: one((oid, n)) for oid, n in chunks.items()}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-index") as pool:
        return dict(zip(chunks, pool.map(one, chunks.items()), strict=True))


def _update_index(
    index: PushIndex,
    result: IngestResult,
    proven: list[FileRead],
    files: list[tuple[str, Path]],
    snapshot: SnapshotId,
    warn: Callable[[str], None] | None,
) -> None:
    """Remember the files this push read (as new, or to prove them unchanged), and point the files it reused
    unread at the snapshot just recorded (the earlier one may be removed later). A failure here costs the next
    push a read, so it is a warning at most."""
    reads = [*result.reads, *proven]
    index.remember(reads, snapshot.hex)
    read = {r.rel for r in reads}
    index.moved([(path, rel) for rel, path in files if rel not in read], snapshot.hex)
    try:
        index.save()
    except OSError as exc:
        if warn:
            warn(f"could not update the push index {index.path} ({exc.strerror}); the next push reads every file")


def _delta_bases(
    archive: Archive, provenance: Provenance, delta: DeltaRequest, warn: Callable[[str], None] | None
) -> DeltaBases | None:
    """The base snapshot's tensors, or None when this push stores every tensor on its own."""
    if not delta.enabled:
        return None
    ref_text = delta.base or (provenance.parents[0][0] if provenance.parents else None)
    if ref_text is None:
        if delta.rename:
            raise UsageError("--delta-rename needs a base: --parent REF or --delta-base REF")
        return None
    ref, snap = archive.resolve(ref_text)
    label = f"{ref.model}@{snap.digest}"
    if snap.withdrawn:
        if warn:
            # its weights are released (gc deletes those no live snapshot shares): no delta is made against them
            warn(f"{label} was withdrawn, so it is no delta base: every tensor is stored on its own")
        return None
    return delta_bases(archive.manifest(snap), label, delta.rename)


def push_source(
    archive: Archive,
    source: str,
    ref_text: str,
    provenance: Provenance | None = None,
    *,
    data: DataManifest | None = None,
    follow_symlinks: bool = False,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    delta: DeltaRequest | None = None,
    rehash: bool = False,
    jobs: int = 4,
    fetch_progress: Progress | None = None,
    on_fetch_total: Callable[[int], None] | None = None,
    allow_partial: bool = False,
) -> PushResult:
    """`modelarc push SOURCE REF`: a folder or file, or ``hf://org/name[@revision]`` (archive/remote/hf_import.py,
    which downloads ``jobs`` files at once, shown by ``fetch_progress``/``on_fetch_total``, and then calls
    ``push_folder``; offline, ``allow_partial`` takes a revision the cache may hold only part of), then the training-data manifest ``data`` if given (already parsed and validated by the caller,
    so a bad one fails before a byte is archived)."""
    refuse_impossible_dates(provenance or Provenance(), "push")  # before a Hub download, too
    refuse_unstorable_text(provenance or Provenance(), "push")
    hub = None
    if source.startswith(HUB_SCHEME):
        # imported only for a Hub source: the import machinery (and what it loads) costs a plain folder push time
        from modelarc.archive.remote.hf_import import import_from_hub, parse_hub_source

        hub = parse_hub_source(source)
    if allow_partial and hub is None:
        raise UsageError("--allow-partial goes with an hf:// source (imported offline, HF_HUB_OFFLINE=1)")
    if hub is not None:
        result, _details = import_from_hub(
            archive,
            hub,
            ref_text,
            provenance or Provenance(),
            progress=progress,
            on_total=on_total,
            warn=warn,
            jobs=jobs,
            fetch_progress=fetch_progress,
            on_fetch_total=on_fetch_total,
            allow_partial=allow_partial,
        )
    else:
        result = push_folder(
            archive,
            Path(source),
            ref_text,
            provenance,
            progress=progress,
            on_total=on_total,
            follow_symlinks=follow_symlinks,
            warn=warn,
            delta=delta,
            rehash=rehash,
        )
    if data is not None:
        from modelarc.archive.provenance.data import attach_data

        attach_data(archive, f"{parse_ref(result.ref).model}@{result.snapshot}", data)
    return result


def _snapshot_record(
    archive: Archive,
    result: IngestResult,
    provenance: Provenance,
    manifest_oid: str,
    bundle_oid: str,
    base_object_ids: frozenset[str] = frozenset(),
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
        architecture=pushed_architecture(archive.store, manifest),  # the bytes archived, not the folder now
        object_ids=frozenset(manifest.object_ids() | {manifest_oid, bundle_oid}),
        base_object_ids=base_object_ids,
        provenance=provenance,
        pushed_by=archive.settings.actor,
    )


def _check_reads_back(source: str | os.PathLike[str], manifest_bytes: bytes) -> None:
    """Refuse a manifest that the archive's own reader would refuse (``pull`` and ``verify`` read it with
    ``SnapshotManifest.from_bytes``): the readers of a source's formats accept what the manifest format cannot hold
    only by a mistake, and such a snapshot, once recorded, could never be restored. (A safetensors shape with a
    dimension of 2**70 and a zero was archived, then refused by every pull.)"""
    try:
        SnapshotManifest.from_bytes(manifest_bytes)
    except (IntegrityError, UsageError) as exc:
        raise SourceError(f"{source}: not archived: its manifest would not read back ({exc})") from None
