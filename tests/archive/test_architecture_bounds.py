"""What a snapshot's config.json or GGUF metadata says about its architecture is kept only as names and counts a
reader could use: a 5 MB architecture name from a GGUF file widened `ls`'s column for every row, and a layer count
of -2^63 or a context length of 2^64-1 was shown as given."""

from __future__ import annotations

from modelarc.archive.formats.describe import MAX_NAME, architecture_from_config, architecture_from_gguf


def test_a_config_keeps_plain_names_and_counts() -> None:
    arch = architecture_from_config(
        {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "num_hidden_layers": 2,
            "vocab_size": 32,
        }
    )
    assert arch == {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "num_layers": 2,
        "vocab_size": 32,
    }


def test_a_config_drops_names_too_long_and_counts_out_of_range() -> None:
    arch = architecture_from_config(
        {
            "model_type": "x" * (MAX_NAME + 1),
            "architectures": ["y" * 5_000_000, "Fine"],
            "num_hidden_layers": -(2**63),
            "hidden_size": 2**64 - 1,
            "vocab_size": True,
            "max_position_embeddings": 4096,
        }
    )
    assert arch == {"architectures": ["Fine"], "context_length": 4096}


def test_gguf_metadata_drops_the_same() -> None:
    arch = architecture_from_gguf(
        {
            "general.architecture": "z" * 5_000_000,
            "general.file_type": -1,
        },
        ["F32"],
    )
    assert arch == {"format": "gguf", "gguf_quantization": ["F32"]}
    arch = architecture_from_gguf(
        {
            "general.architecture": "llama",
            "llama.block_count": -(2**63),
            "llama.context_length": 2**64 - 1,
            "llama.embedding_length": 64,
        },
        ["F32"],
    )
    assert arch == {"format": "gguf", "gguf_quantization": ["F32"], "model_type": "llama", "hidden_size": 64}
