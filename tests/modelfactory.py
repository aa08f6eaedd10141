"""Small real models for tests: safetensors files written by the safetensors library, plus config files."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

TINY_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "vocab_size": 128,
    "max_position_embeddings": 256,
}


def bf16_bits(values: np.ndarray) -> np.ndarray:
    """FP32 -> BF16 bit patterns (round to nearest even), as uint16: numpy has no bfloat16."""
    u = values.astype(np.float32).view(np.uint32)
    rounded = u + 0x7FFF + ((u >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def tiny_tensors(seed: int = 0, layers: int = 2, hidden: int = 64, vocab: int = 128) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": (rng.standard_normal((vocab, hidden)) * 0.02).astype(np.float32)
    }
    for i in range(layers):
        tensors[f"model.layers.{i}.mlp.weight"] = (rng.standard_normal((hidden * 2, hidden)) * 0.02).astype(
            np.float32
        )
        tensors[f"model.layers.{i}.attn.weight"] = (rng.standard_normal((hidden, hidden)) * 0.02).astype(
            np.float32
        )
        tensors[f"model.layers.{i}.norm.weight"] = np.ones(hidden, dtype=np.float32)
    tensors["lm_head.bias"] = np.zeros(vocab, dtype=np.float32)
    tensors["model.position_ids"] = np.arange(16, dtype=np.int64)
    return tensors


def write_model(
    folder: Path,
    tensors: dict[str, np.ndarray] | None = None,
    config: dict | None = None,
    extra_files: dict[str, bytes] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        tensors if tensors is not None else tiny_tensors(),
        str(folder / "model.safetensors"),
        metadata=metadata or {"format": "pt"},
    )
    (folder / "config.json").write_text(json.dumps(config or TINY_CONFIG, indent=2))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "vocab": {"a": 0, "b": 1}}))
    for rel, data in (extra_files or {}).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def finetune(
    tensors: dict[str, np.ndarray], names: list[str], scale: float = 1e-3, seed: int = 1
) -> dict[str, np.ndarray]:
    """A copy where only ``names`` change, by small relative noise."""
    rng = np.random.default_rng(seed)
    out = dict(tensors)
    for name in names:
        t = tensors[name]
        out[name] = (t + rng.standard_normal(t.shape).astype(t.dtype) * scale).astype(t.dtype)
    return out


@functools.lru_cache(maxsize=4)
def _big_tensors(megabytes: int, seed: int) -> dict[str, np.ndarray]:
    """Generated once per process and size (0.34 s a call in a profile of test_cli_hostile_store_files.py, 38
    calls); read-only, so no test can change what the next one is given."""
    rng = np.random.default_rng(seed)
    n = megabytes * 1024 * 1024 // 4
    tensors = {
        "big.f32": (rng.standard_normal(n // 2) * 0.02).astype(np.float32),
        "big.bf16": bf16_bits(rng.standard_normal(n) * 0.02),
    }
    for array in tensors.values():
        array.flags.writeable = False
    return tensors


def big_model(folder: Path, megabytes: int = 24, seed: int = 0) -> Path:
    """A model whose tensors span several 8 MiB chunks, with BF16 and FP32 tensors."""
    tensors = _big_tensors(megabytes, seed)
    folder.mkdir(parents=True, exist_ok=True)
    from safetensors.numpy import save_file as save

    # safetensors.numpy cannot tag uint16 as BF16, so write the header ourselves around real data.
    save({"big.f32": tensors["big.f32"]}, str(folder / "a.safetensors"))
    write_bf16_file(folder / "b.safetensors", {"big.bf16": tensors["big.bf16"]})
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    return folder


def write_bf16_file(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header: dict[str, object] = {}
    offset = 0
    for name, arr in tensors.items():
        header[name] = {
            "dtype": "BF16",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for arr in tensors.values():
            fh.write(arr.astype("<u2").tobytes())



def write_odd_header_safetensors(path: Path, seed: int = 0) -> Path:
    """A safetensors file whose header is an odd number of bytes (a writer that does not pad it to 8), of FP32 and
    BF16 tensors spanning several 8 MiB chunks: every chunk after the header starts at an odd offset in the file."""
    rng = np.random.default_rng(seed)
    f32 = (rng.standard_normal(3 << 20) * 0.02).astype(np.float32)  # 12 MiB
    bf16 = bf16_bits(rng.standard_normal(5 << 20) * 0.02)  # 10 MiB
    header = {
        "w.f32": {"dtype": "F32", "shape": [f32.size], "data_offsets": [0, f32.nbytes]},
        "w.bf16": {"dtype": "BF16", "shape": [bf16.size], "data_offsets": [f32.nbytes, f32.nbytes + bf16.nbytes]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (1 - len(raw) % 2)  # 8 + an odd length
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + f32.tobytes() + bf16.astype("<u2").tobytes())
    return path

# Odd element counts: byte lengths that are not multiples of 4 or 8 and tensors at unaligned offsets, including
# one BF16 tensor that runs 10 bytes past the first 8 MiB chunk.
ODD_SHAPES = {
    "odd.bf16.vector": ("bfloat16", (7,)),
    "odd.bf16.matrix": ("bfloat16", (3, 5)),
    "odd.bf16.rows": ("bfloat16", (3, 333)),
    "odd.bf16.past_a_chunk": ("bfloat16", (3, 1398103)),
    "odd.f32.vector": ("float32", (7,)),
    "odd.f32.matrix": ("float32", (3, 5)),
    "odd.f32.rows": ("float32", (7, 129)),
    "odd.f16.rows": ("float16", (5, 101)),
}


def odd_float_tensors(seed: int = 0) -> dict[str, Any]:
    """torch tensors (BF16, F16, F32) of odd element counts, weight-like values."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return {
        name: (torch.randn(shape, generator=gen) * 0.02).to(getattr(torch, dtype))
        for name, (dtype, shape) in ODD_SHAPES.items()
    }


def odd_float_model(folder: Path, seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """A model folder whose weights are ``odd_float_tensors``, written by safetensors.torch; returns the tensors."""
    from safetensors.torch import save_file as save_torch

    tensors = odd_float_tensors(seed)
    folder.mkdir(parents=True, exist_ok=True)
    save_torch(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    return folder, tensors


def tiny_llama(folder: Path, seed: int = 0, layers: int = 1) -> Path:
    """A real transformers Llama of a few thousand parameters, saved with ``save_pretrained`` into ``folder``: what
    a test needs to load a model (transformers is imported here, only by the tests that build one)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=20,
        max_position_embeddings=64,
    )
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def tiny_gpt2(folder: Path, words: tuple[str, ...] = ("<unk>", "<pad>", "the", "model", "was")) -> Path:
    """A tiny GPT-2 with a word-level tokenizer over ``words``, saved into ``folder``: what `modelarc run` needs to
    generate (and `--record` a run) with no download."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(words), n_positions=32)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")
    fast.save_pretrained(folder)
    return folder


def write_gguf_file(path: Path, tensors: dict[str, np.ndarray], arch: str = "llama", blocks: int = 1) -> Path:
    """A real GGUF v3 file, written by the ``gguf`` package as llama.cpp's converters write one. ``blocks`` is the
    header's block count: it should match the ``blk.N`` tensors given, as a converter's would."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(128)
    w.add_embedding_length(16)
    w.add_block_count(blocks)
    w.add_token_list(["<s>", "</s>", "a", "b"])
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# a model in two weight formats at once (as many Hub repos carry one): dtype names both formats use (F32, F16)
MIXED_SAFETENSORS = {
    "model.embed.weight": np.arange(128, dtype=np.float32).reshape(8, 16),
    "model.norm.weight": np.ones(16, dtype=np.float16),
}
MIXED_GGUF = {
    "token_embd.weight": np.arange(64, dtype=np.float32).reshape(4, 16),
    "blk.0.attn_q.weight": np.zeros((16, 16), dtype=np.float16),
}


def write_mixed_model(folder: Path) -> Path:
    """model.safetensors (written by safetensors: F32 128 + F16 16 parameters) beside model.gguf (by gguf: F32 64
    + F16 256), with config.json and tokenizer.json."""
    write_model(folder, dict(MIXED_SAFETENSORS))
    write_gguf_file(folder / "model.gguf", dict(MIXED_GGUF))
    return folder
