"""Checking a manifest that came from elsewhere before anything in it is recorded (docs/SECURITY.md).

A manifest received over the wire is signed, but a signature only says who made the claims, not that they are
true: a pusher with a trusted key could still sign a manifest whose file sizes are 2^62 or -5, whose sha256 does
not match the bytes its chunks rebuild, or whose tensor entries disagree with the safetensors header stored in the
same file. Two passes, cheap first:

- ``check_manifest_structure``: sizes, counts, offsets, part and chunk arithmetic, dtype x shape; no store access.
- ``check_manifest_content``: streams every file's chunks from the store (each object re-hashed on the way), checks
  each file's size and sha256, and parses safetensors/GGUF headers to compare them with the tensor parts. Memory is
  bounded by the read-ahead of ``iter_chunk_bytes``; no file is ever held whole.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from concurrent.futures import ThreadPoolExecutor

from modelarc.archive.formats.gguf import read_layout as read_gguf_layout
from modelarc.archive.formats.safetensors import DTYPE_BITS, parse_layout
from modelarc.archive.limits import (
    MAX_SAFETENSORS_HEADER_BYTES,
    check_file_tensors,
    check_snapshot_files,
    check_snapshot_tensors,
)
from modelarc.archive.manifest import (
    FileEntry,
    Part,
    SnapshotManifest,
    file_kind,
    is_git_path,
    printable_path,
)
from modelarc.archive.restore import file_chunks, iter_chunk_bytes
from modelarc.errors import IntegrityError, ModelarcError
from modelarc.registry.bounds import text_problem
from modelarc.storage import ObjectStore
from modelarc.storage.objectformat import MAX_RAW_LENGTH

# A receiver applies the same limits as a local push (archive/limits.py, docs/FORMAT.md "Limits"), so every
# snapshot one archive accepts can be sent to another, and a pushed manifest cannot cost the receiver more catalog
# rows than a local push of the same bytes would. Beyond those, the numbers a manifest can declare at all:
MAX_FILE_BYTES = 1 << 50  # 1 PiB: no single file of a real model comes near; 2^62 sizes are refused
MAX_CHUNK_BYTES = MAX_RAW_LENGTH  # the largest object a receiver accepts (ingest writes 8 MiB chunks)
MAX_HEADER_PART_BYTES = MAX_SAFETENSORS_HEADER_BYTES + 8
_HEX64 = re.compile(r"[0-9a-f]{64}")  # fullmatch: match and a final "$" let "<64 hex>\n" in
_PART_KINDS = {"safetensors": {"header", "tensor"}, "gguf": {"header", "tensor", "pad"}, "blob": {"blob"}}
# Kinds an earlier modelarc gave a path that today's writer gives another kind (file_kind), which a receiver must
# still accept: the first modelarc (until 2026-11-24, commit 091a2b7) did not parse GGUF and stored a .gguf file as a
# blob. Nothing else ever differed: .safetensors was parsed from the first commit, both suffixes case-sensitively.
_EARLIER_KINDS = {"gguf": frozenset({"blob"})}


def check_manifest_structure(manifest: SnapshotManifest, label: str) -> None:
    """Refuse a manifest whose numbers cannot describe real files, before any object is read."""
    check_snapshot_files(label, len(manifest.files))
    for f in manifest.files:
        _check_file(f, label)
        check_file_tensors(f"{label}: {f.path}", sum(1 for _ in f.tensors()))
    check_snapshot_tensors(label, sum(1 for _ in manifest.tensors()), manifest.logical_bytes)


def refuse_git_paths(manifest: SnapshotManifest, label: str) -> None:
    """Refuse a manifest with a ``.git`` path segment (any case), before anything is fetched or written.

    A ``.git`` folder or file in a restored folder is git's own metadata: ``.git/config`` can name commands git
    runs (``core.fsmonitor``, hooks), and a ``.git`` file redirects git to another folder. No model needs one,
    modelarc's push never archives one (archive/ingest.py skips ``.git``), and a pull destination may itself sit in
    a git checkout. ``.gitattributes``, ``.gitignore`` and ``.github`` are ordinary files here (Hub repositories
    carry ``.gitattributes``), and a signature must cover them like any other file.
    """
    for f in manifest.files:
        if is_git_path(f.path):
            raise IntegrityError(
                f"{label}: {printable_path(f.path)} is a .git path, which a model snapshot never holds "
                "(it would be git metadata in the restored folder); refused"
            )


def _check_file(f: FileEntry, label: str) -> None:
    where = f"{label}: {f.path}"
    if not isinstance(f.size, int) or not 0 <= f.size <= MAX_FILE_BYTES:
        raise IntegrityError(f"{where}: size {f.size} is not between 0 and {MAX_FILE_BYTES}")
    if not _HEX64.fullmatch(f.sha256):
        raise IntegrityError(f"{where}: sha256 {f.sha256[:80]!r} is not 64 lowercase hex digits")
    kinds = _PART_KINDS.get(f.kind)
    if kinds is None:
        raise IntegrityError(f"{where}: unknown file kind {f.kind[:40]!r}")
    _check_kind_follows_path(f, where)
    cursor = 0
    for i, p in enumerate(f.parts):
        if p.kind not in kinds:
            raise IntegrityError(f"{where}: part {i} of kind {p.kind[:40]!r} in a {f.kind} file")
        if (p.kind == "header") != (i == 0 and f.kind != "blob"):
            raise IntegrityError(f"{where}: a {f.kind} file starts with its header part, and has one")
        if p.offset != cursor:
            raise IntegrityError(f"{where}: part {i} starts at {p.offset}, expected {cursor}")
        if p.length < 0 or sum(c.length for c in p.chunks) != p.length:
            raise IntegrityError(f"{where}: the chunks of part {i} do not add up to its length {p.length}")
        for c in p.chunks:
            if not 0 < c.length <= MAX_CHUNK_BYTES:
                raise IntegrityError(f"{where}: chunk {c.id} has length {c.length}")
        if p.kind == "tensor":
            _check_tensor_part(p, f.kind, where)
        cursor += p.length
    if cursor != f.size:
        raise IntegrityError(f"{where}: the chunks of {f.path} do not add up to its size {f.size}")
    if f.kind == "safetensors" and f.parts and f.parts[0].length > MAX_HEADER_PART_BYTES:
        raise IntegrityError(f"{where}: header part of {f.parts[0].length} bytes")


def _check_kind_follows_path(f: FileEntry, where: str) -> None:
    """Refuse a file whose kind is not the one its path gives (docs/FORMAT.md "Parts"). The kind decides how the
    file is read: ``weights.bin`` claimed as safetensors would be loaded as tensors and listed as such, a
    ``model.safetensors`` or ``x.gguf`` claimed as a blob would skip the header check that ties the catalog's tensor
    rows to the file, and no modelarc would have written either, so the same folder pushed here gets another
    snapshot id. What an earlier modelarc wrote (``_EARLIER_KINDS``) still passes."""
    expected = file_kind(f.path)
    if f.kind != expected and f.kind not in _EARLIER_KINDS.get(expected, frozenset()):
        if expected == "blob":
            rule = "a path not ending in .safetensors or .gguf (compared case-sensitively) is a blob"
        else:
            rule = f"a path ending in .{expected} is a {expected} file"
        raise IntegrityError(
            f"{where}: the manifest gives it kind {f.kind!r}, but {rule} (docs/FORMAT.md \"Parts\"); refused"
        )


def _check_tensor_part(p: Part, kind: str, where: str) -> None:
    if not isinstance(p.name, str) or not isinstance(p.dtype, str) or p.shape is None:
        raise IntegrityError(f"{where}: a tensor part without name, dtype or shape")
    # no tensor row could hold a NUL (PostgreSQL refuses it) or a lone surrogate (a JSON "\ud800": not UTF-8)
    if (problem := text_problem(p.name) or text_problem(p.dtype)) is not None:
        raise IntegrityError(f"{where}: tensor {p.name[:200]!r} has {problem} in its name or dtype")
    if any(not isinstance(d, int) or d < 0 for d in p.shape) or len(p.shape) > 16:
        raise IntegrityError(f"{where}: tensor {p.name[:200]!r} has shape {p.shape!r}")
    if kind == "safetensors":
        bits = DTYPE_BITS.get(p.dtype)
        if bits is None or math.prod(p.shape) * bits != p.length * 8:
            raise IntegrityError(
                f"{where}: tensor {p.name[:200]!r} is {p.length} bytes, not shape {p.shape} x {p.dtype[:20]}"
            )


def check_manifest_content(
    store: ObjectStore, manifest: SnapshotManifest, label: str, *, jobs: int = 2
) -> None:
    """Rebuild every file from the store without writing it: each must hash to its sha256 and size.

    Safetensors and GGUF headers are parsed from the rebuilt bytes and must list exactly the tensor parts (name,
    dtype, shape, offset, length) the manifest gives, so the catalog's tensor rows describe the real file.
    """
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="modelarc-check") as pool:
        for f in manifest.files:
            sha = hashlib.sha256()
            size = 0
            header = bytearray()
            header_length = f.header_length
            for data in iter_chunk_bytes(store, file_chunks(f), pool):
                sha.update(data)
                if size < header_length:
                    header += data[: header_length - size]
                size += len(data)
            if size != f.size or sha.hexdigest() != f.sha256:
                raise IntegrityError(
                    f"{label}: {f.path} does not rebuild to its declared size and sha256 "
                    f"({size} bytes, sha256 {sha.hexdigest()}; the manifest says {f.size}, {f.sha256})"
                )
            check_tensors_match_header(f, bytes(header), label)


def check_tensors_match_header(f: FileEntry, header: bytes, label: str) -> None:
    """Refuse a safetensors or GGUF file whose own header (``header``: its first ``f.header_length`` bytes) does not
    list exactly the manifest's tensor parts (name, dtype, shape, offset, length); a blob has nothing to compare.

    A pull into a folder runs this on the header bytes restore writes (``restore(check_header=...)``), so the
    commit after it may skip ``check_manifest_content``: both passes must refuse the same files.
    """
    if f.kind not in ("safetensors", "gguf"):
        return
    where = f"{label}: {f.path}"
    try:
        if f.kind == "safetensors":
            layout = parse_layout(f.path, header, f.size)
            parsed = [(t.name, t.dtype, t.shape, t.begin, t.nbytes) for t in layout.tensors]
        else:
            gguf = read_gguf_layout(io.BytesIO(header), f.path, f.size)
            parsed = [(t.name, t.dtype, t.shape, t.begin, t.end - t.begin) for t in gguf.tensors]
    except ModelarcError as exc:
        raise IntegrityError(f"{where}: its header does not parse: {exc}") from None
    declared = [(p.name, p.dtype, tuple(p.shape or ()), p.offset, p.length) for p in f.tensors()]
    if [(n, d, tuple(s), b, ln) for n, d, s, b, ln in parsed] != declared:
        raise IntegrityError(f"{where}: the manifest's tensor entries do not match the file's own header")
