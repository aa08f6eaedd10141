"""The genuine family of tests/finetunes.py has the properties delta tests rely on: same bytes on every run,
fine-tunes that keep the base's tensors and change most of them, many BF16 values left bit-identical, and weights
that really learned the fine-tune task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from finetunes import (
    DTYPES,
    FINETUNE_TASK,
    STRENGTHS,
    Family,
    StoredTensor,
    read_tensors,
    task_loss,
    write_family,
)
from modelfactory import bf16_bits

from modelarc.storage import ObjectId
from modelarc.storage.store import ObjectStore

WORD = {"BF16": "<u2", "F32": "<u4"}


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> Family:
    return write_family(tmp_path_factory.mktemp("family"))


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def unchanged(base: StoredTensor, tuned: StoredTensor) -> np.ndarray:
    """Per element: is the fine-tune's value bit-identical to the base's?"""
    return np.frombuffer(base.data, WORD[base.dtype]) == np.frombuffer(tuned.data, WORD[tuned.dtype])


def unchanged_fraction(base: dict[str, StoredTensor], tuned: dict[str, StoredTensor]) -> float:
    same = [unchanged(base[name], tuned[name]) for name in base]
    return sum(int(s.sum()) for s in same) / sum(s.size for s in same)


def test_family_is_the_same_bytes_on_every_run_whatever_the_callers_torch_state(
    family: Family, tmp_path: Path
) -> None:
    threads = torch.get_num_threads()
    torch.manual_seed(12345)
    torch.set_num_threads(2)
    state = torch.get_rng_state()
    try:
        again = write_family(tmp_path / "again")
        assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert set(again.folders) == set(family.folders) == {"base", *(s.name for s in STRENGTHS)}
    for member, by_dtype in family.folders.items():
        for dtype, folder in by_dtype.items():
            files = tree(folder)
            assert {"model.safetensors", "config.json"} <= set(files)
            assert files == tree(again.folder(member, dtype)), (member, dtype)


def test_finetunes_have_the_base_tensor_names_shapes_and_dtypes(family: Family) -> None:
    for dtype in DTYPES:
        base = read_tensors(family.folder("base", dtype))
        assert len(base) > 15 and {t.dtype for t in base.values()} == {dtype}
        for member in family.finetunes:
            tuned = read_tensors(family.folder(member, dtype))
            assert {n: (t.dtype, t.shape) for n, t in tuned.items()} == {
                n: (t.dtype, t.shape) for n, t in base.items()
            }


def test_finetunes_change_most_tensors_and_keep_many_bf16_values_the_stronger_the_fewer(
    family: Family,
) -> None:
    base = read_tensors(family.folder("base", "BF16"))
    kept = []
    for member in family.finetunes:
        tuned = read_tensors(family.folder(member, "BF16"))
        changed = [name for name in base if not unchanged(base[name], tuned[name]).all()]
        assert len(changed) >= 0.8 * len(base), member
        kept.append(unchanged_fraction(base, tuned))
    assert kept == sorted(kept, reverse=True)  # light keeps the most
    assert kept[0] > 0.6 and kept[1] > 0.3 and kept[-1] > 0.05, kept


def test_fp32_finetunes_change_almost_every_value(family: Family) -> None:
    base = read_tensors(family.folder("base", "F32"))
    for member in family.finetunes:
        assert unchanged_fraction(base, read_tensors(family.folder(member, "F32"))) < 0.05, member


def test_bf16_folders_hold_the_fp32_weights_rounded_to_nearest_even(family: Family) -> None:
    for member in family.folders:
        wide = read_tensors(family.folder(member, "F32"))
        narrow = read_tensors(family.folder(member, "BF16"))
        for name, t in wide.items():
            assert bf16_bits(np.frombuffer(t.data, "<f4")).tobytes() == narrow[name].data, (member, name)


def test_each_finetune_learned_its_task_more_the_stronger_it_is(family: Family) -> None:
    from transformers import LlamaForCausalLM

    losses = [
        task_loss(LlamaForCausalLM.from_pretrained(str(family.folder(m, "F32"))), FINETUNE_TASK)
        for m in ("base", *family.finetunes)
    ]
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses), losses


def test_a_bf16_finetune_stored_as_a_delta_against_the_base_is_smaller_than_alone(
    family: Family, tmp_path: Path
) -> None:
    base = read_tensors(family.folder("base", "BF16"))
    tuned = read_tensors(family.folder("light", "BF16"))
    store = ObjectStore.open_local(tmp_path / "store")
    delta = alone = 0
    for name, t in tuned.items():
        base_id = store.put(base[name].data, dtype_hint="BF16").id
        kept = store.put_delta(t.data, base_id, dtype_hint="BF16")
        assert store.get(ObjectId(kept.id)) == t.data
        delta += kept.stored_size
        alone += ObjectStore.open_local(tmp_path / "alone").put(t.data, dtype_hint="BF16").stored_size
    assert delta < 0.6 * alone, (delta, alone)
