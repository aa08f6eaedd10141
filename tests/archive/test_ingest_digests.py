"""Ingest hashes each chunk once for two digests (the file's running sha256 and the chunk's object id, in one
interleaved pass, storage/digests.py ``update_and_digest``), and the pool stores the chunk under that id without
hashing it again: both must still be plain SHA-256 of the right bytes, with the native hasher and with the
hashlib fallback."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hangkit import raised_within
from modelfactory import write_model

import modelarc.archive.ingest as ingest_module
from modelarc.archive.ingest import ingest
from modelarc.storage import ObjectStore, _sha256, digests  # type: ignore[attr-defined]

# Small chunks: many per file, the file's digest carrying a partial block from one to the next, many ids to store.
SMALL_CHUNK = 4096


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


def _pairing(monkeypatch: pytest.MonkeyPatch, pays: bool) -> None:
    """As on a machine where hashing two messages interleaved does (or does not) pay (``pairing_pays``)."""
    monkeypatch.setattr(digests, "pairing_pays", lambda: pays)
    monkeypatch.setattr(ingest_module, "pairing_pays", lambda: pays)


def _model(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    tensors = {
        "a": rng.standard_normal(5000).astype(np.float32),  # 20000 bytes: chunks of 4096 and a 3616-byte end
        "b": rng.standard_normal((33, 17)).astype(np.float32),  # 2244 bytes, not a multiple of 64
        "c": rng.integers(0, 255, 40_001, dtype=np.uint8),
    }
    odd = bytes(rng.integers(0, 256, 3 * SMALL_CHUNK + 55, dtype=np.uint8))
    return write_model(folder, tensors, extra_files={"blob.bin": odd, "tiny.txt": b"x" * 57, "empty": b""})


@pytest.mark.parametrize("native", [True, False], ids=["native", "hashlib"])
def test_every_chunk_id_and_file_digest_is_the_plain_sha256_of_its_bytes(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    if native and not _sha256.lanes:
        pytest.skip("this CPU has no SHA extensions")
    _pairing(monkeypatch, native)  # not native: hashlib streams throughout, as where pairing does not pay
    monkeypatch.setattr(ingest_module, "CHUNK_SIZE", SMALL_CHUNK)
    src = _model(tmp_path / "m")
    result = ingest(src, store, jobs=4)
    for entry in result.manifest.files:
        data = (src / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest(), entry.path
        for part in entry.parts:
            at = part.offset
            for chunk in part.chunks:
                assert chunk.id == hashlib.sha256(data[at : at + chunk.length]).hexdigest(), (entry.path, at)
                at += chunk.length
            assert at == part.offset + part.length
    assert sum(len(p.chunks) for f in result.manifest.files for p in f.parts) > 20  # many chunks per file
    assert {r.rel: r.sha256 for r in result.reads} == {f.path: f.sha256 for f in result.manifest.files}


def test_a_store_failing_mid_file_ends_the_ingest_with_its_error(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader hands the pool ids and reused buffers: a failed chunk must end the ingest, not hang it."""
    monkeypatch.setattr(ingest_module, "CHUNK_SIZE", SMALL_CHUNK)
    src = _model(tmp_path / "m")
    put, calls = store.put, []

    def failing_put(data: bytes, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return put(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "put", failing_put)
    outcome = raised_within(lambda: ingest(src, store, jobs=4), 60, "ingest after a failed chunk")
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)


def test_the_reader_pairs_ids_while_chunks_are_new_and_leaves_them_to_the_pool_once_they_are_stored(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-push with --rehash stores nothing new: the pool would idle while the reader hashed every chunk twice
    over, so there the reader hashes only the file and the pool the ids; either way the manifest is the same."""
    if not _sha256.lanes:
        pytest.skip("this CPU has no SHA extensions: nothing is ever paired")
    _pairing(monkeypatch, True)
    monkeypatch.setattr(ingest_module, "CHUNK_SIZE", SMALL_CHUNK)
    paired: list[int] = []
    fused = ingest_module.update_and_digest

    def counting(stream: object, data: memoryview) -> bytes:
        paired.append(len(data))
        return fused(stream, data)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "update_and_digest", counting)
    src = _model(tmp_path / "m")
    first = ingest(src, store, jobs=2)
    chunks = sum(len(p.chunks) for f in first.manifest.files for p in f.parts)
    assert len(paired) >= chunks - ingest_module.PAIR_WINDOW  # new chunks: paired (the window starts empty)
    paired.clear()
    again = ingest(src, store, jobs=2)
    assert again.manifest == first.manifest
    assert not any(o.added for o in again.objects)
    assert len(paired) < chunks // 2  # stored already: most ids hashed on the pool


def test_where_pairing_does_not_pay_the_reader_leaves_every_id_to_the_pool(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing a chunk's id on the reader beside the file's digest saves CPU only where the interleaved pair is
    faster than two hashlib passes; elsewhere it makes the serial stage hash twice, so the pool takes every id."""
    _pairing(monkeypatch, False)
    monkeypatch.setattr(ingest_module, "CHUNK_SIZE", SMALL_CHUNK)
    paired: list[int] = []
    fused = ingest_module.update_and_digest

    def counting(stream: object, data: memoryview) -> bytes:
        paired.append(len(data))
        return fused(stream, data)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "update_and_digest", counting)
    src = _model(tmp_path / "m")
    result = ingest(src, store, jobs=2)
    # only each safetensors header is hashed for its id on the reader (``read_exact``: it is checked at once)
    assert len(paired) == sum(f.path.endswith(".safetensors") for f in result.manifest.files) == 1
    for entry in result.manifest.files:
        data = (src / entry.path).read_bytes()
        assert entry.sha256 == hashlib.sha256(data).hexdigest(), entry.path
        for part in entry.parts:
            at = part.offset
            for chunk in part.chunks:
                assert chunk.id == hashlib.sha256(data[at : at + chunk.length]).hexdigest(), (entry.path, at)
                at += chunk.length
