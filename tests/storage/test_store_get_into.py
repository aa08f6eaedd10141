"""ObjectStore.get_into: decoded into the caller's buffer when the codec can, verified against the id either way."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelarc.errors import ObjectCorruptError
from modelarc.storage import ObjectStore
from modelarc.storage.store import object_key


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


def _bf16(count: int) -> bytes:
    values = np.random.default_rng(0).standard_normal(count).astype(np.float32) * np.float32(0.02)
    return (values.view("<u4") >> 16).astype("<u2").tobytes()


@pytest.mark.parametrize(
    ("data", "hint", "codec"),
    [(_bf16(50_000) + b"\x01", "BF16", "floatplanes"), (os.urandom(5000), None, "raw")],
)
def test_get_into_decodes_into_the_buffer_given(
    store: ObjectStore, data: bytes, hint: str | None, codec: str
) -> None:
    put = store.put(data, dtype_hint=hint)
    assert put.codec == codec
    buf = bytearray(len(data) + 100)
    got = store.get_into(put.id, buf)
    assert isinstance(got, memoryview) and got.obj is buf
    assert bytes(got) == data


@pytest.mark.parametrize("spare", [-1, 0])
def test_get_into_returns_fresh_bytes_when_the_buffer_cannot_take_the_object(
    store: ObjectStore, spare: int
) -> None:
    data = b"highly compressible " * 500  # a zstd object: its codec decodes into fresh bytes
    zstd = store.put(data)
    assert zstd.codec == "zstd"
    assert bytes(store.get_into(zstd.id, bytearray(len(data)))) == data
    raw = store.put(os.urandom(5000))
    buf = bytearray(5000 + spare)
    got = store.get_into(raw.id, buf)
    assert (isinstance(got, memoryview) and got.obj is buf) == (spare >= 0)
    assert bytes(got) == store.get(raw.id)


@pytest.mark.parametrize("hint", ["BF16", None])
def test_get_into_refuses_a_corrupt_object_and_names_it(
    store: ObjectStore, tmp_path: Path, hint: str | None
) -> None:
    data = _bf16(50_000) if hint else os.urandom(5000)
    put = store.put(data, dtype_hint=hint)
    path = tmp_path / "store" / object_key(put.id)
    damaged = bytearray(path.read_bytes())
    damaged[-5] ^= 0x40  # a mantissa byte: still decodes, to other bytes
    path.write_bytes(bytes(damaged))
    with pytest.raises(ObjectCorruptError, match=f"object {put.id} is corrupt"):
        store.get_into(put.id, bytearray(len(data)))
