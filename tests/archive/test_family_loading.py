"""A fine-tune stored as deltas against its parent loads onto the device as the file it was pushed from does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from finetunes import LIGHT, write_family

from modelarc.archive.push import DeltaRequest
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.models import load_model
from modelarc.registry.records import Provenance

IDS = torch.tensor([[1, 5, 9, 200, 3, 7]])


@pytest.mark.parametrize("dtype", ["BF16", "F32"])
def test_a_fine_tune_stored_as_deltas_loads_with_the_logits_of_its_file(
    archive: Archive, tmp_path: Path, dtype: str
) -> None:
    family = write_family(tmp_path / "family", strengths=(LIGHT,), dtypes=(dtype,))
    archive.push(family.folder("base", dtype), "acme/tiny:base")
    pushed = archive.push(
        family.folder("light", dtype),
        "acme/tiny-ft:v1",
        Provenance(parents=(("acme/tiny:base", "finetune"),)),
        delta=DeltaRequest(),
    )
    assert pushed.delta_objects > 0
    torch_dtype = torch.bfloat16 if dtype == "BF16" else torch.float32
    ours = load_model(archive, "acme/tiny-ft:v1", device="cpu", dtype=torch_dtype).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        family.folder("light", dtype), dtype="auto"
    ).eval()
    assert {t.dtype for t in theirs.state_dict().values()} == {
        torch.bfloat16 if dtype == "BF16" else torch.float32
    }
    for name, tensor in theirs.state_dict().items():
        mine = ours.state_dict()[name]
        assert mine.dtype == tensor.dtype and torch.equal(mine, tensor), name
    with torch.no_grad():
        assert torch.equal(ours(IDS).logits, theirs(IDS).logits)
