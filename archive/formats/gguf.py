"""Defensive parsing of GGUF (versions 2 and 3) headers: metadata, tensor infos, and where each tensor's bytes are.

    "GGUF" | u32 version | u64 tensor_count | u64 kv_count | kv pairs | tensor infos | padding | tensor data
    string = u64 length + UTF-8 bytes; kv = string key, u32 value type, value (arrays: u32 type, u64 count, items)
    tensor info = string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset (from the data start)
    data start = end of the tensor infos rounded up to general.alignment (default 32)

Every count and length is checked against the file size before anything is allocated, so a lying header gives a
``GGUFFormatError`` naming the file and key or tensor, never a MemoryError or a hang.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from modelarc.archive.limits import MAX_GGUF_HEADER_BYTES, MAX_TENSOR_DIMENSION, check_file_tensors
from modelarc.errors import GGUFFormatError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_HEADER_BYTES = MAX_GGUF_HEADER_BYTES

# ggml type id -> (name, elements per block, bytes per block); the published ggml table.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
}
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    dtype: str  # ggml type name, e.g. "Q4_K"
    shape: tuple[int, ...]  # GGUF order (fastest-varying dimension first)
    begin: int  # absolute offsets in the file
    end: int


@dataclass(frozen=True)
class GGUFArray:
    """A metadata array, read past: its item type and length (its items are not kept)."""

    item_type: int
    count: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class GGUFLayout:
    version: int
    metadata: dict[str, Any]
    data_start: int
    tensors: tuple[GGUFTensor, ...]  # in file order


class HeaderSource(Protocol):
    """What the parser reads a header from: a file opened for reading, a ``BytesIO``, or a wrapper that digests
    every byte it passes (archive/ingest.py); ``seek`` is only ever called relative (``whence=1``), forwards."""

    def read(self, n: int, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


class _Reader:
    def __init__(self, fh: HeaderSource, path: str, size: int) -> None:
        self.fh, self.path, self.size, self.pos = fh, path, size, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size or self.pos + n > MAX_HEADER_BYTES:
            raise GGUFFormatError(f"{self.path}: {what} runs past the end of the file")
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFFormatError(f"{self.path}: {what} is truncated")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        """Move past ``n`` bytes unread, within the same bounds as ``take``."""
        if n < 0 or self.pos + n > self.size or self.pos + n > MAX_HEADER_BYTES:
            raise GGUFFormatError(f"{self.path}: {what} runs past the end of the file")
        self.fh.seek(n, 1)
        self.pos += n

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("<Q", what)
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFFormatError(f"{self.path}: {what} is not UTF-8") from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype], what)
        if vtype == STRING:
            return self.string(what)
        if vtype == ARRAY and depth < 4:
            itype = self.unpack("<I", what)
            count = self.unpack("<Q", what)
            if count > self.size - self.pos:  # every item takes at least one byte
                raise GGUFFormatError(f"{self.path}: {what}: array of {count} items cannot fit in the file")
            self.skip_items(itype, count, what, depth + 1)
            return GGUFArray(itype, count)
        raise GGUFFormatError(f"{self.path}: {what}: unknown value type {vtype}")

    def skip_items(self, itype: int, count: int, what: str, depth: int) -> None:
        """Move past an array's items, checking their structure but keeping none: nothing here reads them (a
        tokenizer's vocabulary and merges are millions of items), and a Python object per item made a push of a
        64 MiB array take 89 s and 645 MB."""
        if itype in _SCALARS:
            self.skip(struct.calcsize(_SCALARS[itype]) * count, what)
        elif itype == STRING:
            for _ in range(count):
                self.skip(self.unpack("<Q", what), what)
        elif itype == ARRAY and depth < 4:
            for _ in range(count):
                inner = self.unpack("<I", what)
                self.skip_items(inner, self.unpack("<Q", what), what, depth + 1)
        else:
            raise GGUFFormatError(f"{self.path}: {what}: unknown value type {itype}")


def read_layout(fh: HeaderSource, path: str, size: int) -> GGUFLayout:
    """Parse the header from ``fh`` (positioned at 0); the caller re-reads the header bytes for storage."""
    r = _Reader(fh, path, size)
    if r.take(4, "magic") != MAGIC:
        raise GGUFFormatError(f"{path}: not a GGUF file (bad magic)")
    version = r.unpack("<I", "version")
    if version not in (2, 3):
        raise GGUFFormatError(f"{path}: unsupported GGUF version {version}")
    n_tensors = r.unpack("<Q", "tensor count")
    n_kv = r.unpack("<Q", "metadata count")
    if n_tensors > size // 24 or n_kv > size // 12:
        raise GGUFFormatError(
            f"{path}: {n_tensors} tensors / {n_kv} metadata entries cannot fit in {size} bytes"
        )
    check_file_tensors(path, n_tensors)
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = r.string(f"metadata key #{i}")
        if key in metadata:  # which one counts would depend on the reader (llama.cpp refuses the file)
            raise GGUFFormatError(f"{path}: metadata key {key[:200]!r} appears twice")
        metadata[key] = r.value(r.unpack("<I", f"type of {key!r}"), f"metadata {key!r}")
    infos = []
    for i in range(n_tensors):
        name = r.string(f"tensor name #{i}")
        if "\x00" in name:  # as in safetensors.py: no catalog row could hold it
            raise GGUFFormatError(f"{path}: tensor name #{i} {name[:200]!r} holds a NUL character")
        n_dims = r.unpack("<I", f"tensor {name!r} dims")
        if n_dims > 8:
            raise GGUFFormatError(f"{path}: tensor {name!r} has {n_dims} dimensions")
        dims = tuple(r.unpack("<Q", f"tensor {name!r} shape") for _ in range(n_dims))
        if any(d > MAX_TENSOR_DIMENSION for d in dims):
            raise GGUFFormatError(
                f"{path}: tensor {name!r}: a dimension of {dims} is larger than {MAX_TENSOR_DIMENSION}"
            )
        type_id = r.unpack("<I", f"tensor {name!r} type")
        offset = r.unpack("<Q", f"tensor {name!r} offset")
        if type_id not in GGML_TYPES:
            raise GGUFFormatError(f"{path}: tensor {name!r}: unknown ggml type {type_id}")
        infos.append((name, dims, type_id, offset))
    names: set[str] = set()
    for name, *_ in infos:  # a load would keep one of two, and which one depends on the reader
        if name in names:
            raise GGUFFormatError(f"{path}: tensor name {name[:200]!r} appears twice")
        names.add(name)
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFFormatError(f"{path}: general.alignment {alignment!r} is not a power of two")
    data_start = -(-r.pos // alignment) * alignment
    tensors = []
    for name, dims, type_id, offset in infos:
        if offset % alignment:  # the format requires it; llama.cpp and transformers refuse the file
            raise GGUFFormatError(
                f"{path}: tensor {name!r}: offset {offset} is not a multiple of {alignment}"
            )
        type_name, block, block_bytes = GGML_TYPES[type_id]
        elements = 1
        for d in dims:
            elements *= d
        if elements % block:
            raise GGUFFormatError(
                f"{path}: tensor {name!r}: {elements} elements are not whole {type_name} blocks"
            )
        begin = data_start + offset
        end = begin + elements // block * block_bytes
        if end > size:
            raise GGUFFormatError(f"{path}: tensor {name!r} data runs past the end of the file")
        tensors.append(GGUFTensor(name, type_name, dims, begin, end))
    tensors.sort(key=lambda t: (t.begin, t.end))
    for a, b in zip(tensors, tensors[1:], strict=False):
        if b.begin < a.end:
            raise GGUFFormatError(f"{path}: tensors {a.name!r} and {b.name!r} overlap")
    if data_start > size:
        raise GGUFFormatError(f"{path}: header runs past the end of the file")
    return GGUFLayout(version, metadata, data_start, tuple(tensors))
