"""The limits a source must stay within to be archived (docs/FORMAT.md, "Limits"), checked before any object is written.

Why limits at all: every tensor costs an object write, a manifest entry and catalog rows, whatever its size, so a
small file with a huge number of tiny tensors (16 MB holding 200,000 one-element tensors) used to cost minutes and a
gigabyte of memory. Real models are nowhere near these numbers; the limits are set so that no published checkpoint
we know of comes within a factor of a few of them, while the work a push does stays proportional to its bytes.
Raise one only together with the document.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, BinaryIO

from modelarc.errors import (
    IntegrityError,
    ModelarcError,
    ObjectCorruptError,
    ObjectFormatError,
    SourceLimitError,
    UsageError,
)

if TYPE_CHECKING:
    from modelarc.storage import ObjectId, ObjectStore


def clip_text(text: str, limit: int) -> str:
    """``text`` as an error line may repeat it: cut to ``limit`` characters, saying how long it was (a value from a
    file anyone wrote, or a library's message quoting it whole, must not make a "one line" of megabytes)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"

# The safetensors reference implementation refuses a header longer than this (its MAX_HEADER_SIZE), so no file
# any safetensors reader can load is refused here.
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000
# GGUF headers carry the tokenizer (vocabularies and merges of ~150k entries are a few MB); 512 MiB is far beyond
# any real one and bounds what a lying header can make the parser read.
MAX_GGUF_HEADER_BYTES = 512 * 1024 * 1024
# Published shards hold a few hundred to a few thousand tensors each; even an unsharded mixture-of-experts model
# with every expert stored separately and GPTQ's four tensors per matrix stays well under this.
MAX_TENSORS_PER_FILE = 100_000
# Per snapshot: a base that no small or medium model reaches, plus one tensor per 64 KiB of the snapshot's bytes.
# Estimated from their architectures, the most tensor-dense real checkpoints are inside it: a 48-layer, 128-expert
# MoE in GPTQ int4 (4 tensors per matrix) has about 74k tensors in about 17 GB (allowance 200k, the cap); a
# DeepSeek-V3-sized model about 90k in about 700 GB. A snapshot of tiny tensors is refused once they are out of
# proportion to its bytes, which keeps a push's time and memory proportional to its size.
SNAPSHOT_TENSOR_BASE = 10_000
SNAPSHOT_BYTES_PER_EXTRA_TENSOR = 64 * 1024
# A receiving archive applies these same checks to a commit (archive/manifest_checks.py), so every snapshot a
# local push accepts can also be pushed to a remote, and a remote push costs no more than a local one.
MAX_TENSORS_PER_SNAPSHOT = 200_000
MAX_FILES_PER_SNAPSHOT = 100_000
# One dimension of a tensor's shape: what a manifest and a catalog row can hold (a signed 64-bit integer). Only a
# tensor with a zero-sized dimension can declare a larger one (its element count is 0, so its bytes match).
MAX_TENSOR_DIMENSION = 2**63 - 1
# Small documents a user hands to a command: a training-data manifest lists datasets, not their records; a PEM
# public key is a few hundred bytes.
MAX_DATA_MANIFEST_BYTES = 4 << 20
MAX_PUBLIC_KEY_BYTES = 64 << 10
# A snapshot manifest, as the limits above allow it: canonical JSON costs ~270 bytes a file (with one part and one
# chunk, a 20-character path) and ~250 a tensor (a 60-character name), plus ~90 a chunk of 8 MiB. At every limit at
# once with typical names - 100,000 files, 200,000 tensors and the chunks of a 4 TiB snapshot - that is ~120 MB;
# the largest published checkpoints (1 TB, ~140,000 tensors) make 40-60 MB. A reader refuses a bigger manifest
# object by its header, before decoding it (a hostile remote's 128 MiB manifest of "[]" took 3.5 GB to parse).
MAX_MANIFEST_BYTES = 128 << 20
# A signature bundle lists the path and sha256 of every file it signs (its statement, base64: ~4/3 x (155 bytes +
# the path) a file) and a few hundred bytes besides: 64 MiB holds 100,000 files with paths of ~340 bytes. Bigger
# ones are refused by their header before decoding, and a writer refuses to make one (archive/push.py).
MAX_BUNDLE_BYTES = 64 << 20


def snapshot_tensor_allowance(logical_bytes: int) -> int:
    """How many tensors a snapshot of ``logical_bytes`` bytes may hold."""
    extra = max(0, logical_bytes) // SNAPSHOT_BYTES_PER_EXTRA_TENSOR
    return min(MAX_TENSORS_PER_SNAPSHOT, SNAPSHOT_TENSOR_BASE + extra)


def check_file_tensors(where: str, count: int) -> None:
    """Refuse a file that declares more than ``MAX_TENSORS_PER_FILE`` tensors (before they are parsed one by one)."""
    if count > MAX_TENSORS_PER_FILE:
        raise SourceLimitError(
            f"{where}: {count:,} tensors in one file, more than the limit of {MAX_TENSORS_PER_FILE:,} "
            "(see docs/FORMAT.md, Limits)"
        )


def check_snapshot_files(where: str, count: int) -> None:
    """Refuse a snapshot of more than ``MAX_FILES_PER_SNAPSHOT`` files (real models have tens to thousands)."""
    if count > MAX_FILES_PER_SNAPSHOT:
        raise SourceLimitError(
            f"{where}: {count:,} files, more than the limit of {MAX_FILES_PER_SNAPSHOT:,} for one snapshot "
            "(see docs/FORMAT.md, Limits)"
        )


def check_snapshot_tensors(where: str, count: int, logical_bytes: int) -> None:
    """Refuse a snapshot whose tensor count is out of proportion to its size (see ``snapshot_tensor_allowance``)."""
    allowed = snapshot_tensor_allowance(logical_bytes)
    if count > allowed:
        raise SourceLimitError(
            f"{where}: {count:,} tensors in {logical_bytes:,} bytes, more than the {allowed:,} allowed for a "
            f"snapshot of that size ({SNAPSHOT_TENSOR_BASE:,} plus one per "
            f"{SNAPSHOT_BYTES_PER_EXTRA_TENSOR // 1024} KiB, at most {MAX_TENSORS_PER_SNAPSHOT:,}; "
            "see docs/FORMAT.md, Limits)"
        )


def read_document(store: ObjectStore, oid: ObjectId, limit: int, what: str) -> bytes:
    """The decoded bytes of a document object (a manifest, a signature bundle, a training-data manifest), refused
    with ``IntegrityError`` when its header declares more than ``limit`` of them: judged on the header alone, before
    a byte is decoded (any object may decode to 256 MiB; six listed as bundles made a pull hold gigabytes)."""
    try:
        raw = store.stat(oid).raw_size
    except ObjectFormatError as exc:
        raise ObjectCorruptError(f"object {oid} is corrupt: {exc}") from None
    if raw > limit:
        raise IntegrityError(
            f"{what} is {raw:,} bytes; one may have at most {limit:,} (see docs/FORMAT.md, Limits)"
        )
    return bytes(store.get(oid))


def read_small_file(
    path: str | os.PathLike[str], limit: int, what: str, error: type[ModelarcError] = UsageError
) -> bytes:
    """The bytes of the regular file ``path``, refused with one ``error`` line if it holds more than ``limit``.

    Never reads more than ``limit + 1`` bytes (``/dev/zero`` or a huge file is refused, not read into memory) and
    never waits on a FIFO: the open does not block and anything but a regular file is refused before a read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{path}: {_kind(mode)}, not a regular file; {what} is read from a file")
    with os.fdopen(fd, "rb") as f:
        try:
            return read_small_stream(f, limit, f"{path}", what, error)
        except OSError as exc:
            raise error(f"{path}: cannot read {what} ({exc.strerror})") from None


def read_small_stream(
    stream: BinaryIO, limit: int, where: str, what: str, error: type[ModelarcError] = UsageError
) -> bytes:
    """At most ``limit`` bytes from ``stream`` (stdin, say), refused once a byte more arrives."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise error(f"{where}: more than {limit:,} bytes; {what} may have at most {limit:,} bytes")
    return data


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")
