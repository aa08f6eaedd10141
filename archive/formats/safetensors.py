"""Defensive parsing of the safetensors header.

A safetensors file is: u64 little-endian header length N, N bytes of JSON, then the tensor data. Files come from
strangers, so every field is checked before a byte of data is trusted: header length past end of file, invalid JSON,
unknown dtypes, sizes that disagree with shape x dtype, offsets out of range, overlaps and gaps all raise
``SafetensorsFormatError`` naming the file and the tensor.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from modelarc.archive.limits import MAX_SAFETENSORS_HEADER_BYTES, MAX_TENSOR_DIMENSION, check_file_tensors
from modelarc.errors import SafetensorsFormatError
from modelarc.registry.bounds import text_problem

# Bits per element for every dtype the safetensors format defines (0.4 through 0.8).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
MAX_HEADER_BYTES = MAX_SAFETENSORS_HEADER_BYTES  # the reference implementation's own limit (100,000,000)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsLayout:
    header_length: int  # 8 + N: the bytes before the first tensor
    metadata: dict[str, str] | None
    tensors: tuple[TensorEntry, ...]  # in file order


def read_header_length(path: str, prefix: bytes, file_size: int) -> int:
    """The full header size (8 + N) from the first 8 bytes, checked against the file size."""
    if file_size < 8 or len(prefix) < 8:
        raise SafetensorsFormatError(f"{path}: too short to be safetensors ({file_size} bytes)")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n == 0 or n > MAX_HEADER_BYTES:
        raise SafetensorsFormatError(f"{path}: header length {n} is not plausible")
    if 8 + n > file_size:
        raise SafetensorsFormatError(
            f"{path}: header length {n} runs past the end of the file ({file_size} bytes)"
        )
    return 8 + n


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: json.loads keeps the last of two, so a header naming a tensor
    twice was refused only later, as "a gap of N bytes before" it (the first one's bytes unaccounted for)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_layout(path: str, header: bytes, file_size: int) -> SafetensorsLayout:
    """Parse and validate ``header`` (the first ``8 + N`` bytes of the file)."""
    header_length = read_header_length(path, header, file_size)
    if len(header) != header_length:
        raise SafetensorsFormatError(f"{path}: truncated header")
    try:
        doc = json.loads(header[8:].decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise SafetensorsFormatError(f"{path}: header names {exc.key[:200]!r} twice") from None
    # ValueError: besides JSONDecodeError and UnicodeDecodeError (both ValueErrors), an integer of more than 4300
    # digits, which Python's int conversion refuses (sys.get_int_max_str_digits)
    except ValueError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise SafetensorsFormatError(f"{path}: header is not valid JSON ({reason})") from None
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack: no real header is
        raise SafetensorsFormatError(f"{path}: header is not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise SafetensorsFormatError(f"{path}: header is not a JSON object")
    metadata = doc.pop("__metadata__", None)
    check_file_tensors(path, len(doc))  # before a TensorEntry is built for each
    if metadata is not None and not (
        isinstance(metadata, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise SafetensorsFormatError(f"{path}: __metadata__ must map strings to strings")
    data_size = file_size - header_length
    tensors = [_parse_tensor(path, name, info, data_size, header_length) for name, info in doc.items()]
    tensors.sort(key=lambda t: (t.begin, t.end))
    cursor = header_length
    for t in tensors:
        if t.begin < cursor:
            raise SafetensorsFormatError(f"{path}: tensor {t.name!r} overlaps the tensor before it")
        if t.begin > cursor:
            raise SafetensorsFormatError(f"{path}: gap of {t.begin - cursor} bytes before tensor {t.name!r}")
        cursor = t.end
    if cursor != file_size:
        raise SafetensorsFormatError(
            f"{path}: {file_size - cursor} bytes after the last tensor (file is {file_size} bytes)"
            if cursor < file_size
            else f"{path}: tensor data runs past the end of the file"
        )
    return SafetensorsLayout(header_length, metadata, tuple(tensors))


def _parse_tensor(path: str, name: object, info: object, data_size: int, base: int) -> TensorEntry:
    where = f"{path}: tensor {name!r}"
    # no catalog row could hold a NUL (PostgreSQL refuses it) or a lone surrogate (a JSON "\ud800" escape: no UTF-8
    # form), and a received manifest naming one is refused: refused here, before any object is written
    if (problem := text_problem(str(name))) is not None:
        raise SafetensorsFormatError(f"{where}: the tensor name holds {problem}")
    if not isinstance(info, dict):
        raise SafetensorsFormatError(f"{where}: entry is not a JSON object")
    dtype = info.get("dtype")
    shape = info.get("shape")
    offsets = info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise SafetensorsFormatError(f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise SafetensorsFormatError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if any(d > MAX_TENSOR_DIMENSION for d in shape):
        raise SafetensorsFormatError(
            f"{where}: a dimension of shape {shape} is larger than {MAX_TENSOR_DIMENSION}"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise SafetensorsFormatError(f"{where}: data_offsets must be two integers, got {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise SafetensorsFormatError(
            f"{where}: data_offsets {offsets} out of range (data is {data_size} bytes)"
        )
    bits = math.prod(shape) * DTYPE_BITS[str(dtype)]
    if bits % 8 or bits // 8 != end - begin:
        raise SafetensorsFormatError(
            f"{where}: {end - begin} bytes do not match shape {shape} x {dtype} ({bits / 8:g} bytes)"
        )
    return TensorEntry(str(name), str(dtype), tuple(shape), base + begin, base + end)
