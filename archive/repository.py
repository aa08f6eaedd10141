"""The archive: one home folder holding an object store, a catalog and signing keys, and every operation on them.

Ordering rules that keep the archive consistent when a process dies at any instant:
- objects are written and synced before any catalog row that mentions them is committed;
- a snapshot, its files, its objects, its signature and its tag are committed in one transaction;
- gc holds the store lock exclusively, pushes hold it shared, so gc never frees what a push is using.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from modelarc.config import HOME_CONFIG_FORMAT, Settings, load_settings
from modelarc.errors import (
    NotInitializedError,
    ObjectCorruptError,
    ObjectMissingError,
    SignatureError,
    SigningKeyError,
    StoreAccessError,
    TagNotFoundError,
    UsageError,
    WithdrawnError,
)
from modelarc.registry.db import Catalog
from modelarc.registry.refs import Ref, SnapshotId, check_tag, parse_ref
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.location import canonical_location, check_location, is_local_location, open_backend

if TYPE_CHECKING:
    from modelarc.archive.catalog.views import ArchiveStats, ModelHistory, SnapshotView
    from modelarc.archive.left_records import LeftRecords
    from modelarc.archive.maintenance import FsckReport, GcReport, VerifyReport
    from modelarc.archive.manifest import SnapshotManifest
    from modelarc.archive.pull import PullResult
    from modelarc.archive.push import DeltaRequest, PushResult
    from modelarc.archive.signing.bundles import VerifiedSignature
    from modelarc.archive.store_lock import StoreLockHandle
    from modelarc.registry.db import CatalogSession
    from modelarc.registry.keys import KeyInfo
    from modelarc.registry.queries import TagChange
    from modelarc.registry.records import Provenance
    from modelarc.registry.snapshots import SnapshotRecord

# Signing (archive/signing/, which loads `cryptography`) is imported inside the methods that sign or verify:
# ls, show, log, tag and the other catalog reads open an Archive too and never touch a key. Likewise the catalog's
# query modules (registry/queries.py, keys.py, and archive/records.py with registry/recording.py behind it) and
# the manifest: each method imports what it uses, since building their dataclasses and statements costs every
# command that opens an Archive ~20-30 ms of CPU, and `ls` (registry/snapshot_search.py) needs none of them
# (issue 12; tests/cli/test_cli_startup.py holds the line).

Progress = Callable[[int], None]
SIGNING_KEY_FILE = "signing-key.pem"


# The keyword options of push_folder (archive/push.py) and pull_snapshot (archive/pull.py), which Archive.push and
# Archive.pull pass on unchanged. They live here, not beside those functions, because mypy sees another module of
# the package as Any (package-dir mapping) and Unpack needs the TypedDict itself. The keys are the functions'
# keywords (tests/archive/test_archive_options.py).
class PushOptions(TypedDict, total=False):
    progress: Progress | None
    on_total: Callable[[int], None] | None
    follow_symlinks: bool  # default False
    warn: Callable[[str], None] | None
    delta: DeltaRequest | None  # how tensors are tried as deltas against a parent (archive/push.py)
    rehash: bool  # default False: read even the files the push index says are unchanged
    stated: Provenance | None  # what the user stated, if provenance holds more the caller derived (archive/push.py)


class PullOptions(TypedDict, total=False):
    force: bool  # default False
    signature_path: str | os.PathLike[str] | None
    progress: Progress | None
    on_total: Callable[[int], None] | None


def refuse_if_withdrawn(snap: SnapshotRecord, label: str) -> None:
    if snap.tombstoned_at is not None:
        raise WithdrawnError(
            f"{label} ({snap.digest[:19]}) was withdrawn on {snap.tombstoned_at:%Y-%m-%d}: {snap.tombstone_reason}; "
            "its provenance is kept (modelarc show) but its weights are not handed out"
        )


def choose_store(settings: Settings, store: str) -> Settings:
    """``settings`` with the objects at ``store`` (``record_store_choice`` writes it to the home's config.json once
    ``init`` has checked the store against the catalog); a home keeps its store."""
    location = canonical_location(store)
    if settings.store_url is not None and canonical_location(settings.store_url) != location:
        raise UsageError(
            f"this archive already keeps its objects at {settings.store_url} (from MODELARC_STORE_URL or "
            f"{settings.config_path}); a home has one store"
        )
    if settings.store_url is None and location == str(settings.store_path):
        return settings  # the default: nothing to record
    if settings.store_url is None and settings.store_path.is_dir():
        raise UsageError(
            f"this archive already keeps its objects at {settings.store_path}; a home has one store "
            "(copy the objects over with the store's own tools, then point a new home at it)"
        )
    # a missing bucket or bad credentials fail here, before the home records the store, not at the first push
    next(iter(ObjectStore(open_backend(location)).iter_ids()), None)
    return dataclasses.replace(settings, store_url=location, store_origin=settings.store_origin or "--store")


def record_store_choice(settings: Settings) -> None:
    """Write ``choose_store``'s store to the home's config.json, so later commands find it."""
    settings.home.mkdir(parents=True, exist_ok=True)
    doc = json.dumps({"format": HOME_CONFIG_FORMAT, "store": settings.store_url}, indent=2) + "\n"
    tmp = settings.config_path.with_suffix(".tmp")
    tmp.write_text(doc)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, settings.config_path)


def _folders_init_makes(settings: Settings, store: str | None) -> list[Path]:
    """The folders ``Archive.init`` may create, innermost first (a local store's ``tmp/`` and folder, ``keys/``,
    the home), for ``_remove_if_empty``."""
    location = store if store is not None else settings.store_location
    folders = [Path(location) / "tmp", Path(location)] if is_local_location(location) else []
    return [*folders, settings.keys_path, settings.home]


def _make_private_folder(folder: Path) -> None:
    """Create ``folder`` readable by its owner alone (0700, whatever the umask), if it does not exist yet.

    A home holds the catalog and the store: every weight, withheld ones (gated, restricted, embargoed) included, in
    files any local user could read under the usual umask 022, whatever `modelarc access` says (it binds the
    server, not the file system). So a new home, and a new local store folder, are private to the user who made
    them; opening one up is the owner's act (`chmod`, docs/SECURITY.md "Local users"). A folder that exists already
    is left as it is: its mode is its owner's choice, never changed behind their back."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask: a umask of 0277 would leave it unusable
    # its entry in its parent is durable before anything is stored in it (as the store's own folders are:
    # storage/local.py); a power loss must not take a new home or store folder with what the catalog lists
    try:
        fd = os.open(folder.parent, os.O_RDONLY)
    except PermissionError:  # a parent this user may enter but not read (mode 0711) cannot be opened to sync
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove each folder that is still empty, innermost first; one that holds anything is left alone."""
    for folder in folders:
        with suppress(OSError):
            folder.rmdir()


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

    def __init__(self, settings: Settings, *, create_store: bool = False) -> None:
        """``create_store`` is ``Archive.init``'s alone: opening an archive whose local store folder is missing
        (a mistyped MODELARC_STORE_URL, an unmounted disk) is refused rather than answered from a new, empty one."""
        self.settings = settings
        try:
            backend = open_backend(settings.store_location, create=create_store)
        except StoreAccessError:
            if not is_local_location(settings.store_location):
                raise
            raise StoreAccessError(  # the local folder is not there: say which setting named it
                f"no store at {str(settings.store_location)!r} ({settings.store_origin_text}); fix that setting, "
                "or run `modelarc init` to create a new, empty store there"
            ) from None
        self.store = ObjectStore(backend)
        self.catalog = Catalog(settings.database_url, lock_wait=settings.lock_wait)

    # ----------------------------------------------------------------- lifecycle
    @classmethod
    def init(
        cls, home: str | os.PathLike[str] | None = None, *, store: str | None = None
    ) -> tuple[Archive, bool]:
        """Create the home, the store, the catalog schema and a signing key; safe to run again.

        ``store`` (``modelarc init --store``) puts the objects elsewhere than ``HOME/store``: a folder or
        ``s3://BUCKET/PREFIX``. It is written to ``HOME/config.json`` so later commands find it.
        """
        settings = load_settings(home)
        made = [p for p in _folders_init_makes(settings, store) if not p.exists()]
        location = store if store is not None else settings.store_location
        check_location(location)  # a bad MODELARC_STORE_URL is refused before the home is made
        try:
            _make_private_folder(settings.home)
            if is_local_location(location):  # before choose_store opens it (which creates it)
                _make_private_folder(Path(canonical_location(location)))
            if store is not None:
                settings = choose_store(settings, store)
        except BaseException:
            _remove_if_empty(made)
            raise
        settings.keys_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        archive = cls(settings, create_store=True)
        from modelarc.archive.store_identity import record_store_identity

        # before the key and its record: nothing is written to another catalog's store, and a refusal (a new
        # store for a catalog another store holds snapshots of) leaves the home as it was
        try:
            record_store_identity(archive)
        except BaseException:
            archive.close()
            _remove_if_empty(made)
            raise
        if settings.store_url is not None and store is not None:
            record_store_choice(settings)
        from modelarc.archive.signing import keys as keyring

        key_path = settings.keys_path / SIGNING_KEY_FILE
        created = False
        if not key_path.exists():
            try:
                keyring.write_private_key(keyring.generate_private_key(), key_path)
                created = True
            except SigningKeyError:
                if not key_path.exists():
                    raise
                # another `init` of this home wrote its key since the check (the write is atomic): use that one
        try:
            pem = keyring.public_key_pem(keyring.load_private_key(key_path))
            archive._register_key(pem, label="local signing key", local=True, actor=settings.actor)
        except BaseException:
            archive.close()
            raise
        return archive, created

    @classmethod
    def open(cls, home: str | os.PathLike[str] | None = None) -> Archive:
        settings = load_settings(home)
        if not (settings.keys_path.is_dir() or settings.store_path.is_dir()):
            raise NotInitializedError(f"no modelarc archive at {settings.home}; run `modelarc init` first")
        archive = cls(settings)
        from modelarc.archive.store_identity import check_store_identity

        try:
            check_store_identity(archive)
        except BaseException:
            archive.close()
            raise
        return archive

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- keys
    def _private_key(self) -> Any:
        from modelarc.archive.signing import keys as keyring

        path = self.settings.keys_path / SIGNING_KEY_FILE
        if not path.exists():
            raise SigningKeyError(f"no signing key at {path}; run `modelarc init`")
        return keyring.load_private_key(path)

    def public_key_pem(self) -> bytes:
        from modelarc.archive.signing import keys as keyring

        return keyring.public_key_pem(self._private_key())

    def _register_key(self, pem: bytes, *, label: str | None, local: bool, actor: str) -> KeyInfo:
        from modelarc.archive.records import catalog_time
        from modelarc.archive.signing import keys as keyring
        from modelarc.registry import keys as key_rows

        fingerprint = keyring.key_fingerprint(pem)
        with self.catalog.session() as s:
            before = key_rows.find_key(s, fingerprint)
            at = catalog_time()
            info = key_rows.trust_key(
                s, fingerprint, pem.decode(), label=label, local=local, actor=actor, at=at
            )
            if before is None or not before.trusted:  # a change: kept as a catalog record
                self._record_key(s, fingerprint, at, actor)
            return info

    def _record_key(self, s: CatalogSession, fingerprint: str, at: dt.datetime, actor: str) -> None:
        from modelarc.archive.records import key_fields, write_record
        from modelarc.registry import keys as key_rows

        s.flush()  # the change holds its row (and SQLite's write lock) before the record's time is taken
        key = key_rows.find_key(s, fingerprint)
        assert key is not None
        write_record(self.store.backend, s, "key", at=at, actor=actor, **key_fields(key))

    def import_key(self, pem: bytes, label: str | None = None) -> str:
        from modelarc.archive.signing import keys as keyring

        keyring.load_public_key_pem(pem)
        return self._register_key(pem, label=label, local=False, actor=self.settings.actor).fingerprint

    def set_key_trust(self, fingerprint_prefix: str, trusted: bool) -> str:
        from modelarc.archive.records import catalog_time
        from modelarc.registry import keys as key_rows

        with self.catalog.session() as s:
            at = catalog_time()
            fingerprint = key_rows.set_trust(s, fingerprint_prefix, trusted, self.settings.actor, at)
            self._record_key(s, fingerprint, at, self.settings.actor)
            return fingerprint

    def list_keys(self) -> list[KeyInfo]:
        from modelarc.registry import keys as key_rows

        with self.catalog.session() as s:
            return key_rows.list_keys(s)

    def trusted_pems(self) -> list[bytes]:
        from modelarc.registry import keys as key_rows

        with self.catalog.session() as s:
            return key_rows.trusted_pems(s)

    # ----------------------------------------------------------------- push and pull (archive/push.py, pull.py)
    def push(
        self,
        source: str | os.PathLike[str],
        ref_text: str,
        provenance: Provenance | None = None,
        **options: Unpack[PushOptions],
    ) -> PushResult:
        """Archive a folder or file as ``ref_text``; the keyword options are ``push_folder``'s (archive/push.py)."""
        from modelarc.archive.push import push_folder

        return push_folder(self, source, ref_text, provenance, **options)

    def pull(self, ref_text: str, dest: str | os.PathLike[str], **options: Unpack[PullOptions]) -> PullResult:
        """Rebuild a snapshot's files into ``dest``, verified; the keyword options are ``pull_snapshot``'s
        (archive/pull.py)."""
        from modelarc.archive.pull import pull_snapshot

        return pull_snapshot(self, ref_text, dest, **options)

    # ----------------------------------------------------------------- integrity (archive/maintenance.py)
    def verify(self, ref_text: str, progress: Progress | None = None) -> VerifyReport:
        from modelarc.archive import maintenance

        return maintenance.verify(self, ref_text, progress)

    def verify_all(
        self, progress: Progress | None = None
    ) -> tuple[list[VerifyReport], list[tuple[str, str]]]:
        from modelarc.archive import maintenance

        return maintenance.verify_all(self, progress)

    def fsck(self, progress: Progress | None = None, *, read_data: bool = False) -> FsckReport:
        from modelarc.archive import maintenance

        return maintenance.fsck(self, progress, read_data=read_data)

    def gc(self, *, dry_run: bool = False) -> GcReport:
        from modelarc.archive import maintenance

        return maintenance.gc(self, dry_run=dry_run)

    def delete_unreferenced(
        self, candidates: set[str], *, held: StoreLockHandle, dry_run: bool = False
    ) -> tuple[int, int]:
        from modelarc.archive import maintenance

        return maintenance.delete_unreferenced(self, candidates, held=held, dry_run=dry_run)

    def lock(
        self, *, exclusive: bool, purpose: str, wait: bool = True
    ) -> AbstractContextManager[StoreLockHandle]:
        """The store lock (archive/store_lock.py): shared by anything that adds or reads objects, exclusive for
        whatever deletes them. It is a catalog row, so it binds every host that shares this catalog."""
        from modelarc.archive.store_lock import hold

        return hold(
            self.catalog,
            exclusive=exclusive,
            purpose=purpose,
            actor=self.settings.actor,
            ttl=self.settings.lock_ttl,
            wait=wait,
        )

    # ----------------------------------------------------------------- read side
    def resolve(self, ref: Ref | str) -> tuple[Ref, SnapshotRecord]:
        """The snapshot a REF names now, as values (a tag moving later does not change what is returned)."""
        from modelarc.registry import queries as q

        ref = ref if isinstance(ref, Ref) else parse_ref(ref)
        with self.catalog.session() as s:
            return ref, q.resolve_snapshot(s, ref)

    def manifest(self, snap: SnapshotRecord) -> SnapshotManifest:
        """The manifest from the store, verified against the snapshot id."""
        return self.manifest_by_id(snap.digest)

    def manifest_by_id(self, digest: SnapshotId) -> SnapshotManifest:
        from modelarc.archive.limits import MAX_MANIFEST_BYTES, read_document
        from modelarc.archive.manifest import SnapshotManifest

        try:  # judged by its header before it is decoded: a manifest bigger than the limits allow is refused
            data = read_document(self.store, ObjectId(digest.hex), MAX_MANIFEST_BYTES, f"manifest of snapshot {digest}")
        except (ObjectMissingError, ObjectCorruptError) as exc:
            raise type(exc)(f"manifest of snapshot {digest}: {exc}") from None
        return SnapshotManifest.from_bytes(data, expected_id=digest)

    def _verify_signature(self, snap: SnapshotRecord, manifest: SnapshotManifest) -> tuple[str, bytes]:
        """Check the snapshot's bundle against trusted keys and the manifest; returns (key fingerprint, bundle)."""
        # read from the store, not the catalog copy: the store is the archive of record and get() re-hashes
        bundles = [bytes(self.store.get(ObjectId(oid))) for oid in self.signature_object_ids(snap)]
        return check_bundles(bundles, manifest, snap.digest, self.trusted_pems())

    def check_signature(self, snap: SnapshotRecord, manifest: SnapshotManifest | None = None) -> str:
        """The fingerprint of the trusted key whose signature covers this snapshot; ``SignatureError`` otherwise.
        ``manifest``: the snapshot's, when the caller has read it already."""
        return self._verify_signature(snap, manifest or self.manifest(snap))[0]

    def signature_object_ids(self, snap: SnapshotRecord) -> list[str]:
        from modelarc.registry import keys as key_rows

        with self.catalog.session() as s:
            return key_rows.signature_object_ids(s, snap.row_id)

    # ----------------------------------------------------------------- catalog views
    def tag(self, ref_text: str, new_tag: str) -> tuple[str, str | None]:
        """Move ``new_tag`` to the snapshot ``ref_text`` names: (that snapshot, where the tag pointed before). Run
        again after a kill between its record and its commit, it completes the move that record states, dated as
        it is (archive/left_records.py): a second record dated later left the first for ``fsck`` to name for good,
        and a rebuild would have dated the move at the first."""
        return self.tag_move(ref_text, new_tag)[:2]

    def tag_move(self, ref_text: str, new_tag: str) -> tuple[str, str | None, LeftRecords]:
        """``tag``, with what it did with records an earlier run of it left."""
        from modelarc.archive.left_records import (
            attempt_key,
            find_left,
            finish_attempt,
            start_attempt,
            write_unless_left,
        )
        from modelarc.archive.records import write_record
        from modelarc.registry import queries as q

        ref = parse_ref(ref_text)
        check_tag(new_tag)
        with self.catalog.session() as s:
            target = q.resolve_snapshot(s, ref)  # refused before any note is written
        attempt = start_attempt(self, attempt_key("tag", ref.model, new_tag), fallback=target.created_at)
        with self.catalog.session() as s:
            model_id = q.require_model(s, ref.namespace, ref.name).row_id
            q.lock_model(s, model_id)  # archive/left_records.py
            target = q.resolve_snapshot(s, ref)
            previous = _tag_target(s, ref.model, new_tag)
            moves = q.tag_move_times(s, model_id, new_tag)
            actor = self.settings.actor
            left = find_left(
                self,
                attempt,
                "tag",
                lambda b: b.get("model") == ref.model and b.get("tag") == new_tag,
                lambda r: (r.body.get("snapshot"), r.body.get("previous"), r.actor)
                == (str(target.digest), previous, actor),
                held=lambda r: r.at in moves,
                changed_after=lambda at: any(t > at for t in moves),  # a push's move too (a `snapshot` record)
            )
            at = left.time()
            moved = apply_tag(s, ref, new_tag, actor, at)
            write_unless_left(
                self,
                s,
                left,
                lambda: write_record(
                    self.store.backend,
                    s,
                    "tag",
                    at=at,
                    actor=actor,
                    model=ref.model,
                    tag=new_tag,
                    snapshot=moved.snapshot,
                    previous=moved.previous,
                ),
            )
            finish_attempt(s, attempt)
            return moved.snapshot, moved.previous, left

    def log(self, model_name: str) -> ModelHistory:
        """The model's snapshots, newest first, and every tag move (archive/catalog/views.py)."""
        from modelarc.archive.catalog import views

        return views.model_history(self, model_name)

    def show(self, ref: Ref | str) -> SnapshotView:
        """Everything the catalog says about one snapshot (archive/catalog/views.py)."""
        from modelarc.archive.catalog import views

        return views.snapshot_view(self, ref)

    def stats(self) -> ArchiveStats:
        """Logical, unique and stored bytes (archive/catalog/views.py)."""
        from modelarc.archive.catalog import views

        return views.archive_stats(self)

    def iter_snapshot_labels(self) -> Iterator[str]:
        from modelarc.registry import queries as q

        with self.catalog.session() as s:
            snaps = q.list_snapshots(s)
        for sn in snaps:
            yield sn.label


def _tag_target(s: CatalogSession, model: str, tag: str) -> str | None:
    """The snapshot ``model:tag`` names now, as a move of the tag records it (``previous``); None for a new tag."""
    from modelarc.registry import queries as q

    try:
        return str(q.resolve_snapshot(s, parse_ref(f"{model}:{tag}")).digest)
    except TagNotFoundError:
        return None


def apply_tag(s: CatalogSession, ref: Ref, tag: str, actor: str, at: dt.datetime) -> TagChange:
    """Move ``tag`` to the snapshot ``ref`` names, with its audit entry: `modelarc tag` and its replay alike."""
    from modelarc.registry import queries as q

    moved = q.tag_snapshot(s, ref, tag, actor, at)
    q.audit(s, actor, "tag", f"{ref.model}:{tag}", at=at, snapshot=moved.snapshot, previous=moved.previous)
    return moved


def check_bundles(
    bundles: list[bytes], manifest: SnapshotManifest, digest: SnapshotId, trusted: list[bytes]
) -> tuple[str, bytes]:
    """The first bundle that verifies against a trusted key and covers every file of this manifest.

    Returns (key fingerprint, bundle); raises ``SignatureError`` naming what was wrong with each bundle.
    """
    signing, errors = signing_bundles(bundles, manifest, digest, trusted)
    if not signing:
        raise no_signature(digest, errors)
    index, fingerprint = signing[0]
    return fingerprint, bundles[index]


def no_signature(digest: SnapshotId, errors: list[str]) -> SignatureError:
    """The refusal of a snapshot none of whose bundles signs it, with why each failed (none: it has no bundle)."""
    if not errors:
        return SignatureError(f"snapshot {digest} has no signature")
    return SignatureError(f"snapshot {digest}: no valid signature from a trusted key ({'; '.join(errors)})")


def signing_bundles(
    bundles: list[bytes], manifest: SnapshotManifest, digest: SnapshotId, trusted: list[bytes]
) -> tuple[list[tuple[int, str]], list[str]]:
    """(index, key fingerprint) of every bundle that signs this snapshot with a trusted key, and why each other
    bundle does not: a receiver records only the former as the snapshot's signatures."""
    from modelarc.archive.signing.bundles import verify_bundle

    signing: list[tuple[int, str]] = []
    errors: list[str] = []
    for index, bundle in enumerate(bundles):
        try:
            verified = verify_bundle(bundle, trusted)
        except SignatureError as exc:
            errors.append(str(exc))
            continue
        problem = coverage_problem(verified, manifest, digest)
        if problem:
            errors.append(problem)
            continue
        signing.append((index, verified.key_fingerprint))
    return signing, errors


def coverage_problem(verified: VerifiedSignature, manifest: SnapshotManifest, digest: SnapshotId) -> str | None:
    """Why a verified bundle does not vouch for every file of ``manifest`` with its exact digest, or None.

    A bundle with ``predicate.modelarc`` signs the snapshot id, the hash of the manifest, which lists every file's
    sha256: it covers the files model_signing does not hash (``.git*``, its ``ignore_paths``) too. A bundle
    without it (model_signing's own form) vouches only for its ``resources``: a file outside them would be a file
    nobody signed (a remote could add ``.git/config`` or ``.gitattributes`` to a signed snapshot), so the
    manifest must then hold exactly those files.
    """
    if verified.snapshot_id is not None and verified.snapshot_id != digest:
        return f"signature is for snapshot {verified.snapshot_id}"
    from modelarc.archive.manifest import printable_path as printable

    expected = {f.path: f.sha256 for f in manifest.files if not verified.ignores(f.path)}
    if verified.files != expected:
        differ = sorted(set(verified.files.items()) ^ set(expected.items()))
        return f"signed file digests do not match the manifest (first: {printable(differ[0][0])})"
    if verified.snapshot_id is None:
        unsigned = sorted(f.path for f in manifest.files if f.path not in verified.files)
        if unsigned:
            more = f" and {len(unsigned) - 1} more" if len(unsigned) > 1 else ""
            return (
                f"file {printable(unsigned[0])}{more} is not covered by the signature (a model_signing bundle "
                "without predicate.modelarc vouches only for the files it lists)"
            )
    return None
