"""What a snapshot is, read from its own files: architecture from config.json, parameters from the tensors."""

from __future__ import annotations

import math
from typing import Any

from modelarc.archive.manifest import SnapshotManifest
from modelarc.registry.bounds import text_problem

# transformers configs name the same thing differently per family; the first key present wins.
_ARCH_KEYS: dict[str, tuple[str, ...]] = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "vocab_size": ("vocab_size",),
    "context_length": ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"),
}


def architecture_from_config(config: dict[str, Any]) -> dict[str, Any]:
    arch: dict[str, Any] = {}
    if _storable(config.get("model_type"), MAX_MODEL_TYPE):
        arch["model_type"] = config["model_type"]
    if isinstance(config.get("architectures"), list):
        arch["architectures"] = [a for a in config["architectures"][:MAX_ARCHITECTURES] if _storable(a)]
    sources = [config]
    if isinstance(config.get("text_config"), dict):
        sources.append(config["text_config"])
    for field, keys in _ARCH_KEYS.items():
        for src in sources:
            value = next(
                (src[k] for k in keys if _count(src.get(k))),
                None,
            )
            if value is not None:
                arch[field] = value
                break
    return arch


def architecture_from_gguf(metadata: dict[str, Any], quant_types: list[str]) -> dict[str, Any]:
    from modelarc.archive.formats.gguf import GGUFArray

    arch_name = metadata.get("general.architecture")
    arch: dict[str, Any] = {"format": "gguf", "gguf_quantization": sorted(set(quant_types))}
    if _storable(arch_name, MAX_MODEL_TYPE):
        arch["model_type"] = arch_name
        for field, key in (
            ("context_length", "context_length"),
            ("hidden_size", "embedding_length"),
            ("num_layers", "block_count"),
        ):
            value = metadata.get(f"{arch_name}.{key}")
            if _count(value):
                arch[field] = value
    tokens = metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, list | GGUFArray):
        arch["vocab_size"] = len(tokens)
    if _count(metadata.get("general.file_type")):
        arch["gguf_file_type"] = metadata["general.file_type"]
    return arch


def parameter_counts(manifest: SnapshotManifest) -> tuple[int, dict[str, int]]:
    """Total parameters and parameters per dtype, over every tensor of every safetensors file."""
    per_dtype: dict[str, int] = {}
    for _file, part in manifest.tensors():
        n = math.prod(part.shape or ())
        per_dtype[part.dtype or "?"] = per_dtype.get(part.dtype or "?", 0) + n
    return sum(per_dtype.values()), dict(sorted(per_dtype.items()))


# Real model types and class names are a few dozen characters: a longer one is no name a reader could use, and a
# 5 MB architecture name from a GGUF file widened `ls`'s column for every row.
MAX_NAME = 128
MAX_MODEL_TYPE = 100  # the catalog's snapshots.model_type column is VARCHAR(100): PostgreSQL refuses a longer one
MAX_ARCHITECTURES = 16
MAX_QUANT_TYPES = 64  # GGUF's tensor types (ggml_type) number a few dozen
MAX_COUNT = 2**63 - 1  # what the catalog's integers hold

# what each field of an architecture (as the two functions above write it) may hold: a name, a list of names, a count
_NAME_FIELDS = {"model_type": MAX_MODEL_TYPE, "format": MAX_NAME}
_NAME_LIST_FIELDS = {"architectures": MAX_ARCHITECTURES, "gguf_quantization": MAX_QUANT_TYPES}
_COUNT_FIELDS = (*_ARCH_KEYS, "gguf_file_type")


def architecture_problem(arch: dict[str, Any]) -> str | None:
    """What in a stated architecture is not as this module writes one, naming the field, or ``None``.

    An offer's architecture is recorded as the sender states it when the snapshot has no config.json to derive
    it from (archive/snapshot_figures.py): a list where ``model_type`` is text reached the catalog's column (a 500),
    and ``show`` joins ``architectures`` as text. Fields this version does not write are left as they are: a newer
    sender's, kept in the JSON column and read by nothing here.

    >>> architecture_problem({"model_type": ["llama"]})
    'model_type must be a name of 1 to 100 characters'
    """
    for field, value in arch.items():
        if field in _NAME_FIELDS and not _storable(value, _NAME_FIELDS[field]):
            return f"{field} must be a name of 1 to {_NAME_FIELDS[field]} characters"
        if field in _NAME_LIST_FIELDS and not (
            isinstance(value, list) and len(value) <= _NAME_LIST_FIELDS[field] and all(map(_storable, value))
        ):
            return f"{field} must be a list of at most {_NAME_LIST_FIELDS[field]} names of 1 to {MAX_NAME} characters"
        if field in _COUNT_FIELDS and not _count(value):
            return f"{field} must be a whole number from 0 to {MAX_COUNT}"
    return None


def _storable(value: object, limit: int = MAX_NAME) -> bool:
    """A name the catalog can hold and show: text without NUL (PostgreSQL's columns refuse it, so a config.json
    holding one, pushed or received, would fail the commit) or a lone surrogate (a JSON "\\ud800" escape: text is
    stored as UTF-8, which has none), of at most ``limit`` characters. Such a name is left out, as a missing one
    is."""
    return isinstance(value, str) and 0 < len(value) <= limit and text_problem(value) is None


def _count(value: object) -> bool:
    """A size or count as a config states it: an integer (not a bool) the catalog can hold, not negative."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
