"""Ask every archived causal LM the same dated questions; table ordered by training cutoff, plus a plot.

    python scripts/cutoff_probe.py [--questions questions.txt] [--cutoff-before 2023-01] [--device auto] [--out results/]

Each question is scored two ways: the generated answer (greedy, so the run is reproducible) and the mean
log-probability the model gives the question itself, plotted against cutoff. Runs unchanged on CPU or GPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _study import causal_lms, label, loaded, plot_by_cutoff, write_tables

from modelarc.archive.repository import Archive

DEFAULT_QUESTIONS = [
    "What year is it?",
    "Who won the most recent football world cup?",
    "What is the latest version of Python?",
    "What happened in the news this week?",
]


def answer(model, tok, question: str, max_new_tokens: int) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    device = next(model.parameters()).device
    ids = tok(question, return_tensors="pt").input_ids.to(device)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
        logits = model(ids).logits.float()
    logprob = (
        torch.log_softmax(logits[0, :-1], dim=-1).gather(1, ids[0, 1:, None]).mean()
        if ids.shape[1] > 1
        else torch.tensor(0.0)
    )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip(), float(logprob)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=Path, help="One question per line (default: a built-in dated set).")
    p.add_argument("--cutoff-before")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype")
    p.add_argument("--home")
    p.add_argument("--out", type=Path, default=Path("results"))
    args = p.parse_args()
    questions = (
        [q for q in args.questions.read_text().splitlines() if q.strip()]
        if args.questions
        else DEFAULT_QUESTIONS
    )
    rows, scores = [], {}
    with Archive.open(args.home) as archive:
        for r, model, tok in loaded(
            archive, causal_lms(archive, args.cutoff_before), args.device, args.dtype
        ):
            per_model = []
            for q in questions:
                text, logprob = answer(model, tok, q, args.max_new_tokens)
                rows.append(
                    {
                        "cutoff": r.cutoff or "unknown",
                        "model": label(r),
                        "question": q,
                        "answer": text,
                        "mean_logprob": round(logprob, 4),
                    }
                )
                per_model.append(logprob)
            scores[f"{r.cutoff or 'unknown'}\n{label(r)}"] = sum(per_model) / len(per_model)
    csv_path, md_path = write_tables(rows, args.out, "cutoff_probe")
    plot = plot_by_cutoff(
        list(scores),
        list(scores.values()),
        "mean log-probability of the questions",
        "Dated questions by training cutoff",
        args.out / "cutoff_probe.png",
    )
    print(md_path.read_text(), end="")
    print(f"wrote {csv_path}, {md_path}, {plot}")


if __name__ == "__main__":
    main()
