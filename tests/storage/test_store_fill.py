"""``ObjectStore.fill`` writes an object's raw bytes into caller memory and verifies them there, for every
codec, and refuses what ``get`` refuses."""

import os
from pathlib import Path

import numpy as np
import pytest

from modelarc.errors import IntegrityError, ObjectCorruptError
from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]
from modelarc.storage.codecs.floatplanes import FloatPlanesCodec
from modelarc.storage.store import ObjectStore, object_key


def _floats(dtype: str, count: int) -> bytes:
    values = np.random.default_rng(5).standard_normal(count).astype(np.float32)
    if dtype == "BF16":
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    return values.astype(np.float16 if dtype == "F16" else np.float32).tobytes()


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (_floats("BF16", 5001), "BF16"),
        (_floats("F16", 4000), "F16"),
        (_floats("F32", 3000) + b"xyz", "F32"),  # a tail after the last whole element
        (bytes(range(256)) * 40, None),  # zstd
        (os.urandom(50), None),  # raw
    ],
    ids=["bf16", "f16", "f32-tail", "zstd", "raw"],
)
def test_fill_writes_what_get_returns(tmp_path: Path, data: bytes, hint: str | None) -> None:
    store = ObjectStore.open_local(tmp_path)
    oid = store.put(data, dtype_hint=hint).id
    out = bytearray(len(data))
    store.fill(oid, memoryview(out))
    assert bytes(out) == data == bytes(store.get(oid))


def test_fill_refuses_a_damaged_object_and_a_wrong_length(tmp_path: Path) -> None:
    store = ObjectStore.open_local(tmp_path)
    data = _floats("BF16", 5000)
    oid = store.put(data, dtype_hint="BF16").id
    with pytest.raises(IntegrityError, match=f"object {oid} is {len(data)} bytes"):
        store.fill(oid, memoryview(bytearray(len(data) - 2)))
    path = tmp_path / object_key(oid)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x10
    path.write_bytes(bytes(blob))
    with pytest.raises(ObjectCorruptError, match=f"object {oid} is corrupt: its bytes hash to"):
        store.fill(oid, memoryview(bytearray(len(data))))


def test_joining_into_a_buffer_needs_exactly_the_joined_size() -> None:
    encoded = FloatPlanesCodec().encode(memoryview(_floats("F32", 100)), "F32")
    out = bytearray(400)
    FloatPlanesCodec().decode_into(encoded.params, memoryview(encoded.payload), 400, memoryview(out))
    assert bytes(out) == _floats("F32", 100)
    with pytest.raises(ValueError):
        _planes.joined([b"\0" * 10] * 2, 1, 10, b"", bytearray(19))
    with pytest.raises(ValueError):
        FloatPlanesCodec().decode_into(
            encoded.params, memoryview(encoded.payload), 400, memoryview(bytearray(8))
        )


def test_fill_many_writes_every_object_and_names_the_one_that_does_not_verify(tmp_path: Path) -> None:
    """Objects filled together are hashed together (two at a time): each is still checked against its own id."""
    store = ObjectStore.open_local(tmp_path)
    datas = [_floats("BF16", 5000), _floats("F32", 2500), bytes(range(256)) * 40]
    oids = [store.put(d, dtype_hint=h).id for d, h in zip(datas, ["BF16", "F32", None], strict=True)]
    outs = [bytearray(len(d)) for d in datas]
    store.fill_many([(oid, memoryview(out)) for oid, out in zip(oids, outs, strict=True)])
    assert [bytes(o) for o in outs] == datas
    path = tmp_path / object_key(oids[1])
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x10
    path.write_bytes(bytes(blob))
    with pytest.raises(ObjectCorruptError, match=f"object {oids[1]} is corrupt: its bytes hash to"):
        store.fill_many([(oid, memoryview(bytearray(len(d)))) for oid, d in zip(oids, datas, strict=True)])
