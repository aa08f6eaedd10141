"""Archived models load into torch and compute exactly what the original computed (CPU here; same code on CUDA)."""

from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import load_state_dict, open_snapshot, resolve_device
from modelarc.archive.runtime.models import load_model, load_tokenizer
from modelarc.errors import ModelarcError, UsageError, WithdrawnError

WORDS = [
    "<unk>",
    "<pad>",
    "the",
    "model",
    "was",
    "trained",
    "in",
    "2021",
    "2023",
    "on",
    "text",
    "news",
    "what",
    "year",
    "is",
    "it",
    "?",
    ".",
]


def _tokenizer() -> transformers.PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


def _gpt2() -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=len(WORDS), n_positions=64)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _llama(tie: bool = False) -> transformers.PreTrainedModel:
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(WORDS),
        max_position_embeddings=64,
        tie_word_embeddings=tie,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _llama_tied() -> transformers.PreTrainedModel:
    return _llama(tie=True)


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


# gpt2: tied lm_head, learned positions. llama: rotary buffers (inv_freq, not in the checkpoint), untied head.
# llama_tied: both. Exact equality, not allclose: the same bits in the same dtype through the same modules and CPU
# kernels give the same logits, so any difference is a loading difference (a buffer computed in another dtype, a
# head left untied or uninitialised), never rounding noise to tolerate.
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("make", [_gpt2, _llama, _llama_tied], ids=["gpt2", "llama", "llama_tied"])
def test_logits_equal_from_pretrained_of_the_same_folder(
    archive: Archive, tmp_path: Path, make, dtype
) -> None:
    name = make.__name__.strip("_")
    ref = _push(archive, tmp_path, make(), name)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / name, dtype=dtype)
    ours = load_model(archive, ref, device="cpu", dtype=dtype)
    ids = torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17] * 4])
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, theirs(ids).logits)
    assert not ours.training
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].dtype == value.dtype, key
    if ours.config.tie_word_embeddings:
        assert ours.get_output_embeddings().weight is ours.get_input_embeddings().weight


def test_rotary_buffers_are_computed_as_from_pretrained_computes_them(
    archive: Archive, tmp_path: Path
) -> None:
    """inv_freq is not in the checkpoint: built on the meta device it holds nothing until computed, in float32
    even in a bfloat16 model (casting it would change every position's angle)."""
    ref = _push(archive, tmp_path, _llama(), "llama")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "llama", dtype=torch.bfloat16)
    ours = load_model(archive, ref, device="cpu", dtype="bfloat16")
    for name, buffer in theirs.named_buffers():
        mine = ours.get_buffer(name)
        assert mine.device.type == "cpu" and mine.dtype == buffer.dtype == torch.float32, name
        assert torch.equal(mine, buffer), name
    assert not any(t.is_meta for t in [*ours.parameters(), *ours.buffers()])


def _push_tensors(archive: Archive, tmp_path: Path, tensors: dict[str, torch.Tensor], name: str) -> str:
    from safetensors.torch import save_file

    folder = tmp_path / name
    _llama().save_pretrained(folder)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    archive.push(folder, f"acme/{name}:v1")
    return f"acme/{name}:v1"


def test_a_missing_parameter_is_an_error_naming_it(archive: Archive, tmp_path: Path) -> None:
    tensors = dict(_llama().state_dict())
    del tensors["model.norm.weight"]
    ref = _push_tensors(archive, tmp_path, tensors, "no-norm")
    with pytest.raises(ModelarcError, match=r"no weights for 1 parameters, e\.g\. model\.norm\.weight"):
        load_model(archive, ref, device="cpu")


def test_a_tensor_of_the_wrong_shape_is_an_error_naming_it(archive: Archive, tmp_path: Path) -> None:
    tensors = dict(_llama().state_dict())
    tensors["model.norm.weight"] = torch.ones(31)
    ref = _push_tensors(archive, tmp_path, tensors, "bad-norm")
    with pytest.raises(
        ModelarcError, match=r"model\.norm\.weight is \[31\] in the archive, the model expects \[32\]"
    ):
        load_model(archive, ref, device="cpu")


def test_tensors_the_model_has_no_place_for_are_ignored(archive: Archive, tmp_path: Path) -> None:
    """As before (and as from_pretrained, which only warns): an extra tensor is skipped, not decoded."""
    original = _llama()
    ref = _push_tensors(
        archive, tmp_path, {**original.state_dict(), "model.extra.weight": torch.ones(4)}, "extra"
    )
    ids = torch.tensor([[2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(load_model(archive, ref, device="cpu")(ids).logits, original(ids).logits)


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
    bf16 = dict(
        iter_tensors(archive, archive.manifest(snap), torch.device("cpu"), torch.bfloat16, staged=True)
    )
    assert all(t.dtype == torch.bfloat16 for t in bf16.values() if t.is_floating_point())


@pytest.mark.parametrize("staged", [False, True], ids=["direct", "staged"])
def test_tensors_of_many_chunks_among_one_chunk_tensors_load_exactly(
    archive: Archive, tmp_path: Path, monkeypatch, staged: bool
) -> None:
    """Chunks are decoded ahead across tensor boundaries: each tensor must still get exactly its own chunks."""
    from safetensors.torch import load_file

    import modelarc.archive.ingest as ingest
    from modelarc.archive.runtime.loading import iter_tensors

    monkeypatch.setattr(ingest, "CHUNK_SIZE", 1024)  # the embeddings take 3 chunks, the norms one
    original = _llama()
    ref = _push(archive, tmp_path, original, "llama")
    _r, snap = archive.resolve(ref)
    manifest = archive.manifest(snap)
    chunks = {p.name: len(p.chunks) for _f, p in manifest.tensors()}
    assert chunks["model.embed_tokens.weight"] > 1 and chunks["model.norm.weight"] == 1
    saved = load_file(str(tmp_path / "llama" / "model.safetensors"))
    loaded = dict(iter_tensors(archive, manifest, torch.device("cpu"), torch.bfloat16, staged=staged))
    for k in saved:
        assert torch.equal(loaded[k], saved[k].to(torch.bfloat16)), k
    ids = torch.tensor([[2, 3, 4, 5]])
    with torch.no_grad():
        assert torch.equal(load_model(archive, ref, device="cpu")(ids).logits, original(ids).logits)
