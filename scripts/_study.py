"""Shared pieces of the research scripts: pick archived causal LMs, load them, write tables and plots."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: the scripts run headless on CPU machines and GPU servers alike

from modelarc.archive.catalog.search import build_filters, search  # noqa: E402
from modelarc.archive.repository import Archive  # noqa: E402
from modelarc.archive.runtime.loading import resolve_device  # noqa: E402
from modelarc.archive.runtime.models import load_model, load_tokenizer  # noqa: E402
from modelarc.errors import ModelarcError  # noqa: E402
from modelarc.registry.snapshot_search import SnapshotSummary  # noqa: E402

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


# The catalog's --arch filter matches a substring of the architecture, case-insensitively: every name ending in one
# of CAUSAL_SUFFIXES contains "lm", so this one query returns every causal LM (and a few others, dropped below).
CAUSAL_ARCH_FILTER = "lm"
assert all(CAUSAL_ARCH_FILTER in s.lower() for s in CAUSAL_SUFFIXES)


def causal_lms(
    archive: Archive, cutoff_before: str | None = None, limit: int | None = None
) -> list[SnapshotSummary]:
    """Every archived, non-withdrawn causal LM (at most ``limit`` of them), ordered by training cutoff (unknown
    last). The search is narrowed to causal LMs in the query and has no limit of its own: a limit on snapshots of
    any kind (1000 it was) left out, silently, every causal LM past the first 1000 snapshots."""
    filters = build_filters(archive, cutoff_before=cutoff_before, arch=CAUSAL_ARCH_FILTER, limit=None)
    out = []
    for r in search(archive, filters, order="cutoff"):
        if limit is not None and len(out) >= limit:
            break
        if r.withdrawn:
            continue
        arch = archive.show(f"{r.model}@{r.snapshot}").architecture.get("architectures", [])
        if any(a.endswith(CAUSAL_SUFFIXES) for a in arch):
            out.append(r)
    return out


def loaded(
    archive: Archive, rows: list[SnapshotSummary], device: str, dtype: str | None
) -> Iterator[tuple[SnapshotSummary, Any, Any]]:
    """Each of ``rows`` loaded, in turn; one that cannot be (weights withheld or missing, a config whose model
    the files do not fill) is named on stderr and left out, so that one bad snapshot does not end a study of
    hundreds with a traceback and no tables."""
    target = resolve_device(device)
    for r in rows:
        ref = f"{r.model}@{r.snapshot}"
        try:
            model, tokenizer = load_model(archive, ref, device=target, dtype=dtype), load_tokenizer(archive, ref)
        except ModelarcError as exc:
            print(f"skipped {label(r)}: {exc}", file=sys.stderr)
            continue
        yield r, model, tokenizer


def label(r: SnapshotSummary) -> str:
    return f"{r.model}:{','.join(r.tags) or r.snapshot[7:19]}"


def write_tables(rows: list[dict[str, Any]], out: Path, stem: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    if not rows:
        sys.exit("no archived causal LMs matched")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append(
            "| " + " | ".join(str(row[c]).replace("|", "\\|").replace("\n", " ") for c in cols) + " |"
        )
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def plot_by_cutoff(labels: list[str], values: list[float], ylabel: str, title: str, path: Path) -> Path:
    """One line over snapshots in cutoff order; ``labels`` are the x tick labels."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(range(len(values)), values, marker="o")
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
