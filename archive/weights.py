"""Which files of a snapshot are its weights: every file except a short public list of metadata (docs/FORMAT.md
"Weights and public metadata").

One definition serves both places that must agree: an access policy withholds the weights of a gated or restricted
snapshot (archive/access.py), and a withdrawal releases them (archive/provenance/withdrawal.py). It is an
allow-list, not a list of weight formats, because new weight formats appear faster than any list of them: a file
this module does not know is weights, so an unknown format is withheld and freed, never served by mistake.

A file is public metadata when its manifest kind is not a weight kind, it has no tensor part, and its name is on
the list below: what a model page, ``AutoConfig`` and ``AutoTokenizer`` need without the weights, and what says
under which terms the weights may be used. Changing the list changes what ``withdraw`` records free when a rebuild
replays them (more, for a file taken off it) and what an ``access`` record withholds: docs/FORMAT.md names it.
"""

from __future__ import annotations

from modelarc.archive.manifest import FileEntry, SnapshotManifest

# manifest file kinds that are weights whatever their name (their headers describe the tensors)
WEIGHT_KINDS = ("safetensors", "gguf")

# a file whose lower-cased name ends so is public metadata (unless its kind is a weight kind)
PUBLIC_SUFFIXES = (
    ".json",  # config, generation_config, tokenizer, tokenizer_config, special tokens, a safetensors index
    ".md",  # the model card and other documents
    ".txt",  # merges.txt, vocab.txt, licence texts, requirements
    ".py",  # custom modeling/tokenization code that a config's auto_map names (trust_remote_code)
    ".yaml",  # training and inference configs (.yml alike)
    ".yml",
    ".jinja",  # chat templates
    ".tiktoken",  # tiktoken BPE ranks: a tokenizer
    ".cfg",  # setup and framework configs (.toml, .ini alike)
    ".toml",
    ".ini",
)
# a file whose lower-cased base name is one of these is public metadata, in any folder: SentencePiece and BPE
# tokenizer models with no suffix above, git's file attributes, and licence/notice files without a suffix
PUBLIC_NAMES = frozenset(
    {
        "tokenizer.model",
        "tokenizer.model.v3",  # Mistral v0.3's SentencePiece model
        "spiece.model",
        "spm.model",  # DeBERTa-v3
        "sentencepiece.model",
        "sentencepiece.bpe.model",
        "bpe.codes",  # fastBPE codes (PhoBERT, BERTweet)
        "source.spm",
        "target.spm",
        "vocab.bpe",
        ".gitattributes",
        "license",
        "licence",
        "notice",
        "copying",
    }
)


def is_public_metadata(path: str, kind: str) -> bool:
    """Whether a file is on the public list: a non-weight kind and a name the list above names."""
    if kind in WEIGHT_KINDS:
        return False
    lower = path.lower()
    return lower.endswith(PUBLIC_SUFFIXES) or lower.rsplit("/", 1)[-1] in PUBLIC_NAMES


def is_weights_entry(entry: FileEntry) -> bool:
    """Whether a file of a manifest is weights: anything not public metadata, and any file with tensor parts."""
    return not is_public_metadata(entry.path, entry.kind) or any(p.kind == "tensor" for p in entry.parts)


def weight_object_ids(manifest: SnapshotManifest) -> set[str]:
    """The objects a withdrawal releases: the tensor chunks of parsed weight files (their headers and padding stay,
    so ``show`` can still list the tensors), every chunk of the other weight files, but no chunk a kept file uses
    too (two files of a snapshot may hold the same bytes)."""
    released: set[str] = set()
    kept: set[str] = set()
    for f in manifest.files:
        weights = is_weights_entry(f)
        parsed = f.kind in WEIGHT_KINDS or any(p.kind == "tensor" for p in f.parts)
        for part in f.parts:
            into = released if weights and (part.kind == "tensor" or not parsed) else kept
            into.update(c.id for c in part.chunks)
    return released - kept


def kept_files(manifest: SnapshotManifest) -> list[FileEntry]:
    """The files a withdrawn snapshot keeps (and can still restore and verify): its public metadata."""
    return [f for f in manifest.files if not is_weights_entry(f)]
