"""Archived models load into torch and compute exactly what the original computed (CPU here; same code on CUDA)."""

from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import (
    load_model,
    load_state_dict,
    load_tokenizer,
    open_snapshot,
    resolve_device,
)
from modelarc.errors import UsageError, WithdrawnError

WORDS = ["<unk>", "<pad>", "the", "model", "was", "trained", "in", "2021", "2023", "on", "text", "news", "what", "year", "is", "it", "?", "."]


def _tokenizer() -> transformers.PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


def _gpt2() -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(WORDS), n_positions=64)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _llama() -> transformers.PreTrainedModel:
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=len(WORDS), max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.fixture
def archive(tmp_path: Path, database_url: str, monkeypatch) -> Archive:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    arc, _ = Archive.init(tmp_path / "home")
    yield arc
    arc.close()


def _push(archive: Archive, tmp_path: Path, model, name: str) -> str:
    folder = tmp_path / name
    model.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    archive.push(folder, f"acme/{name}:v1")
    return f"acme/{name}:v1"


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_logits_equal_the_original_exactly(archive: Archive, tmp_path: Path, make) -> None:
    original = make()
    ref = _push(archive, tmp_path, original, make.__name__.strip("_"))
    ids = torch.tensor([[2, 3, 4, 5, 6, 7]])
    loaded = load_model(archive, ref, device="cpu")
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, original(ids).logits)
    bf16 = load_model(archive, ref, device="cpu", dtype="bfloat16")
    with torch.no_grad():
        assert torch.equal(bf16(ids).logits, original.to(torch.bfloat16)(ids).logits)


def test_state_dict_equals_the_saved_tensors(archive: Archive, tmp_path: Path) -> None:
    original = _llama()
    ref = _push(archive, tmp_path, original, "llama")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "llama" / "model.safetensors"))
    loaded = load_state_dict(archive, ref, device="auto")
    assert loaded.keys() == saved.keys()
    for k in saved:
        assert loaded[k].dtype == saved[k].dtype and torch.equal(loaded[k], saved[k]), k
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_generation_and_tokenizer_match_the_original(archive: Archive, tmp_path: Path) -> None:
    original = _gpt2()
    ref = _push(archive, tmp_path, original, "gpt2")
    tok = load_tokenizer(archive, ref)
    ids = tok("what year is it ?", return_tensors="pt").input_ids
    assert ids.tolist() == _tokenizer()("what year is it ?", return_tensors="pt").input_ids.tolist()
    model = load_model(archive, ref, device="cpu")
    kwargs = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 1}
    assert torch.equal(model.generate(ids, **kwargs), original.generate(ids, **kwargs))


def test_open_gives_metadata_and_lazy_tensors(archive: Archive, tmp_path: Path) -> None:
    original = _llama()
    ref = _push(archive, tmp_path, original, "llama")
    snap = open_snapshot(archive, ref)
    assert snap.id.startswith("sha256:") and snap.info.architecture["model_type"] == "llama"
    name = "model.embed_tokens.weight"
    assert torch.equal(snap.tensor(name), original.state_dict()[name])
    assert snap.tensor(name, dtype="float16").dtype == torch.float16


def test_bad_device_dtype_and_withdrawn_are_refused(archive: Archive, tmp_path: Path) -> None:
    ref = _push(archive, tmp_path, _gpt2(), "gpt2")
    with pytest.raises(UsageError, match="unknown dtype"):
        load_state_dict(archive, ref, device="cpu", dtype="int3")
    with pytest.raises(UsageError):
        load_state_dict(archive, ref, device="tpu:7")
    with pytest.raises(UsageError, match="trust_remote_code"):
        load_model(archive, ref, trust_remote_code=True)
    from modelarc.archive.provenance.withdrawal import withdraw

    withdraw(archive, ref, "bad weights")
    with pytest.raises(WithdrawnError):
        load_model(archive, ref, device="cpu")


def test_the_staged_gpu_path_gives_the_same_tensors_on_cpu(archive: Archive, tmp_path: Path) -> None:
    """The CUDA code path (one reusable staging buffer, async copy) forced on CPU: same tensors, none aliased."""
    from modelarc.archive.runtime.loading import iter_tensors

    original = _llama()
    ref = _push(archive, tmp_path, original, "llama")
    _r, snap = archive.resolve(ref)
    staged = dict(iter_tensors(archive, archive.manifest(snap), torch.device("cpu"), None, staged=True))
    direct = dict(iter_tensors(archive, archive.manifest(snap), torch.device("cpu"), None, staged=False))
    assert staged.keys() == direct.keys()
    for k in direct:
        assert torch.equal(staged[k], direct[k]), k
    pointers = [t.untyped_storage().data_ptr() for t in staged.values() if t.numel()]
    assert len(set(pointers)) == len(pointers)  # no tensor still points into the reused buffer
    bf16 = dict(iter_tensors(archive, archive.manifest(snap), torch.device("cpu"), torch.bfloat16, staged=True))
    assert all(t.dtype == torch.bfloat16 for t in bf16.values() if t.is_floating_point())
