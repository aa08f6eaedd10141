"""GGUF files: parsed per tensor, deduplicated per tensor, restored byte-identically; lying headers refused."""

import filecmp
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from modelfactory import write_gguf_file

from modelarc.archive.repository import Archive
from modelarc.errors import GGUFFormatError


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "token_embd.weight": rng.standard_normal((4, 16)).astype(np.float32),
        "blk.0.attn_q.weight": rng.standard_normal((16, 16)).astype(np.float32),
        "blk.1.attn_q.weight": rng.standard_normal((16, 16)).astype(np.float16),
        "output_norm.weight": np.ones(16, dtype=np.float32),
    }


def test_gguf_round_trip_with_one_part_per_tensor(archive: Archive, tmp_path: Path) -> None:
    src = tmp_path / "m"
    src.mkdir()
    write_gguf_file(src / "model.gguf", _tensors(), blocks=2)
    archive.push(src, "acme/gguf:v1")
    archive.pull("acme/gguf:v1", tmp_path / "out")
    assert filecmp.cmp(src / "model.gguf", tmp_path / "out" / "model.gguf", shallow=False)
    _ref, snap = archive.resolve("acme/gguf:v1")
    manifest = archive.manifest(snap)
    [entry] = manifest.files
    assert entry.kind == "gguf"
    tensors = {p.name: p for p in entry.tensors()}
    assert set(tensors) == set(_tensors())
    assert tensors["blk.1.attn_q.weight"].dtype == "F16" and tensors["blk.0.attn_q.weight"].dtype == "F32"
    view = archive.show("acme/gguf:v1")
    assert view.architecture["model_type"] == "llama" and view.architecture["context_length"] == 128
    assert view.architecture["vocab_size"] == 4 and view.architecture["gguf_quantization"] == ["F16", "F32"]
    assert view.parameter_count == sum(a.size for a in _tensors().values())


def test_requantised_variant_dedups_unchanged_tensors(archive: Archive, tmp_path: Path) -> None:
    base = _tensors()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_gguf_file(tmp_path / "a" / "model.gguf", base, blocks=2)
    variant = dict(base)
    variant["blk.0.attn_q.weight"] = base["blk.0.attn_q.weight"].astype(np.float16)  # one tensor re-quantised
    write_gguf_file(tmp_path / "b" / "model.gguf", variant, blocks=2)
    archive.push(tmp_path / "a", "acme/gguf:f32")
    second = archive.push(tmp_path / "b", "acme/gguf:mixed")
    changed = variant["blk.0.attn_q.weight"].nbytes
    assert second.stored_bytes_added <= changed + 4096  # the re-quantised tensor, the header and the manifest


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b"XXXX" + b[4:], "bad magic"),
    (lambda b: b[:4] + struct.pack("<I", 9) + b[8:], "unsupported GGUF version"),
    (lambda b: b[:40], "past the end|truncated|cannot fit"),
    (lambda b: b[:24] + struct.pack("<Q", 2**60) + b[32:], "past the end"),
])
def test_malformed_headers_are_refused(archive: Archive, tmp_path: Path, mangle, message: str) -> None:
    src = tmp_path / "m"
    src.mkdir()
    good = write_gguf_file(tmp_path / "good.gguf", _tensors(), blocks=2).read_bytes()
    (src / "model.gguf").write_bytes(mangle(good))
    with pytest.raises(GGUFFormatError, match=message) as err:
        archive.push(src, "acme/bad:v1")
    assert "model.gguf" in str(err.value)
    with archive.catalog.session() as s:
        from modelarc.registry.models import Snapshot

        assert s.query(Snapshot).count() == 0


def _llama_gguf(path: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=8, max_position_embeddings=64,
                                   tie_word_embeddings=False)
    sd = transformers.LlamaForCausalLM(cfg).state_dict()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(2)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(8)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "\u2581hello", "\u2581world", "\u2581foo", "\u2581bar", "\u2581baz"])
    w.add_token_scores([0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0])
    w.add_token_types([2, 3, 3, 1, 1, 1, 1, 1])
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    for i in range(2):
        for a, b in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                     ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                     ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
                     ("post_attention_layernorm", "ffn_norm")]:
            names[f"model.layers.{i}.{a}.weight"] = f"blk.{i}.{b}.weight"
    for k, v in sd.items():
        w.add_tensor(names[k], v.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_load_model_on_a_gguf_snapshot_matches_transformers_on_the_file(archive: Archive, tmp_path: Path) -> None:
    import torch
    import transformers

    from modelarc.archive.runtime.models import load_model

    src = tmp_path / "g"
    src.mkdir()
    _llama_gguf(src / "tiny.gguf")
    archive.push(src, "acme/tiny-gguf:v1")
    ours = load_model(archive, "acme/tiny-gguf:v1", device="cpu")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file="tiny.gguf").eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, theirs(ids).logits)


def test_run_on_a_gguf_snapshot_equals_generate_on_the_file(archive: Archive, tmp_path: Path) -> None:
    import torch
    import transformers

    from modelarc.archive.runtime.runs import GenerationParams, generate

    src = tmp_path / "g"
    src.mkdir()
    _llama_gguf(src / "tiny.gguf")
    archive.push(src, "acme/tiny-gguf:v1")
    result = generate(archive, "acme/tiny-gguf:v1", "hello world foo", GenerationParams(max_new_tokens=4, device="cpu"))
    tok = transformers.AutoTokenizer.from_pretrained(src, gguf_file="tiny.gguf")
    model = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file="tiny.gguf").eval()
    ids = tok("hello world foo", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    assert result.text == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert result.new_tokens == out.shape[1] - ids.shape[1]


def test_load_model_on_a_gguf_snapshot_with_a_config_json_reads_the_gguf(archive: Archive, tmp_path: Path) -> None:
    """Many Hub GGUF repos carry a config.json too: the GGUF file still describes (and holds) the model; the
    config.json sent the load looking for safetensors weights ("the archive has no weights")."""
    import json

    import torch
    import transformers

    from modelarc.archive.runtime.models import load_model

    src = tmp_path / "g"
    src.mkdir()
    _llama_gguf(src / "tiny.gguf")
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32, "vocab_size": 8}
    (src / "config.json").write_text(json.dumps(config))
    archive.push(src, "acme/tiny-gguf:v1")
    ours = load_model(archive, "acme/tiny-gguf:v1", device="cpu")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(src, gguf_file="tiny.gguf").eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, theirs(ids).logits)
