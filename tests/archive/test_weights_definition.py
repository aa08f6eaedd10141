"""What counts as weights (archive/weights.py): every file but a short public list of metadata, one definition for
what an access policy withholds and what a withdrawal frees (docs/FORMAT.md "Weights and public metadata").

A weight format no list names (ONNX external data, rust-bert, Paddle, MXNet, Darknet, torch.export, ExecuTorch,
Keras HDF5, skops, pickles, numpy arrays, an unknown binary) is withheld and freed alike; configs, tokenizers, model
cards and licences stay public and kept."""

from __future__ import annotations

import hashlib

import pytest

from modelarc.archive.access import is_withheld_entry, is_withheld_file, withheld_object_ids
from modelarc.archive.manifest import Chunk, FileEntry, Part, SnapshotManifest
from modelarc.archive.weights import kept_files, weight_object_ids
from modelarc.storage import ObjectId

# one file per weight-format class that an older suffix list missed (the access list, the withdrawal list or both)
WEIGHT_FILES = [
    "onnx/model.onnx_data",  # ONNX external data (Optimum)
    "onnx/model.onnx.data",  # ONNX external data (torch.onnx, onnx.save_model)
    "rust_model.ot",  # rust-bert
    "model.pdiparams",  # Paddle inference
    "model.params",  # MXNet / Gluon
    "model_best.pth.tar",  # a classic PyTorch checkpoint name
    "model.pt2",  # torch.export / AOTInductor package
    "model.pte",  # ExecuTorch program
    "tf_model.hdf5",  # Keras HDF5
    "skops-model.skops",  # scikit-learn through skops
    "yolov4.weights",  # Darknet
    "model.trt",  # TensorRT engine
    "model.pkl",  # a pickle
    "embeddings.npy",  # a numpy array
    "model.keras",  # Keras v3
    "variables/variables.data-00000-of-00001",  # a TensorFlow checkpoint shard
    "weights.unknown-format",  # a format no list knows
    "blob",  # no suffix at all
]
PUBLIC_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors.index.json",
    "README.md",
    "merges.txt",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "tokenizer.model.v3",  # Mistral v0.3
    "spm.model",  # DeBERTa-v3
    "bpe.codes",  # PhoBERT, BERTweet
    "spm/spiece.model",
    "qwen.tiktoken",
    "chat_template.jinja",
    "modeling_custom.py",
    "training/args.yaml",
    "setup.cfg",
    ".gitattributes",
    "LICENSE",
    "NOTICE",
]


def _blob(path: str, content: bytes) -> FileEntry:
    oid = ObjectId(hashlib.sha256(content).hexdigest())
    chunk = (Chunk(oid, len(content)),)
    return FileEntry(path, len(content), oid, "blob", (Part("blob", 0, len(content), chunk),))


def _safetensors(path: str, header: bytes, tensor: bytes) -> FileEntry:
    h = Chunk(ObjectId(hashlib.sha256(header).hexdigest()), len(header))
    t = Chunk(ObjectId(hashlib.sha256(tensor).hexdigest()), len(tensor))
    parts = (
        Part("header", 0, len(header), (h,)),
        Part("tensor", len(header), len(tensor), (t,), name="w", dtype="F32", shape=(1,)),
    )
    return FileEntry(path, len(header) + len(tensor), "0" * 64, "safetensors", parts)


@pytest.mark.parametrize("path", WEIGHT_FILES)
def test_a_weight_file_of_any_format_is_withheld_and_freed(path: str) -> None:
    weights = _blob(path, b"SECRET " + path.encode())
    config = _blob("config.json", b"{}")
    manifest = SnapshotManifest((weights, config))
    chunk = weights.parts[0].chunks[0].id
    assert is_withheld_file(path, "blob") and is_withheld_entry(weights)
    assert chunk in withheld_object_ids(manifest)  # what a gated snapshot's /v1/objects refuses
    assert chunk in weight_object_ids(manifest)  # what `modelarc rm` releases
    assert [f.path for f in kept_files(manifest)] == ["config.json"]


@pytest.mark.parametrize("path", PUBLIC_FILES)
def test_public_metadata_is_served_and_kept(path: str) -> None:
    entry = _blob(path, b"metadata of " + path.encode())
    manifest = SnapshotManifest((entry,))
    assert not is_withheld_file(path, "blob") and not is_withheld_entry(entry)
    assert withheld_object_ids(manifest) == frozenset() and weight_object_ids(manifest) == set()
    assert kept_files(manifest) == [entry]


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
def test_a_parsed_weight_file_is_weights_whatever_its_name(kind: str) -> None:
    assert is_withheld_file("config.json", kind)


def test_a_withdrawal_keeps_safetensors_headers_and_chunks_a_public_file_shares() -> None:
    weights = _safetensors("model.safetensors", b'{"w":{}}', b"TENSOR BYTES")
    tokenizer = _blob("tokenizer.model", b"SAME BYTES")
    copy = _blob("tokenizer.bin", b"SAME BYTES")  # not on the list, but its bytes are the tokenizer's
    manifest = SnapshotManifest((weights, tokenizer, copy))
    header, tensor = (p.chunks[0].id for p in weights.parts)
    assert weight_object_ids(manifest) == {tensor}  # the header stays for `show`; the shared chunk for the tokenizer
    assert [f.path for f in kept_files(manifest)] == ["tokenizer.model"]


def test_a_policys_patterns_withhold_public_metadata_too() -> None:
    assert is_withheld_file("notes/interviews.txt", "blob", ["notes/*"])
    assert not is_withheld_file("notes/interviews.txt", "blob", ["other/*"])


def test_a_policys_patterns_ignore_case_as_the_public_list_does() -> None:
    """`--withhold '*.json'` must withhold `CONFIG.JSON` too: the public list takes it as `.json` metadata whatever
    its case, so a case-sensitive pattern left it public under a spelling the pusher chose."""
    assert is_withheld_file("CONFIG.JSON", "blob", ["*.json"])
    assert is_withheld_file("Notes/Interviews.TXT", "blob", ["notes/*.txt"])
    assert is_withheld_file("notes/a.txt", "blob", ["NOTES/*"])
    assert not is_withheld_file("CONFIG.JSON", "blob", ["*.yaml"])
