"""Archived tensors straight into torch, on CUDA when present and on CPU otherwise.

Nothing is written to disk for weights: each tensor's chunks are decoded from the store into the tensor they end in.
On CPU each chunk is decoded, on two threads, straight into its tensor's memory and verified there, two chunks of
similar length hashed at once (``storage/digests.py``); a chunk changing dtype is decoded into a per-thread scratch
buffer, verified, and cast into place. For CUDA, each tensor is decoded into one reusable host buffer (pinned) and copied once, the
dtype conversion and the move to the device in the same copy. The same code runs on CPU with ``device="cpu"``,
which is how it is tested here. ``load_model`` builds the model on the meta device, so no weight is allocated
twice, initialised at random or cast after loading. Only tokenizers are restored to a temporary folder, because
the tokenizer classes read files by path; they are small.

With ``cache=True`` the snapshot's safetensors files are decoded once into the load cache (``cache.py``) and every
load maps them instead: each tensor is then a view of the mapped file (copy-on-write, so the model may be trained
without touching the cache), or one copy when its dtype or device changes.
"""

from __future__ import annotations

import json
import math
import mmap
import threading
import warnings
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import cached_property
from typing import Any, BinaryIO, cast

import numpy as np
import torch

from modelarc.archive.catalog.views import SnapshotView
from modelarc.archive.manifest import Chunk, FileEntry, Part, SnapshotManifest
from modelarc.archive.repository import Archive, refuse_if_withdrawn
from modelarc.archive.restore import READ_AHEAD, iter_chunk_bytes
from modelarc.archive.runtime.cache import LoadCache, weight_files
from modelarc.errors import ModelarcError, NotFoundError, UsageError
from modelarc.registry.refs import SnapshotId
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.digests import pairs_well
from modelarc.storage.pages import populate_for_write

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
DTYPE_NAMES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
DECODE_THREADS = 2  # zstd, the plane join and sha256 all release the GIL: one thread per core of a small machine
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "added_tokens.json",
    "spiece.model",
    "config.json",
    "generation_config.json",
)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is the first CUDA device when one is usable, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from None
    if resolved.type not in ("cpu", "cuda"):
        # meta, mps, xpu...: meta holds no data (a load there would look like success), the others are untested here
        raise UsageError(f"device {device!r} cannot be loaded onto: use auto, cpu or cuda[:N]")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} asked for, but CUDA is not available here")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise UsageError(f"unknown dtype {dtype!r}: one of {', '.join(DTYPE_NAMES)}") from None


def _torch_dtype(part: Part) -> torch.dtype:
    try:
        return TORCH_DTYPES[part.dtype or ""]
    except KeyError:
        raise UsageError(f"tensor {part.name}: dtype {part.dtype} cannot be loaded into torch") from None


def _bytes_of(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's own storage as a flat writable uint8 array (CPU, contiguous)."""
    return tensor.view(-1).view(torch.uint8).numpy() if tensor.numel() else np.empty(0, np.uint8)


def land(
    archive: Archive,
    device: torch.device,
    plan: list[tuple[Part, torch.dtype | None]],
    staged: bool = False,
) -> Generator[tuple[Part, torch.Tensor], None, None]:
    """Each planned part as a new tensor on ``device`` in its planned dtype (None: the archived one), in plan order.

    On CPU every chunk is decoded straight into its tensor's final memory and verified there (``_land_direct``).
    For another device, each tensor is decoded into one reusable host staging buffer, pinned for CUDA, and one
    ``copy_`` into the final tensor converts the dtype and crosses to the device in the same step; no tensor
    handed out is a view of that buffer. ``staged=True`` takes that path on CPU too, so that the GPU path's code
    runs in the tests here.
    """
    pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="modelarc-load")
    try:
        if device.type == "cpu" and not staged:
            yield from _land_direct(archive.store, plan, pool)
        else:
            yield from _land_staged(archive, device, plan, pool)
    finally:
        pool.shutdown(cancel_futures=True)


@dataclass(frozen=True)
class _Piece:
    """Chunks of one part decoded by one job: one chunk, or a part's every chunk when it is cast whole. They start
    ``offset`` bytes into the part as archived and hold ``length`` bytes."""

    part: int
    chunks: tuple[Chunk, ...]
    offset: int
    length: int


PAIR_WINDOW = 8  # how far ahead a piece looks for a partner of a similar length to be hashed with


def _land_direct(
    store: ObjectStore, plan: list[tuple[Part, torch.dtype | None]], pool: ThreadPoolExecutor
) -> Generator[tuple[Part, torch.Tensor], None, None]:
    """The CPU path: every chunk decoded by ``pool`` straight into the bytes of the tensor it ends in and hashed
    there (``ObjectStore.fill_many``), so each decoded byte is written once and read once, by sha256; a chunk whose
    tensor changes dtype is decoded into its thread's scratch buffer, hashed, and cast into place in one copy.

    A job decodes two pieces of similar length where it can (the nearest such partner within ``PAIR_WINDOW``) and
    hashes them together, for less CPU than hashing each alone (``storage/digests.py``). Jobs run up to
    ``READ_AHEAD`` ahead of the tensor being handed out, across tensor boundaries (most tensors are one chunk, and
    read-ahead within one tensor would leave a thread idle). Each tensor is allocated, empty, when the first job
    writing into it is queued, and yielded once every job writing into it is done.
    """
    for part, _dtype in plan:
        if sum(c.length for c in part.chunks) != part.length:
            raise ModelarcError(
                f"tensor {part.name}: its chunks hold {sum(c.length for c in part.chunks)} bytes, the manifest "
                f"says {part.length}"
            )
        _check_size(part)
    dtypes = [(_torch_dtype(part), dtype or _torch_dtype(part)) for part, dtype in plan]
    jobs = _paired(list(_pieces(plan, dtypes)))
    last_job = [-1] * len(plan)  # per part: the last job writing into it (-1: none, the part is empty)
    for index, job in enumerate(jobs):
        for piece in job:
            last_job[piece.part] = index
    tensors: list[torch.Tensor | None] = [None] * len(plan)
    scratch = threading.local()

    def tensor(i: int) -> torch.Tensor:
        made = tensors[i]
        if made is None:
            made = tensors[i] = torch.empty(tuple(plan[i][0].shape or ()), dtype=dtypes[i][1])
        return made

    def start(job: tuple[_Piece, ...]) -> Future[None]:
        work: list[_Work] = []
        for piece in job:
            source, final = dtypes[piece.part]
            if final == source:
                memory = _bytes_of(tensor(piece.part)).data[piece.offset : piece.offset + piece.length]
                work.append((piece.chunks, memory, None, source))
            else:
                at, count = piece.offset // source.itemsize, piece.length // source.itemsize
                work.append((piece.chunks, None, tensor(piece.part).view(-1)[at : at + count], source))
        return pool.submit(_decode_job, store, work, scratch)

    queued: deque[Future[None]] = deque()
    submitted = done = 0
    try:
        for i, (part, _dtype) in enumerate(plan):
            while submitted < len(jobs) and submitted <= last_job[i] + READ_AHEAD:
                queued.append(start(jobs[submitted]))
                submitted += 1
            while done <= last_job[i]:
                queued.popleft().result()
                done += 1
            landed = tensor(i)
            tensors[i] = None  # held by the caller from here: a consumer that drops it frees it
            yield part, landed
    finally:
        for fut in queued:  # a failed or abandoned load: decoding nobody will take
            fut.cancel()


def _pieces(
    plan: list[tuple[Part, torch.dtype | None]], dtypes: list[tuple[torch.dtype, torch.dtype]]
) -> Iterator[_Piece]:
    """Every chunk of the plan, in order, as a piece of its own; a part changing dtype whose chunks split an
    element (no writer does; another might) as one piece, cast whole."""
    for i, (part, _dtype) in enumerate(plan):
        source, final = dtypes[i]
        if final != source and any(c.length % source.itemsize for c in part.chunks):
            yield _Piece(i, part.chunks, 0, part.length)
            continue
        offset = 0
        for chunk in part.chunks:
            yield _Piece(i, (chunk,), offset, chunk.length)
            offset += chunk.length


def _paired(pieces: list[_Piece]) -> list[tuple[_Piece, ...]]:
    """The pieces as jobs, in the order of each job's first piece: a piece is joined by the first later one within
    ``PAIR_WINDOW`` whose length pairs well with its own for hashing (``pairs_well``); the rest go alone."""
    taken = [False] * len(pieces)
    jobs: list[tuple[_Piece, ...]] = []
    for i, piece in enumerate(pieces):
        if taken[i]:
            continue
        partner = next(
            (
                j
                for j in range(i + 1, min(i + 1 + PAIR_WINDOW, len(pieces)))
                if not taken[j] and pairs_well(piece.length, pieces[j].length)
            ),
            None,
        )
        if partner is None:
            jobs.append((piece,))
        else:
            taken[partner] = True
            jobs.append((piece, pieces[partner]))
    return jobs


# A piece's work on a decoding thread: its chunks, the tensor bytes they are decoded into (None: a scratch buffer),
# the elements they are cast into (None: kept in their dtype), their archived dtype.
_Work = tuple[tuple[Chunk, ...], "memoryview | None", "torch.Tensor | None", torch.dtype]


def _decode_job(store: ObjectStore, work: list[_Work], scratch: threading.local) -> None:
    """Every piece's chunks decoded into place and verified in one ``fill_many`` (so that they are hashed
    together), then each piece changing dtype cast from its scratch buffer into its tensor (the conversion is
    torch's own, as in ``from_pretrained``). This thread's scratch buffers are reused from job to job."""
    held: list[bytearray] = scratch.__dict__.setdefault("buffers", [])
    fills: list[tuple[ObjectId, memoryview]] = []
    casts: list[tuple[memoryview, torch.Tensor, torch.dtype]] = []
    for chunks, memory, target, source in work:
        if memory is not None:
            populate_for_write(memory)  # fresh tensor pages, mapped at once, not faulted by the join
        else:
            need, slot = sum(c.length for c in chunks), len(casts)
            if len(held) <= slot:
                held.append(bytearray(need))
            elif len(held[slot]) < need:
                held[slot] = bytearray(need)
            memory = memoryview(held[slot])[:need]
            casts.append((memory, cast(torch.Tensor, target), source))
        pos = 0
        for chunk in chunks:
            fills.append((chunk.id, memory[pos : pos + chunk.length]))
            pos += chunk.length
    store.fill_many(fills)
    for memory, target, source in casts:
        if len(memory):
            populate_for_write(_bytes_of(target).data)  # fresh tensor pages, mapped at once, not faulted by the copy
            target.copy_(torch.frombuffer(memory, dtype=source))
        memory.release()


def _check_size(part: Part) -> None:
    """Refuse, before anything is allocated or decoded, a part whose shape and dtype do not make its length."""
    elements = math.prod(part.shape or ())
    if elements * _torch_dtype(part).itemsize != part.length:
        raise ModelarcError(
            f"tensor {part.name}: shape {list(part.shape or ())} of {part.dtype} is not the {part.length} bytes "
            "the manifest gives it"
        )


def _land_staged(
    archive: Archive,
    device: torch.device,
    plan: list[tuple[Part, torch.dtype | None]],
    pool: ThreadPoolExecutor,
) -> Generator[tuple[Part, torch.Tensor], None, None]:
    """Every tensor through the reusable host staging buffer (see ``land``). The chunks of every part are one
    stream, decoded ahead on the pool's threads across tensor boundaries."""
    staging = torch.empty(
        max((p.length for p, _d in plan), default=0), dtype=torch.uint8, pin_memory=device.type == "cuda"
    )
    chunks = iter_chunk_bytes(archive.store, (c for p, _d in plan for c in p.chunks), pool)
    try:
        for part, dtype in plan:
            source = _torch_dtype(part)
            final = dtype or source
            shape = tuple(part.shape or ())
            view = staging[: part.length]
            _decode_into(part, chunks, view.numpy())
            out = torch.empty(shape, dtype=final, device=device)
            out.copy_(view.view(source).view(shape), non_blocking=device.type == "cuda")
            if device.type == "cuda":
                torch.cuda.current_stream(device).synchronize()  # the staging buffer is reused next
            yield part, out
    finally:
        chunks.close()


def _decode_into(part: Part, chunks: Iterator[bytes | bytearray], target: np.ndarray) -> None:
    """The next ``len(part.chunks)`` decoded chunks into the flat uint8 array ``target`` (len == part.length)."""
    pos = 0
    for _chunk in part.chunks:
        data = next(chunks)
        target[pos : pos + len(data)] = np.frombuffer(data, dtype=np.uint8)
        pos += len(data)
    if pos != part.length:
        raise ModelarcError(f"tensor {part.name}: decoded {pos} bytes, manifest says {part.length}")


FilePlan = list[tuple[FileEntry, Part, "torch.dtype | None"]]


def land_snapshot(
    archive: Archive,
    snapshot: SnapshotId,
    model: str,
    manifest: SnapshotManifest,
    device: torch.device,
    plan: FilePlan,
    *,
    cache: bool,
) -> Generator[tuple[Part, torch.Tensor], None, None]:
    """``land`` for a plan of (file, part, dtype): from the load cache when ``cache`` (filled first if need be), else
    decoded from the store. A snapshot the cache cannot hold (tensors outside safetensors files, or larger than
    the cap) is decoded as without the cache."""
    files = open_cached(archive, snapshot, model, manifest) if cache else None
    if files is None:
        return land(archive, device, [(p, d) for _f, p, d in plan])
    return land_cached(files, device, plan)


def open_cached(
    archive: Archive, snapshot: SnapshotId, model: str, manifest: SnapshotManifest
) -> dict[str, BinaryIO] | None:
    """The snapshot's cached files, open and checked (``LoadCache.open_files``), filling the entry when there is none
    usable; None when the cache cannot serve this snapshot."""
    if not weight_files(manifest) or any(f.kind != "safetensors" for f, _p in manifest.tensors()):
        return None
    cache = LoadCache.of(archive.settings)
    private = weights_withheld(archive, model, snapshot)
    if private:
        cache.make_private(snapshot)  # an entry filled while the snapshot was public (or by an older modelarc)
    for _attempt in range(2):  # a second time only if another process evicted the entry just filled
        files = cache.open_files(snapshot, manifest)
        if files is not None:
            return files
        if cache.blocked(snapshot):
            warnings.warn(
                f"load cache: the entry of {snapshot} in {cache.folder} is not used (another user's, writable by "
                "others, or changed since it was written) and cannot be removed here; loading from the archive",
                stacklevel=2,
            )
            return None
        if not cache.fill(archive.store, snapshot, model, manifest, private=private):
            return None
        if not private and weights_withheld(archive, model, snapshot):
            # a stricter policy committed while this filled it: its purge may have run before the entry was in
            # place, so the copy just written open is closed now, as the next load would (``make_private``)
            private = True
            cache.make_private(snapshot)
    return None


def weights_withheld(archive: Archive, model: str, snapshot: SnapshotId) -> bool:
    """Whether the snapshot's policy withholds its weights from someone (gated, restricted, an embargo not yet
    lapsed): its decoded copy in the load cache is then written private (``LoadCache.fill``), as the server would
    not hand those bytes to every local user either."""
    from modelarc.archive.access import effective_policy

    return effective_policy(archive, model, str(snapshot)).withholds


def land_cached(
    files: dict[str, BinaryIO], device: torch.device, plan: FilePlan
) -> Generator[tuple[Part, torch.Tensor], None, None]:
    """Each planned part as a tensor over its bytes in the mapped cached file (closed here once mapped).

    Each file is mapped once, private and copy-on-write: writes to a tensor stay in this process. Each tensor gets
    its own storage over its own byte range (``frombuffer`` with an offset), so no two tensors share a storage, as
    after a decoding load. A tensor that changes dtype or device is copied once; one whose offset is not a multiple
    of its element size (safetensors aligns them; another writer may not) is copied to an aligned buffer.
    """
    maps: dict[str, mmap.mmap] = {}
    try:
        for path, fh in files.items():
            maps[path] = mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        for fh in files.values():
            fh.close()
    for entry, part, dtype in plan:
        source = _torch_dtype(part)
        final = dtype or source
        shape = tuple(part.shape or ())
        buffer = maps[entry.path]
        if part.offset + part.length > len(buffer):
            raise ModelarcError(f"tensor {part.name}: cached {entry.path} is shorter than the manifest says")
        if not part.length:
            host = torch.empty(shape, dtype=source)
        elif part.offset % source.itemsize:
            host = torch.frombuffer(bytearray(buffer[part.offset : part.offset + part.length]), dtype=source)
        else:
            host = torch.frombuffer(buffer, dtype=source, count=part.length // source.itemsize, offset=part.offset)
        host = host.view(shape)
        yield part, host if final == source and device.type == "cpu" else host.to(device=device, dtype=final)


def iter_tensors(
    archive: Archive,
    manifest: SnapshotManifest,
    device: torch.device,
    dtype: torch.dtype | None,
    *,
    staged: bool = False,
) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) on ``device``, floating tensors in ``dtype`` when given. ``staged`` forces the CUDA path (one
    reusable host buffer, then a copy) on CPU; see ``land``."""
    plan = [(p, _cast(p, dtype)) for _f, p in manifest.tensors()]
    with closing(land(archive, device, plan, staged)) as landed:
        for part, tensor in landed:
            yield part.name or "", tensor


def _cast(part: Part, dtype: torch.dtype | None) -> torch.dtype | None:
    """``dtype`` for a floating tensor, None (keep the archived dtype) for the rest."""
    return dtype if dtype is not None and _torch_dtype(part).is_floating_point else None


def load_state_dict(
    archive: Archive,
    ref: str,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    *,
    cache: bool = False,
) -> dict[str, torch.Tensor]:
    """Every tensor of the snapshot, by name, on ``device`` (floating tensors cast to ``dtype`` if given).

    ``cache=True`` keeps a verified copy of the snapshot's files in the load cache and maps it on later loads."""
    _r, snap = archive.resolve(ref)
    refuse_if_withdrawn(snap, ref)
    manifest = archive.manifest(snap)
    archive.check_signature(snap, manifest)  # as a pull does: a key distrusted since, or a bundle gone, is refused
    target, cast = resolve_device(device), resolve_dtype(dtype)
    if not cache:
        return dict(iter_tensors(archive, manifest, target, cast))
    plan = [(f, p, _cast(p, cast)) for f, p in manifest.tensors()]
    with closing(land_snapshot(archive, snap.digest, snap.model, manifest, target, plan, cache=True)) as landed:
        return {part.name or "": tensor for part, tensor in landed}


def _file(manifest: SnapshotManifest, path: str) -> FileEntry | None:
    return next((f for f in manifest.files if f.path == path), None)


# config.json and generation_config.json are read whole, into memory: real ones are a few KB (an id2label of many
# thousand classes, a few MB); a snapshot's files are anyone's, so a larger one is refused by its manifest size
MAX_CONFIG_BYTES = 16 << 20


def read_small_file(
    archive: Archive, manifest: SnapshotManifest, path: str, limit: int = MAX_CONFIG_BYTES
) -> bytes | None:
    """The bytes of the snapshot's file ``path`` (None without one), refused before a byte is read when its manifest
    says it holds more than ``limit``."""
    entry = _file(manifest, path)
    if entry is None:
        return None
    if entry.size > limit:
        raise UsageError(f"{path} is {entry.size:,} bytes; it is read whole, so at most {limit:,} are read")
    with ThreadPoolExecutor(max_workers=1) as pool:
        return b"".join(
            bytes(d) for p in entry.parts for d in iter_chunk_bytes(archive.store, p.chunks, pool)
        )


@dataclass
class SnapshotHandle:
    """An archived snapshot opened for study: its manifest now, what ``show`` says about it and its tensors on
    demand (``info`` is a few catalog queries, ~4 ms, that a load does not need)."""

    archive: Archive
    ref: str
    snapshot: SnapshotId
    model: str
    manifest: SnapshotManifest

    @property
    def id(self) -> str:
        return self.snapshot

    @cached_property
    def info(self) -> SnapshotView:
        # by id, not by ``ref`` again: a tag moved since the handle was opened must not describe another snapshot
        return self.archive.show(f"{self.model}@{self.snapshot}")

    def tensor_names(self) -> list[str]:
        return [p.name or "" for _f, p in self.manifest.tensors()]

    def tensor(
        self, name: str, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
    ) -> torch.Tensor:
        part = next((p for _f, p in self.manifest.tensors() if p.name == name), None)
        if part is None:
            raise NotFoundError(f"{self.ref} has no tensor {name!r}")
        plan = [(part, _cast(part, resolve_dtype(dtype)))]
        with closing(land(self.archive, resolve_device(device), plan)) as landed:
            return next(landed)[1]

    def config(self) -> dict[str, Any] | None:
        """The archived config.json, or None without one; ``UsageError`` for one that is not a JSON object (a
        snapshot's files are anyone's, and a received one may hold anything)."""
        return self._json_document("config.json")

    def generation_config(self) -> dict[str, Any] | None:
        """The archived generation_config.json (what ``from_pretrained`` makes a model's generation defaults), or
        None without one; checked as ``config`` is."""
        return self._json_document("generation_config.json")

    def _json_document(self, path: str) -> dict[str, Any] | None:
        try:
            raw = read_small_file(self.archive, self.manifest, path)
        except UsageError as exc:
            raise UsageError(f"{self.ref}: {exc}") from None
        if not raw:
            return None
        try:
            doc = json.loads(raw)
        # ValueError: not JSON, not UTF-8, or an integer of more than 4300 digits; RecursionError: nested too deeply
        except (ValueError, RecursionError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise UsageError(f"{self.ref}: {path} is not valid JSON ({reason})") from None
        if not isinstance(doc, dict):
            raise UsageError(f"{self.ref}: {path} is not a JSON object")
        return doc


def open_snapshot(archive: Archive, ref: str) -> SnapshotHandle:
    """The snapshot opened for study, once its signature verifies against a key this archive trusts (as for a
    pull: each byte is still checked against its object id as it is read, but a load of a snapshot whose key was
    distrusted since, or whose bundle is gone, went ahead)."""
    _r, snap = archive.resolve(ref)
    refuse_if_withdrawn(snap, ref)
    manifest = archive.manifest(snap)
    archive.check_signature(snap, manifest)
    return SnapshotHandle(archive, ref, snap.digest, snap.model, manifest)
