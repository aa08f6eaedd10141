"""The object store: put raw bytes, get them back verified. Objects are keyed by the sha256 of their raw bytes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelarc.errors import (
    DeltaBaseError,
    DeltaChainError,
    IntegrityError,
    ObjectCorruptError,
    ObjectFormatError,
    ObjectMissingError,
    StoredValueError,
    UnsupportedObjectError,
    UsageError,
)
from modelarc.storage.backend import Backend
from modelarc.storage.codecs import (
    CODEC_NAMES,
    CODECS,
    EncodeBuffers,
    choose_and_encode,
    codec_by_id,
    unknown_codec,
)
from modelarc.storage.codecs.delta import (
    DELTA_CODEC_ID,
    ELEMENT_TYPES,
    MAX_DELTA_DEPTH,
    DeltaCodec,
    parse_params,
)
from modelarc.storage.codecs.floatplanes import FloatPlanesCodec
from modelarc.storage.digests import sha256_hexdigests
from modelarc.storage.ids import ObjectId
from modelarc.storage.local import LocalBackend
from modelarc.storage.location import open_backend
from modelarc.storage.objectformat import MAX_STORED_SIZE, ObjectHeader, check_sizes, unpack_header

OBJECTS_PREFIX = "objects"
QUARANTINE_PREFIX = "quarantine"  # damaged copies set aside by repair: never read as objects, never collected
# the object header (16 fixed bytes and the codec parameters, at most 81 bytes for every codec so far): one ranged read
HEADER_READ = 4096

# Fetches an object as stored (header + payload) by id: how a delta's base is found. ``ObjectStore.get_stored``
# is one; a mirror or remote may supply its own. It raises ``ObjectMissingError`` when it has no such object.
FetchStored = Callable[[ObjectId], bytes | bytearray | memoryview]


# Each thread that puts objects (an ingest worker) encodes into its own buffers, reused chunk after chunk. They
# hold about two chunks (16 MiB for 8 MiB float chunks) for as long as the thread lives: ingest's pool threads
# end with the ingest; a long-lived thread that puts float chunks keeps them.
_thread_buffers = threading.local()


def _encode_buffers() -> EncodeBuffers:
    try:
        return _thread_buffers.buffers  # type: ignore[no-any-return]
    except AttributeError:
        _thread_buffers.buffers = EncodeBuffers()
        return _thread_buffers.buffers  # type: ignore[no-any-return]


def object_key(oid: ObjectId) -> str:
    """Fan-out by the first two hex digits keeps directories small: ``objects/ab/ab12...``."""
    return f"{OBJECTS_PREFIX}/{oid[:2]}/{oid}"


def _object_id_of(key: str) -> ObjectId | None:
    """The object whose key ``key`` is, or None for any other key (a stray file)."""
    try:
        oid = ObjectId(key.rsplit("/", 1)[-1])
    except UsageError:  # not 64 lowercase hex
        return None
    return oid if object_key(oid) == key else None


@dataclass(frozen=True)
class PutResult:
    id: ObjectId
    raw_size: int
    stored_size: int
    codec: str
    # False when the object was already stored (deduplicated), or this put replaced a damaged copy
    added: bool
    delta_base: ObjectId | None = None  # the object it is stored as a delta against (codec 3), else None
    # for a delta written by this put: what the object would have taken stored on its own (both were encoded)
    standalone_size: int | None = None
    # this put wrote the object in place of a copy the caller named damaged (``Replacing``): healed, not added
    replaced: bool = False


class Replacing:
    """Objects whose stored copies the caller knows to be damaged (a scrub found them corrupt or missing), for a
    put of one of them to write its good bytes in their place instead of deduplicating against the damaged copy.

    The store cannot know this itself: a check of every put would read back every object a push deduplicates.
    The catalog remembers what scrub found, so the caller asks it once and names the ids here. The damaged copy
    (if anything is under the key) is set aside with ``ObjectStore.quarantine(oid, stamp)`` first, as repair
    does, then the good one is written by the backend's atomic put. Each id is replaced once however often it is
    put (a chunk may occur twice in a model): the later puts wait for the first and then find the good copy.

    A put that would deduplicate against a copy it cannot read as the object (a header of a newer format version
    or codec, or one a flipped byte made so; a header that does not parse) replaces that copy the same way, named
    here as it is met (``found_unreadable``): the put holds bytes that hash to the id, so a caller that can record
    a replacement (any that passes a ``Replacing``, even with no ids) need not wait for a scrub to have found it.
    """

    def __init__(self, ids: Iterable[str], stamp: str) -> None:
        self.ids = frozenset(ids)
        self.stamp = stamp  # the quarantine key's suffix: a UTC time, %Y%m%dT%H%M%SZ
        self._found: set[str] = set()  # ids whose stored copy a put found unreadable (``found_unreadable``)
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, oid: object) -> bool:
        return oid in self.ids or oid in self._found

    def __bool__(self) -> bool:
        return bool(self.ids or self._found)

    def found_unreadable(self, oid: str) -> None:
        """A put met ``oid``'s stored copy unreadable: replaced by the first put of it that claims it from now."""
        with self._lock:  # (waits for a claim in progress: the set is read under this lock)
            self._found.add(oid)

    @contextlib.contextmanager
    def claim(self, oid: str) -> Iterator[bool]:
        """True for the first put of ``oid``, which replaces it while holding the claim; False for the others,
        which wait for it (replacements are rare: they take turns) and then deduplicate against its copy."""
        with self._lock:
            first = (oid in self.ids or oid in self._found) and oid not in self._done
            self._done.add(oid)
            yield first


@dataclass(frozen=True)
class ObjectInfo:
    id: ObjectId
    raw_size: int
    stored_size: int
    codec: str
    delta_base: ObjectId | None = None  # the object it is stored as a delta against (codec 3), else None


class ObjectStore:
    """Content-addressed, immutable objects on a ``Backend``.

    ``get`` always re-hashes what it decoded: the store never hands out bytes whose sha256 is not their id.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @classmethod
    def open_local(cls, root: str | os.PathLike[str]) -> ObjectStore:
        return cls(LocalBackend(Path(root)))

    @classmethod
    def open_location(cls, location: str | os.PathLike[str]) -> ObjectStore:
        """The store at a folder path or ``s3://BUCKET/PREFIX`` (``storage/location.py``)."""
        return cls(open_backend(location if isinstance(location, str) else Path(location)))

    def put(
        self,
        data: bytes | bytearray | memoryview,
        *,
        dtype_hint: str | None = None,
        object_id: ObjectId | None = None,
        replacing: Replacing | None = None,
    ) -> PutResult:
        """Store ``data`` unless an object with its hash exists. ``object_id`` skips re-hashing when already known.

        An object named in ``replacing`` is written whatever is stored under its id, the damaged copy set aside in
        ``quarantine/`` first (``PutResult.replaced``); with ``replacing``, so is one whose stored copy this put
        cannot read as it (``Replacing.found_unreadable``). ``data`` must be the object's bytes: with ``object_id``
        given, the caller has hashed them (a put never reads back what it replaces).
        """
        oid = object_id if object_id is not None else ObjectId.of(data)
        claimed = replacing is not None and oid in replacing
        with self._replacing_damaged(oid, replacing) as replace:
            if replace:
                return self._write(oid, data, dtype_hint, replaced=True)
            if not self.backend.has(object_key(oid)):
                return self._write(oid, data, dtype_hint)
            try:
                return self._existing(oid)
            except (UnsupportedObjectError, IntegrityError):
                # (missing too: another put of it is setting the unreadable copy aside this instant)
                if replacing is None or claimed:
                    raise
        replacing.found_unreadable(oid)
        return self.put(data, dtype_hint=dtype_hint, object_id=oid, replacing=replacing)  # claimed this time

    @contextlib.contextmanager
    def _replacing_damaged(self, oid: ObjectId, replacing: Replacing | None) -> Iterator[bool]:
        """True when this put must write ``oid`` in place of a damaged copy, which has just been set aside: the first
        put of an id ``replacing`` names whose copy does not read back intact. The claim is held until the caller has
        written, so a second put of the same id waits and then finds the good copy (False: it deduplicates)."""
        if replacing is None or oid not in replacing:
            yield False
            return
        with replacing.claim(oid) as first:
            if first and not self.reads_back(oid):
                self.quarantine(oid, replacing.stamp)
                yield True
            else:
                yield False

    def _write(
        self,
        oid: ObjectId,
        data: bytes | bytearray | memoryview,
        dtype_hint: str | None,
        *,
        replaced: bool = False,
    ) -> PutResult:
        buffers = _encode_buffers()
        encoded = choose_and_encode(data, dtype_hint, buffers)
        header = ObjectHeader(encoded.codec_id, len(data), encoded.params).pack()
        blob = buffers.framed(header, encoded)  # in place, or one copy of the payload however it is held
        self.backend.put(object_key(oid), blob)
        codec = CODEC_NAMES[encoded.codec_id]
        return PutResult(oid, len(data), len(blob), codec, added=not replaced, replaced=replaced)

    def put_delta(
        self,
        data: bytes | bytearray | memoryview,
        base_id: ObjectId,
        *,
        dtype_hint: str | None = None,
        object_id: ObjectId | None = None,
    ) -> PutResult:
        """Store ``data`` as a delta against the stored object ``base_id`` (same length) when that is smaller than
        encoding it on its own, else on its own; nothing when an object with its hash exists.

        The base is read back and verified first, so a delta is never written against bytes that are not
        ``base_id``. Raises ``DeltaBaseError`` when the base is missing or corrupt, ``DeltaChainError`` when the
        base is already at ``MAX_DELTA_DEPTH`` (check ``delta_depth(base_id)`` first to pick another base), and
        ``ValueError`` when the lengths differ. The chunk is encoded on its own in full (that size is the rule's
        yardstick, and what ``standalone_size`` reports), the delta only until it is known to be no smaller.
        """
        oid = object_id if object_id is not None else ObjectId.of(data)
        key = object_key(oid)
        if self.backend.has(key):  # also covers data == base: an object is never a delta against itself
            return self._existing(oid)
        depth = self._depth_for_delta(oid, base_id)
        if depth >= MAX_DELTA_DEPTH:
            raise DeltaChainError(
                f"object {oid} cannot be stored as a delta against {base_id}: that base is at delta depth "
                f"{depth}, and a delta chain may be at most {MAX_DELTA_DEPTH} deep"
            )
        try:
            base = self.get(base_id)
        except (IntegrityError, UnsupportedObjectError) as exc:  # stored on its own instead (archive/ingest.py)
            raise DeltaBaseError(
                f"object {oid} cannot be stored as a delta against {base_id}: {exc}"
            ) from None
        if len(base) != len(data):
            raise ValueError(
                f"object {oid} ({len(data)} bytes) cannot be a delta against {base_id} ({len(base)} bytes)"
            )
        alone = choose_and_encode(data, dtype_hint)
        alone_size = ObjectHeader(alone.codec_id, len(data), alone.params).size + len(alone.payload)
        # the delta is kept only when len(params) + len(payload) is smaller than the chunk's on its own
        delta = DeltaCodec().encode_smaller_than(
            len(alone.params) + len(alone.payload), data, base, bytes.fromhex(base_id), dtype_hint
        )
        use_delta = delta is not None
        encoded = delta if delta is not None else alone
        header = ObjectHeader(encoded.codec_id, len(data), encoded.params).pack()
        blob = b"".join((header, encoded.payload))
        self.backend.put(key, blob)
        return PutResult(
            oid,
            len(data),
            len(blob),
            CODEC_NAMES[encoded.codec_id],
            added=True,
            delta_base=base_id if use_delta else None,
            standalone_size=alone_size if use_delta else None,
        )

    def _existing(self, oid: ObjectId) -> PutResult:
        info = self.stat(oid)
        return PutResult(oid, info.raw_size, info.stored_size, info.codec, added=False, delta_base=info.delta_base)

    def _depth_for_delta(self, oid: ObjectId, base_id: ObjectId) -> int:
        try:
            return self.delta_depth(base_id)
        except (ObjectMissingError, UnsupportedObjectError) as exc:
            raise DeltaBaseError(
                f"object {oid} cannot be stored as a delta against {base_id}: {exc}"
            ) from None

    def put_stored(
        self,
        oid: ObjectId,
        blob: bytes | bytearray | memoryview,
        *,
        write: Callable[[Callable[[], None]], None] | None = None,
        out: bytearray | memoryview | None = None,
        replacing: Replacing | None = None,
    ) -> bytes | bytearray | memoryview:
        """Store an object exactly as another store encoded it (header + payload), after checking it is ``oid``.

        This is how objects cross the wire: no re-encoding, but the payload is decoded and hashed before a byte is
        written, so a blob whose content is not ``oid`` never enters the store. Returns the decoded bytes.
        A delta object's base must already be in this store (bases travel first): it is read from here and
        verified, and a missing one raises ``DeltaBaseError`` naming both, with nothing written.
        ``write`` may run the (already verified) write elsewhere, e.g. on a writer thread, so the caller can use
        the bytes while they reach the disk; the caller must wait for it before relying on the object.
        With ``out``, the object is decoded into it when it fits and its codec can, as in ``get_into`` (the result
        is then a view of ``out``): a puller that recycles a few chunk buffers maps no fresh pages per object.
        An object named in ``replacing`` replaces what is stored under its id, as in ``put``.
        """
        if out is None:
            raw: bytes | bytearray | memoryview = self.decode_stored(oid, blob, fetch_base=self.get_stored)
        else:
            raw = _decode_chain(oid, blob, True, self.get_stored, (), out)
        self._keep(oid, blob, write, replacing)
        return raw

    def decode_received(
        self, oid: ObjectId, blob: bytes | bytearray | memoryview, *, out: bytearray | memoryview | None = None
    ) -> bytes | bytearray | memoryview | None:
        """The decoded bytes of a blob another store sent as ``oid``, NOT yet hashed: for a caller that hashes them
        anyway, in the same pass as something else (a pull, with the file they belong in), and then keeps the blob
        with ``put_received``. With ``out``, as in ``put_stored``. None for a delta: its base chain is read and
        verified here, so it goes through ``put_stored``."""
        try:
            if unpack_header(blob, f"object {oid}").codec_id == DELTA_CODEC_ID:
                return None
        except ObjectFormatError as exc:
            raise ObjectCorruptError(f"object {oid} is corrupt: {exc}") from None
        return _decode_chain(oid, blob, False, None, (), out)

    def put_received(
        self,
        oid: ObjectId,
        blob: bytes | bytearray | memoryview,
        digest: bytes,
        *,
        write: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        """Keep ``blob`` as ``oid``, given the sha256 of the bytes ``decode_received`` gave for it; raises
        ``ObjectCorruptError`` (nothing written) unless that digest is the id. ``write`` as in ``put_stored``."""
        check_object_id(oid, digest.hex())
        self._keep(oid, blob, write)

    def _keep(
        self,
        oid: ObjectId,
        blob: bytes | bytearray | memoryview,
        write: Callable[[Callable[[], None]], None] | None,
        replacing: Replacing | None = None,
    ) -> None:
        key = object_key(oid)

        def store() -> None:
            with self._replacing_damaged(oid, replacing) as replace:
                if replace or not self.backend.has(key):
                    self.backend.put(key, blob)

        if write is None:
            store()
        else:
            write(store)

    @staticmethod
    def decode_stored(
        oid: ObjectId,
        blob: bytes | bytearray | memoryview,
        *,
        verify: bool = True,
        fetch_base: FetchStored | None = None,
    ) -> bytes | bytearray:
        """The raw bytes of a stored blob, raising ``ObjectCorruptError`` unless they hash to ``oid``.

        A delta object (codec 3) also needs its base: ``fetch_base`` returns a stored blob by id (for a store,
        its ``get_stored``; ``ObjectStore.get`` passes it). Without one, a delta raises ``DeltaBaseError`` rather
        than being mistaken for a corrupt object. Every base in the chain is verified against its id unless
        ``verify`` is False (a caller that checks a hash covering the result, and re-reads with ``verify`` to name
        the culprit of a mismatch: docs/FORMAT.md "Reading a delta"); a missing or corrupt base raises
        ``DeltaBaseError`` naming the delta and the base, and a chain deeper than ``MAX_DELTA_DEPTH`` or a cycle
        raises ``DeltaChainError`` naming the chain.
        """
        raw = _decode_chain(oid, blob, verify, fetch_base, ())
        return bytes(raw) if isinstance(raw, memoryview) else raw  # never a view: no buffer was given

    def open_stored(self, oid: ObjectId) -> tuple[BinaryIO, int]:
        """A reader over the object as stored, and its size, for streaming it out without decoding."""
        key = object_key(oid)
        with _reading(oid):
            reader = self.backend.open(key)
            try:
                return reader, self.backend.size(key)
            except BaseException:
                reader.close()
                raise

    def get_stored(self, oid: ObjectId) -> bytes:
        """The object as stored (header + encoded payload), unverified: the receiver checks it. At most
        ``MAX_STORED_SIZE`` bytes are read: anything longer, or not a value at all (a FIFO or a link in its place),
        is refused as a corrupt object before it is read (``ObjectCorruptError``)."""
        with _reading(oid):
            return self.backend.get(object_key(oid), max_bytes=MAX_STORED_SIZE)

    def has(self, oid: ObjectId) -> bool:
        return self.backend.has(object_key(oid))

    def stat(self, oid: ObjectId) -> ObjectInfo:
        key = object_key(oid)
        with _reading(oid):
            head = self.backend.read_range(key, 0, HEADER_READ)
            # a short read was the whole object, which saves asking for its size (a HEAD on S3)
            size = len(head) if len(head) < HEADER_READ else self.backend.size(key)
        header = unpack_header(head, f"object {oid}")
        return ObjectInfo(
            oid,
            header.raw_length,
            size,
            CODEC_NAMES.get(header.codec_id, str(header.codec_id)),
            _base_of(oid, header),
        )

    def get(self, oid: ObjectId, *, verify: bool = True) -> bytes | bytearray:
        """The raw bytes of ``oid``, decoded and verified against the id.

        ``verify=False`` skips the re-hash; only for callers that check a hash covering these bytes (a whole
        file's sha256) before anything is handed out, so each byte is hashed once instead of twice.
        """
        return self.decode_stored(oid, self.get_stored(oid), verify=verify, fetch_base=self.get_stored)

    def standalone(self, oid: ObjectId) -> bytes:
        """``oid`` as a stored blob that needs no base: the object itself unless it is a delta, else the delta
        decoded (and verified) and encoded on its own, with the element type its delta header names. For a reader
        that may read the object but not its base (a gated parent): the same id, without the base's bytes."""
        blob = self.get_stored(oid)
        header = unpack_header(blob, f"object {oid}")
        if header.codec_id != DELTA_CODEC_ID:
            return blob
        return _encode_alone(header, self.decode_stored(oid, blob, fetch_base=self.get_stored))

    @staticmethod
    def standalone_of(oid: ObjectId, blob: bytes | bytearray | memoryview, *, fetch_base: FetchStored) -> bytes:
        """A stored blob another store holds as ``oid`` (its deltas' bases fetched with ``fetch_base``, that store's
        ``get_stored``), verified as ``oid`` and returned as a blob that needs no base: the blob itself unless it is
        a delta, else its decoded bytes encoded on their own. Raises as ``decode_stored``. For a store that takes a
        copy from a mirror (repair): the mirror's delta is against the mirror's base, which this store may lack or
        keep for nothing but that mirror's sake."""
        raw = ObjectStore.decode_stored(oid, blob, fetch_base=fetch_base)
        header = unpack_header(blob, f"object {oid}")  # (decode_stored parsed it: it is well formed)
        return bytes(blob) if header.codec_id != DELTA_CODEC_ID else _encode_alone(header, raw)

    def get_into(
        self, oid: ObjectId, out: bytearray | memoryview, *, verify: bool = True
    ) -> bytes | bytearray | memoryview:
        """``get``, decoded into the start of ``out`` when the object fits there and its codec can write into a
        buffer (float planes, raw: nearly every tensor chunk). The result is then a view of ``out``, valid until
        the caller reuses ``out``; otherwise (a delta, a zstd object, an object longer than ``out``) it is fresh
        bytes, as from ``get``. Verified against the id either way.

        Why: a reader that decodes a model chunk by chunk into a few recycled buffers (restore) touches no fresh
        pages per object; a fresh 8 MiB result per chunk costs 2,048 page faults, about as much CPU as the join.
        """
        blob = self.get_stored(oid)
        return _decode_chain(oid, blob, verify, self.get_stored, (), out)

    def fill(self, oid: ObjectId, out: memoryview) -> None:
        """``get``, written into ``out`` (writable, exactly the object's raw length) and verified there.

        A loader passes its final tensor's memory: float-planes objects (weights) are joined straight into it, with
        no temporary to copy from; other codecs decode as in ``get`` and are copied once. On any error ``out``
        holds unverified bytes, and the caller must not hand it out.
        """
        self.fill_many(((oid, out),))

    def fill_many(self, items: Sequence[tuple[ObjectId, memoryview]]) -> None:
        """``fill`` for each (id, memory) in turn, the float-planes objects hashed together at the end: two
        buffers of similar length are hashed at once where the CPU allows it (``digests.py``), which is how a
        loader's threads verify every chunk for less CPU than one hash at a time. The first object that does not
        verify is named; on any error every ``out`` may hold unverified bytes."""
        joined: list[tuple[ObjectId, memoryview]] = []
        for oid, out in items:
            out = memoryview(out).cast("B")
            blob = self.get_stored(oid)
            try:
                header = unpack_header(blob, f"object {oid}")
                check_sizes(header, len(blob), f"object {oid}")
                if header.codec_id == FloatPlanesCodec.codec_id and header.raw_length == len(out):
                    FloatPlanesCodec().decode_into(header.params, memoryview(blob)[header.size :], len(out), out)
                    joined.append((oid, out))
                    continue
            except ObjectFormatError as exc:
                raise ObjectCorruptError(f"object {oid} is corrupt: {exc}") from None
            raw = self.decode_stored(oid, blob, fetch_base=self.get_stored)
            if len(raw) != len(out):
                raise IntegrityError(f"object {oid} is {len(raw)} bytes, the reader expected {len(out)}")
            out[:] = raw
        for (oid, _out), actual in zip(joined, sha256_hexdigests([out for _oid, out in joined]), strict=True):
            check_object_id(oid, actual)

    def delta_base(self, oid: ObjectId) -> ObjectId | None:
        """The base ``oid`` is stored as a delta against, or None when it is not a delta: one ranged read of the
        header, for gc and fsck to follow chains without decoding anything."""
        key = object_key(oid)
        with _reading(oid):
            head = self.backend.read_range(key, 0, HEADER_READ)
        return _base_of(oid, unpack_header(head, f"object {oid}"))

    def delta_chain(self, oid: ObjectId) -> list[ObjectId]:
        """The bases ``oid`` depends on, nearest first (empty for a non-delta object), read from headers only.

        Raises ``DeltaChainError`` for a chain deeper than ``MAX_DELTA_DEPTH`` or a cycle, and
        ``ObjectMissingError`` when an object of the chain is missing (its message names it)."""
        chain: list[ObjectId] = []
        current: ObjectId | None = oid
        while (current := self.delta_base(current)) is not None:
            _check_chain(oid, [oid, *chain], current)
            chain.append(current)
        return chain

    def delta_depth(self, oid: ObjectId) -> int:
        """0 for an object stored on its own, else 1 + its base's depth (see ``delta_chain``)."""
        return len(self.delta_chain(oid))

    def verify(self, oid: ObjectId) -> None:
        """Raise ``ObjectMissingError``/``ObjectCorruptError`` unless ``oid`` reads back intact (or
        ``UnsupportedObjectError`` for one of a newer format, which this modelarc cannot check)."""
        self.get(oid)

    def iter_ids(self) -> Iterator[ObjectId]:
        """Every object in the store: each key under ``objects/`` that is an object's own key. Anything else there
        (a name that is not 64 hex, or a copy in another fan-out folder) is not an object (docs/FORMAT.md "Keys"):
        counting a misplaced copy would hide from fsck, repair and mirror sync that the object's own key is empty."""
        for _key, oid in self.iter_keys():
            if oid is not None:
                yield oid

    def iter_keys(self) -> Iterator[tuple[str, ObjectId | None]]:
        """Every key under ``objects/`` in one listing, with the object it holds, or None for a stray file that is
        not an object (fsck reports those)."""
        for key in self.backend.iterate(OBJECTS_PREFIX):
            yield key, _object_id_of(key)

    def stored_size(self, oid: ObjectId) -> int:
        """Bytes the object takes in the backend; raises ``ObjectMissingError`` when it is not there."""
        try:
            return self.backend.size(object_key(oid))
        except FileNotFoundError:
            raise ObjectMissingError(f"object {oid} is missing from the store") from None

    def clean_tmp(self, older_than: float) -> int:
        """Remove leftovers of killed writers older than ``older_than``; only safe while no writer runs (the
        caller holds the catalog's exclusive store lock, archive/store_lock.py)."""
        return self.backend.clean_tmp(older_than)

    def temp_count(self) -> int:
        return self.backend.temp_count()

    def reads_back(self, oid: ObjectId) -> bool:
        """Whether the copy under ``oid``'s key reads back as ``oid`` now: what decides, for a push's heal, a
        ``mirror sync --read-data`` and a repair alike, whether a stored copy must be set aside and replaced. A copy
        the catalog still calls damaged may have been replaced since (by an upload whose commit has not recorded it
        yet, or another push), and a good copy is neither set aside again nor rewritten (each would cost a
        quarantined copy of the object). One whose header this modelarc cannot read (``UnsupportedObjectError``: a
        newer format, or a flipped version or codec byte) does not read back either: the caller holds bytes that
        hash to the id, which docs/FORMAT.md "Versions" allows to take its place, and the unreadable copy is kept in
        quarantine/. A store that cannot be reached at all (``StoreAccessError``) is not an answer and propagates."""
        try:
            self.get(oid)
        except (IntegrityError, UnsupportedObjectError, OSError):
            return False
        return True

    def holds(self, oid: ObjectId, blob: bytes) -> bool:
        """Whether the stored copy of ``oid`` is exactly ``blob`` (header and payload), unverified: a repair or a
        mirror sync leaves a copy that already equals the good one where it is rather than quarantining it (a delta
        whose base is what was damaged reads as damaged, yet its own bytes are right)."""
        try:
            return self.get_stored(oid) == blob
        except (IntegrityError, OSError):
            return False

    def quarantine(self, oid: ObjectId, stamp: str) -> str | None:
        """Move the stored copy of ``oid`` out of the way, to ``quarantine/<id>.<stamp>``, before a good copy
        replaces it: a damaged object is kept for a look, never overwritten in place. The key it went to, or None
        when there was nothing under the object's key."""
        key = object_key(oid)
        try:
            blob = self.backend.get(key, max_bytes=MAX_STORED_SIZE)
        except FileNotFoundError:
            return None
        except StoredValueError as exc:
            # nothing there can be read to keep (a FIFO, a link, a file longer than any object): what it was is
            blob = f"not kept: {exc}\n".encode()
        aside = f"{QUARANTINE_PREFIX}/{oid}.{stamp}"
        n = 1
        while self.backend.has(aside):  # a copy set aside earlier in the same second is kept too
            n += 1
            aside = f"{QUARANTINE_PREFIX}/{oid}.{stamp}.{n}"
        self.backend.put(aside, blob)
        self.backend.sync()
        self.backend.delete(key)
        return aside

    def quarantined(self) -> list[str]:
        return sorted(self.backend.iterate(QUARANTINE_PREFIX))

    def delete(self, oid: ObjectId) -> None:
        self.backend.delete(object_key(oid))

    def sync(self) -> None:
        self.backend.sync()


@contextlib.contextmanager
def _reading(oid: ObjectId) -> Iterator[None]:
    """A backend's answers for what is under ``oid``'s key, as the store's errors: nothing there is a missing
    object; something that is not a value (a FIFO, a link, a file longer than any object) is a corrupt one, which
    scrub and verify report and repair replaces from a mirror."""
    try:
        yield
    except FileNotFoundError:
        raise ObjectMissingError(f"object {oid} is missing from the store") from None
    except StoredValueError as exc:
        raise ObjectCorruptError(f"object {oid} is corrupt: {exc}") from None


def _encode_alone(delta_header: ObjectHeader, raw: bytes | bytearray) -> bytes:
    """A delta's decoded bytes encoded on their own, with the element type its delta header names."""
    hint = next((name for name, kind in ELEMENT_TYPES.items() if kind == delta_header.params[1]), None)
    encoded = choose_and_encode(raw, hint)
    return ObjectHeader(encoded.codec_id, len(raw), encoded.params).pack() + bytes(encoded.payload)


def delta_base_of(oid: ObjectId, blob: bytes | bytearray | memoryview) -> ObjectId | None:
    """The base the stored blob ``oid`` is a delta against, from its header alone, or None when it is not a delta:
    what a receiver checks before it decodes anything."""
    return _base_of(oid, unpack_header(blob, f"object {oid}"))


def _base_of(oid: ObjectId, header: ObjectHeader) -> ObjectId | None:
    """Its base from the header; ``UnsupportedObjectError`` for a codec this modelarc does not know, which may
    need bases of its own: gc and every other caller that follows chains must not take it for "none"."""
    if header.codec_id not in CODECS:
        raise unknown_codec(header.codec_id, f"object {oid}")
    if header.codec_id != DELTA_CODEC_ID:
        return None
    try:
        return ObjectId(parse_params(header.params).base.hex())
    except ObjectFormatError as exc:
        raise ObjectFormatError(f"object {oid}: {exc}") from None


def _check_chain(oid: ObjectId, path: list[ObjectId] | tuple[ObjectId, ...], base: ObjectId) -> None:
    """``path`` is the deltas from ``oid`` down to the one whose base is ``base``: refuse a cycle or a depth
    above ``MAX_DELTA_DEPTH``, naming every object of the chain."""
    names = " -> ".join([*path, base])
    if base in path:
        raise DeltaChainError(f"object {oid} is corrupt: its delta chain comes back on itself: {names}")
    if len(path) > MAX_DELTA_DEPTH:
        raise DeltaChainError(
            f"object {oid} is corrupt: its delta chain is deeper than {MAX_DELTA_DEPTH}: {names}"
        )


def check_object_id(oid: ObjectId, actual: str) -> None:
    """Raise ``ObjectCorruptError`` naming ``oid`` unless ``actual`` (the hex sha256 of its decoded bytes) is it."""
    if actual != oid:
        raise ObjectCorruptError(f"object {oid} is corrupt: its bytes hash to {actual}")


def _decode_chain(
    oid: ObjectId,
    blob: bytes | bytearray | memoryview,
    verify: bool,
    fetch_base: FetchStored | None,
    path: tuple[ObjectId, ...],
    out: bytearray | memoryview | None = None,
) -> bytes | bytearray | memoryview:
    """``decode_stored``, with ``path`` the deltas being decoded whose chain leads here (outermost first); with
    ``out``, into ``out`` when the object fits and its codec can (see ``ObjectStore.get_into``)."""
    name = f"object {oid}"
    try:
        header = unpack_header(blob, name)
        check_sizes(header, len(blob), name)
        payload = memoryview(blob)[header.size :]
        if header.codec_id == DELTA_CODEC_ID:
            params = parse_params(header.params)
            base_id = ObjectId(params.base.hex())
            outer = path[0] if path else oid
            _check_chain(outer, (*path, oid), base_id)
            if fetch_base is None:
                raise DeltaBaseError(
                    f"object {oid} is a delta against {base_id}, and this reader was given no way to fetch its "
                    "base (decode it through its store, or pass fetch_base)"
                )
            try:
                base = _decode_chain(base_id, fetch_base(base_id), verify, fetch_base, (*path, oid))
            except DeltaChainError:
                raise
            except IntegrityError as exc:  # missing, corrupt, or a broken chain further down
                raise DeltaBaseError(
                    f"object {oid} is a delta against {base_id}, which cannot be read: {exc}"
                ) from None
            raw: bytes | bytearray | memoryview = DeltaCodec().decode_against(
                params, payload, header.raw_length, base
            )
        else:
            codec = codec_by_id(header.codec_id, name)
            decode_into = getattr(codec, "decode_into", None)
            if out is not None and decode_into is not None and header.raw_length <= len(out):
                raw = memoryview(out)[: header.raw_length]
                decode_into(header.params, payload, header.raw_length, raw)
            else:
                raw = codec.decode(header.params, payload, header.raw_length)
    except ObjectFormatError as exc:
        raise ObjectCorruptError(f"object {oid} is corrupt: {exc}") from None
    if verify:
        check_object_id(oid, hashlib.sha256(raw).hexdigest())
    return raw
