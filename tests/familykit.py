"""A genuine model family the tests make themselves: a small real model trained for a few AdamW steps (the
"base"), then fine-tuned twice more, saved by the safetensors library in BF16 or FP32 with a config.json."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from modelfactory import TINY_CONFIG


@cache
def trained() -> tuple[dict[str, np.ndarray], ...]:
    """(base, fine-tune 1, fine-tune 2) FP32 weights; fine-tune 2 continues fine-tune 1. Deterministic."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Embedding(256, 128), torch.nn.Linear(128, 512), torch.nn.GELU(), torch.nn.Linear(512, 128)
    )

    def weights() -> dict[str, np.ndarray]:
        return {f"model.{k}": v.detach().clone().numpy() for k, v in model.state_dict().items()}

    def train(steps: int, lr: float) -> None:
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        for _ in range(steps):
            tokens = torch.randint(0, 256, (64,))
            loss = (model(tokens) - torch.sin(tokens.float()[:, None] / 40)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    train(20, 1e-3)  # the "pretrained" base
    base = weights()
    train(6, 5e-5)
    first = weights()
    train(6, 5e-5)
    return base, first, weights()


def write(folder: Path, tensors: dict[str, np.ndarray], dtype: str) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cast = torch.bfloat16 if dtype == "BF16" else torch.float32
    save_file(
        {k: torch.from_numpy(v).to(cast).contiguous() for k, v in tensors.items()}, folder / "model.safetensors"
    )
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    return folder


def family(where: Path, dtype: str) -> tuple[Path, Path, Path]:
    """Folders of the base and its two fine-tunes under ``where``."""
    base, first, second = trained()
    return (
        write(where / f"base-{dtype}", base, dtype),
        write(where / f"ft1-{dtype}", first, dtype),
        write(where / f"ft2-{dtype}", second, dtype),
    )
