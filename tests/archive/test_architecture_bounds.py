"""What a snapshot's config.json or GGUF metadata says about its architecture is kept only as names and counts a
reader could use: a 5 MB architecture name from a GGUF file widened `ls`'s column for every row, and a layer count
of -2^63 or a context length of 2^64-1 was shown as given."""

from __future__ import annotations

from modelarc.archive.formats.describe import (
    MAX_ARCHITECTURES,
    MAX_MODEL_TYPE,
    MAX_NAME,
    architecture_from_config,
    architecture_from_gguf,
    architecture_problem,
)


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


def test_a_model_type_longer_than_its_column_is_dropped() -> None:
    """snapshots.model_type is VARCHAR(100): PostgreSQL refused a longer one (a DataError, not a push)."""
    assert architecture_from_config({"model_type": "x" * (MAX_MODEL_TYPE + 1)}) == {}
    assert architecture_from_config({"model_type": "x" * MAX_MODEL_TYPE}) == {"model_type": "x" * MAX_MODEL_TYPE}


def test_what_the_two_readers_write_is_a_well_typed_architecture() -> None:
    """An offer's architecture (recorded as stated for a snapshot without config.json) is checked against this."""
    for arch in (
        architecture_from_config({"model_type": "llama", "architectures": ["A"], "num_hidden_layers": 2}),
        architecture_from_gguf(
            {"general.architecture": "llama", "llama.block_count": 2, "general.file_type": 1}, ["Q4_K"]
        ),
        {"a_field_of_a_newer_version": [1, {"x": None}]},  # kept as it is, read by nothing here
    ):
        assert architecture_problem(arch) is None, arch


def test_an_architecture_of_the_wrong_type_names_the_field() -> None:
    assert architecture_problem({"model_type": ["llama"]}) == "model_type must be a name of 1 to 100 characters"
    assert architecture_problem({"architectures": ["A"] * (MAX_ARCHITECTURES + 1)}).startswith("architectures ")
    assert architecture_problem({"hidden_size": 1.5}).startswith("hidden_size ")
    assert architecture_problem({"gguf_file_type": None}).startswith("gguf_file_type ")
