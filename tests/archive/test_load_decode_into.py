"""The CPU load decodes each chunk straight into its tensor (or, changing dtype, through a per-thread scratch buffer
and one cast) and verifies it there: what it hands out is bit for bit what safetensors reads from the original
file, and a damaged chunk is refused, whichever of those paths it takes."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import load_state_dict, open_snapshot
from modelarc.errors import ObjectCorruptError
from modelarc.storage.store import object_key

REF = "acme/planes:v1"


def _tensors(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Tensors of one chunk and of many (CHUNK_SIZE is 1 KiB below), an odd element count, an empty one, and an
    integer tensor (stored with another codec than float-planes)."""
    g = torch.Generator().manual_seed(3)
    return {
        "big": torch.randn(40, 33, generator=g).to(dtype),  # several chunks, the last one partial
        "small": torch.randn(7, 3, generator=g).to(dtype),  # one chunk, odd element count
        "tiny": (torch.randn(5, generator=g) * 1e-30).to(dtype),  # subnormals and rounding edge values
        "empty": torch.zeros(0, 4, dtype=dtype),
        "ids": torch.arange(300, dtype=torch.int64) * 7919,
    }


def _push(archive: Archive, tmp_path: Path, monkeypatch, dtype: torch.dtype) -> Path:
    import modelarc.archive.ingest as ingest

    monkeypatch.setattr(ingest, "CHUNK_SIZE", 1024)
    folder = tmp_path / "planes"
    folder.mkdir()
    save_file(_tensors(dtype), str(folder / "model.safetensors"))
    archive.push(folder, REF)
    return folder / "model.safetensors"


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


@pytest.mark.parametrize("stored", [torch.bfloat16, torch.float32, torch.float16], ids=["bf16", "f32", "f16"])
@pytest.mark.parametrize("wanted", [None, torch.bfloat16, torch.float32], ids=["kept", "as-bf16", "as-f32"])
def test_loaded_tensors_are_bit_identical_to_safetensors(
    archive: Archive, tmp_path: Path, monkeypatch, stored: torch.dtype, wanted: torch.dtype | None
) -> None:
    path = _push(archive, tmp_path, monkeypatch, stored)
    _r, snap = archive.resolve(REF)
    assert len(next(p for _f, p in archive.manifest(snap).tensors() if p.name == "big").chunks) > 1
    expected = load_file(str(path))
    loaded = load_state_dict(archive, REF, device="cpu", dtype=wanted)
    assert loaded.keys() == expected.keys()
    for name, original in expected.items():
        want = original.to(wanted) if wanted is not None and original.is_floating_point() else original
        got = loaded[name]
        assert (got.dtype, got.shape) == (want.dtype, want.shape), name
        assert _bits(got) == _bits(want), name
    storages = [t.untyped_storage().data_ptr() for t in loaded.values() if t.numel()]
    assert len(set(storages)) == len(storages)  # every tensor has its own memory


def test_a_single_tensor_loads_through_the_same_path(archive: Archive, tmp_path: Path, monkeypatch) -> None:
    path = _push(archive, tmp_path, monkeypatch, torch.float32)
    got = open_snapshot(archive, REF).tensor("big", device="cpu", dtype="bfloat16")
    assert _bits(got) == _bits(load_file(str(path))["big"].to(torch.bfloat16))


def _chunk_of(archive: Archive, name: str, index: int) -> str:
    _r, snap = archive.resolve(REF)
    part = next(p for _f, p in archive.manifest(snap).tensors() if p.name == name)
    return str(part.chunks[index].id)


@pytest.mark.parametrize(
    ("name", "index", "wanted"),
    [
        ("big", 1, None),  # decoded into a tensor of several chunks
        ("small", 0, None),  # a one-chunk tensor
        ("big", 0, torch.bfloat16),  # decoded into scratch, then cast
        ("ids", 0, None),  # another codec than float-planes
    ],
    ids=["many-chunks", "one-chunk", "cast", "zstd"],
)
def test_a_damaged_chunk_is_refused_naming_its_object(
    archive: Archive, tmp_path: Path, monkeypatch, name: str, index: int, wanted: torch.dtype | None
) -> None:
    _push(archive, tmp_path, monkeypatch, torch.float32)
    oid = _chunk_of(archive, name, index)
    stored = archive.store.backend._path(object_key(oid))  # type: ignore[attr-defined]
    blob = bytearray(stored.read_bytes())
    blob[-1] ^= 0x01  # the last byte of the payload: still decodes, to other bytes
    stored.write_bytes(bytes(blob))
    with pytest.raises(ObjectCorruptError, match=f"object {oid} is corrupt"):
        load_state_dict(archive, REF, device="cpu", dtype=wanted)


@pytest.mark.parametrize("pairing", [True, False], ids=["paired", "hashlib"])
def test_each_chunk_is_decoded_once_and_hashed_beside_one_of_a_similar_length(
    archive: Archive, tmp_path: Path, monkeypatch, pairing: bool
) -> None:
    """Jobs pair chunks for the two-at-once hash where pairing pays on this machine (``pairing_pays``, forced
    each way here): no chunk is left out or decoded twice, and a pair is of chunks whose lengths ``pairs_well``."""
    from modelarc.storage import _sha256, digests  # type: ignore[attr-defined]
    from modelarc.storage.digests import pairs_well
    from modelarc.storage.store import ObjectStore

    if pairing and not _sha256.lanes:
        pytest.skip("no SHA extensions: chunks are never paired")
    monkeypatch.setattr(digests, "pairing_pays", lambda: pairing)
    _push(archive, tmp_path, monkeypatch, torch.bfloat16)
    jobs: list[list[tuple[str, int]]] = []
    fill_many = ObjectStore.fill_many

    def recording(self: ObjectStore, items):  # type: ignore[no-untyped-def]
        jobs.append([(str(oid), len(out)) for oid, out in items])
        fill_many(self, items)

    monkeypatch.setattr(ObjectStore, "fill_many", recording)
    load_state_dict(archive, REF, device="cpu")
    _r, snap = archive.resolve(REF)
    chunks = sorted((str(c.id), c.length) for _f, p in archive.manifest(snap).tensors() for c in p.chunks)
    assert sorted(c for job in jobs for c in job) == chunks
    assert any(len(job) == 2 for job in jobs) == pairing
    assert all(len(job) == 1 or pairs_well(job[0][1], job[1][1]) for job in jobs)
