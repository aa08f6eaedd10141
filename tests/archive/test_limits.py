"""The documented limits (docs/FORMAT.md, "Limits") refuse a source before any object is written."""

import json
import struct
from pathlib import Path

import pytest

from modelarc.archive import limits
from modelarc.archive.formats.safetensors import read_header_length
from modelarc.archive.ingest import ingest
from modelarc.errors import SafetensorsFormatError, SourceLimitError
from modelarc.storage import ObjectStore


def _write_safetensors(path: Path, count: int, nbytes: int) -> None:
    """``count`` U8 tensors of ``nbytes`` each, header written by hand (fast for 100k tensors)."""
    header = {
        f"t.{i}": {"dtype": "U8", "shape": [nbytes], "data_offsets": [i * nbytes, (i + 1) * nbytes]}
        for i in range(count)
    }
    body = json.dumps(header, separators=(",", ":")).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(body)) + body)
        fh.write(bytes(count * nbytes))


def _stored(root: Path) -> list[Path]:
    return [p for p in (root / "objects").rglob("*") if p.is_file()] if (root / "objects").exists() else []


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


def test_a_file_with_too_many_tensors_is_refused_before_any_write(tmp_path: Path, store: ObjectStore) -> None:
    src = tmp_path / "m"
    (src / "a-first.bin").parent.mkdir(parents=True)
    (src / "a-first.bin").write_bytes(b"read and stored first, were it not for the plan")
    _write_safetensors(src / "model.safetensors", limits.MAX_TENSORS_PER_FILE + 1, 0)
    with pytest.raises(SourceLimitError, match=r"100,001 tensors in one file.*Limits"):
        ingest(src, store)
    assert _stored(tmp_path / "store") == []


def test_a_snapshot_of_tiny_tensors_is_refused_before_any_write(tmp_path: Path, store: ObjectStore) -> None:
    path = tmp_path / "m" / "model.safetensors"
    _write_safetensors(path, 11_000, 1)  # 11,000 one-byte tensors in under 1 MB: out of proportion
    allowed = limits.snapshot_tensor_allowance(path.stat().st_size)
    assert allowed < 11_000
    with pytest.raises(
        SourceLimitError, match=rf"11,000 tensors in .* bytes, more than the {allowed:,} allowed"
    ):
        ingest(tmp_path / "m", store)
    assert _stored(tmp_path / "store") == []


def test_snapshot_allowance_grows_with_its_bytes() -> None:
    assert limits.snapshot_tensor_allowance(0) == 10_000
    assert limits.snapshot_tensor_allowance(16 * 1024 * 1024) == 10_256
    gptq_moe = 17 * 10**9  # a 48-layer, 128-expert MoE in GPTQ int4: about 74k tensors
    assert limits.snapshot_tensor_allowance(gptq_moe) > 74_000 * 2
    assert limits.snapshot_tensor_allowance(10**15) == limits.MAX_TENSORS_PER_SNAPSHOT


def test_too_many_files_are_refused_before_one_is_opened(tmp_path: Path) -> None:
    from modelarc.archive.ingest import plan_files

    never_opened = [
        (f"f{i}", tmp_path / "missing" / f"f{i}") for i in range(limits.MAX_FILES_PER_SNAPSHOT + 1)
    ]
    with pytest.raises(SourceLimitError, match="100,001 files, more than the limit of 100,000"):
        plan_files(never_opened, tmp_path)


def test_safetensors_header_cap_is_the_reference_implementations() -> None:
    # safetensors itself loads a 100,000,000-byte header and refuses 100,000,001 ("header too large")
    assert read_header_length("f", struct.pack("<Q", 100_000_000), 10**9) == 100_000_008
    with pytest.raises(SafetensorsFormatError, match="not plausible"):
        read_header_length("f", struct.pack("<Q", 100_000_001), 10**9)


def test_many_tensors_under_the_limit_are_archived(tmp_path: Path, store: ObjectStore) -> None:
    _write_safetensors(tmp_path / "m" / "model.safetensors", 2_000, 4)
    manifest = ingest(tmp_path / "m", store).manifest
    assert sum(1 for _ in manifest.tensors()) == 2_000


def test_a_gguf_declaring_too_many_tensors_is_refused_before_reading_them(tmp_path: Path) -> None:
    from modelarc.archive.formats.gguf import read_layout

    path = tmp_path / "m.gguf"
    count = limits.MAX_TENSORS_PER_FILE + 1
    with open(path, "wb") as fh:  # room for the count to be plausible (24 bytes a tensor), nothing real in it
        fh.write(b"GGUF" + struct.pack("<IQQ", 3, count, 0) + bytes(count * 24))
    with open(path, "rb") as fh, pytest.raises(SourceLimitError, match="100,001 tensors in one file"):
        read_layout(fh, str(path), path.stat().st_size)
