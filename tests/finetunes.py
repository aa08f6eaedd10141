"""A genuine model family made by the suite itself: a tiny real Llama trained into a base, then fine-tuned.

Delta storage (codec 3, issue 15) is only worth testing on weights whose differences look like a real fine-tune's:
an optimizer moving every parameter a little, by amounts tied to its gradient history, so that in BF16 a fraction
of the values round back to the base's bits and the rest differ in their low mantissa bits. Random noise added to
random tensors (``modelfactory.finetune``) has neither property. So this module trains: a ``LlamaForCausalLM``
from a tiny config (2 layers, hidden 64, vocab 256; 125k parameters), FP32 on the CPU, AdamW.

- The base: trained from a seeded initialisation on task A (next token = (5 * token + 3) mod 256).
- Each fine-tune: the base trained further on task B (next token = (7 * token + 11) mod 256), at a strength
  (learning rate, steps): ``LIGHT``, ``MEDIUM``, ``STRONG``.
- Each member is written with ``save_pretrained(..., safe_serialization=True)`` twice: FP32, and cast to BF16 (the
  FP32 weights rounded to nearest even, what ``torch.Tensor.to(torch.bfloat16)`` does). A folder holds
  ``model.safetensors``, ``config.json`` and ``generation_config.json``.

Deterministic: the same bytes on every run on one machine. Training runs on one thread (a reduction's order, so
its rounding, can depend on the thread count) under ``torch.random.fork_rng`` with fixed seeds, and the caller's
thread count and RNG state are put back afterwards. A family (base and three fine-tunes, both precisions) takes
about 2 s on one core, plus the ``transformers`` import the first time.

    family = write_family(tmp_path / "family")
    archive.push(family.folder("base", "BF16"), "acme/tiny:base")
    archive.push(family.folder("light", "BF16"), "acme/tiny-ft:v1")
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VOCAB = 256
SEQUENCE = 32
BATCH = 8
BASE_STEPS = 40
BASE_LR = 1e-3
DTYPES = ("BF16", "F32")  # safetensors' names, as the archive and the codecs spell them

# LlamaConfig keyword arguments. Untied embeddings: lm_head is a tensor of its own, as in most fine-tuned LLMs.
TINY_LLAMA: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
    "initializer_range": 0.125,  # 1/sqrt(hidden): the fan-in scale; Llama's 0.02 is for hidden 4096
}


@dataclass(frozen=True)
class Task:
    """Sequences that follow ``next = (mul * token + add) mod VOCAB`` from a random first token."""

    mul: int
    add: int


BASE_TASK = Task(5, 3)
FINETUNE_TASK = Task(7, 11)


@dataclass(frozen=True)
class Strength:
    """How hard a fine-tune moves the base: AdamW's learning rate and the number of optimizer steps."""

    name: str
    lr: float
    steps: int


LIGHT = Strength("light", 1e-5, 10)
MEDIUM = Strength("medium", 3e-5, 15)
STRONG = Strength("strong", 1e-4, 20)
STRENGTHS = (LIGHT, MEDIUM, STRONG)


@dataclass(frozen=True)
class Family:
    """Where each member was written: ``folders[member][dtype]``, member "base" or a strength's name."""

    root: Path
    folders: dict[str, dict[str, Path]]

    def folder(self, member: str, dtype: str) -> Path:
        return self.folders[member][dtype]

    @property
    def finetunes(self) -> list[str]:
        return [m for m in self.folders if m != "base"]


@dataclass(frozen=True)
class StoredTensor:
    dtype: str
    shape: tuple[int, ...]
    data: bytes


def read_tensors(folder: Path) -> dict[str, StoredTensor]:
    """Every tensor of ``folder/model.safetensors`` as written (dtype, shape, raw little-endian bytes); numpy
    has no bfloat16, so the header is parsed here rather than by ``safetensors.numpy``."""
    blob = (folder / "model.safetensors").read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__", None)
    start = 8 + n
    return {
        name: StoredTensor(
            info["dtype"],
            tuple(info["shape"]),
            blob[start + info["data_offsets"][0] : start + info["data_offsets"][1]],
        )
        for name, info in header.items()
    }


@contextmanager
def _isolated_torch(seed: int) -> Iterator[Any]:
    """One thread and a private RNG seeded with ``seed``; the caller's thread count and RNG state come back."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield torch
    finally:
        torch.set_num_threads(threads)


def batches(task: Task, count: int, seed: int) -> list[Any]:
    """``count`` batches of token sequences of ``task``, from a generator of their own (not the global RNG)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    steps = torch.arange(SEQUENCE)
    out = []
    for _ in range(count):
        seq = torch.empty(BATCH, SEQUENCE, dtype=torch.long)
        seq[:, 0] = torch.randint(0, VOCAB, (BATCH,), generator=gen)
        for i in steps[1:]:
            seq[:, i] = (task.mul * seq[:, i - 1] + task.add) % VOCAB
        out.append(seq)
    return out


def new_model(config: dict[str, Any] | None = None) -> Any:
    """An untrained ``LlamaForCausalLM`` of the tiny config, initialised from the current torch RNG."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**(config or TINY_LLAMA)))


def train(model: Any, task: Task, lr: float, steps: int, seed: int) -> float:
    """``steps`` AdamW steps of next-token loss on ``task`` in place, FP32; returns the last step's loss."""
    import torch

    model.float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss = float("nan")
    for ids in batches(task, steps, seed):
        out = model(input_ids=ids, labels=ids)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        loss = out.loss.detach().item()
    model.eval()
    return loss


def task_loss(model: Any, task: Task, seed: int = 999) -> float:
    """Mean next-token loss on four held-out batches of ``task``: how a test tells a fine-tune learned it."""
    import torch

    with torch.no_grad():
        return sum(float(model(input_ids=ids, labels=ids).loss) for ids in batches(task, 4, seed)) / 4


def base_model(seed: int = 0) -> Any:
    """The trained base (FP32). Same seed, same weights."""
    with _isolated_torch(seed):
        model = new_model()
        train(model, BASE_TASK, BASE_LR, BASE_STEPS, seed=seed + 1)
    return model


def finetuned(base: Any, strength: Strength, seed: int = 0) -> Any:
    """A copy of ``base`` trained further on the fine-tune task at ``strength``; ``base`` is left as it was."""
    import copy

    model = copy.deepcopy(base)
    with _isolated_torch(seed):
        train(model, FINETUNE_TASK, strength.lr, strength.steps, seed=seed + 2)
    return model


def save(model: Any, folder: Path, dtype: str) -> Path:
    """``model`` as a Hugging Face folder in ``dtype`` ("BF16" or "F32"); the model itself stays FP32."""
    import copy

    import torch

    out = copy.deepcopy(model).to({"BF16": torch.bfloat16, "F32": torch.float32}[dtype])
    out.save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_family(
    root: Path, strengths: Iterable[Strength] = STRENGTHS, dtypes: Iterable[str] = DTYPES, seed: int = 0
) -> Family:
    """The base and one fine-tune per strength, each in every dtype, under ``root/MEMBER-DTYPE``."""
    dtypes = tuple(dtypes)
    base = base_model(seed)
    members = {"base": base} | {s.name: finetuned(base, s, seed) for s in strengths}
    folders: dict[str, dict[str, Path]] = {}
    for name, model in members.items():
        folders[name] = {d: save(model, root / f"{name}-{d.lower()}", d) for d in dtypes}
    return Family(root, folders)
