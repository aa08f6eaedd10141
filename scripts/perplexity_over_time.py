"""Perplexity of one text across archived causal LMs, ordered by training cutoff: table (CSV + Markdown) and plot.

    python scripts/perplexity_over_time.py --text-file news-2024.txt [--cutoff-before 2025] [--device auto] [--out results/]

Runs unchanged on CPU or GPU (``--device auto``). Perplexity is exp(mean token cross-entropy) over the text,
computed in windows of the model's context length.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from _study import causal_lms, label, loaded, plot_by_cutoff, write_tables

from modelarc.archive.repository import Archive


def perplexity(model, tokenizer, text: str, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    ids = tokenizer(text, return_tensors="pt").input_ids.to(device)
    window = int(
        getattr(model.config, "max_position_embeddings", 0) or getattr(model.config, "n_positions", 1024)
    )
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.shape[1] - 1, window):
            chunk = ids[:, start : start + window + 1]
            if chunk.shape[1] < 2:
                break
            logits = model(chunk[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0], chunk[0, 1:], reduction="sum")
            total += float(loss)
            count += chunk.shape[1] - 1
    return math.exp(total / count) if count else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text-file", type=Path, required=True)
    p.add_argument("--cutoff-before")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype")
    p.add_argument("--home")
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args()
    text = args.text_file.read_text()
    with Archive.open(args.home) as archive:
        rows = []
        for r, model, tok in loaded(
            archive, causal_lms(archive, args.cutoff_before), args.device, args.dtype
        ):
            device = next(model.parameters()).device
            rows.append(
                {
                    "model": label(r),
                    "snapshot": r.snapshot,
                    "cutoff": r.cutoff or "unknown",
                    "perplexity": round(perplexity(model, tok, text, device), 4),
                }
            )
    csv_path, md_path = write_tables(rows, args.out, "perplexity_over_time")
    plot = plot_by_cutoff(
        [f"{r['cutoff']}\n{r['model']}" for r in rows],
        [r["perplexity"] for r in rows],
        "perplexity",
        f"Perplexity of {args.text_file.name} by training cutoff",
        args.out / "perplexity_over_time.png",
    )
    print(md_path.read_text(), end="")
    print(f"wrote {csv_path}, {md_path}, {plot}")


if __name__ == "__main__":
    main()
