"""The same prompts across archived causal LMs, side by side (Markdown + CSV), greedy so the table is reproducible.

python scripts/compare_generations.py --prompt "The news today" --prompt "In 2023," [--device auto] [--out results/]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _study import causal_lms, label, loaded, write_tables

from modelarc.archive.repository import Archive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompt", action="append", required=True)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--cutoff-before")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype")
    p.add_argument("--home")
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args()
    table: dict[str, dict[str, str]] = {q: {"prompt": q} for q in args.prompt}
    with Archive.open(args.home) as archive:
        for r, model, tok in loaded(
            archive, causal_lms(archive, args.cutoff_before), args.device, args.dtype
        ):
            device = next(model.parameters()).device
            pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            for q in args.prompt:
                ids = tok(q, return_tensors="pt").input_ids.to(device)
                with torch.no_grad():
                    out = model.generate(
                        ids, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=pad
                    )
                table[q][f"{label(r)} ({r.cutoff or '?'})"] = tok.decode(
                    out[0, ids.shape[1] :], skip_special_tokens=True
                ).strip()
    csv_path, md_path = write_tables(list(table.values()), args.out, "compare_generations")
    print(md_path.read_text(), end="")
    print(f"wrote {csv_path}, {md_path}")


if __name__ == "__main__":
    main()
