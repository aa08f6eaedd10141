"""A snapshot as a Hugging Face model card: README.md with YAML metadata, rendered by ``huggingface_hub``.

The metadata is what the Hub reads, built by archive/catalog/card.py (the Hub routes show the same card data):
``base_model``, ``base_model_relation``, ``datasets``, ``license``, ``tags`` and a ``modelarc`` block. What the
metadata cannot express (a relation the Hub has no name for, a free-text license) the body says.
"""

from __future__ import annotations

import re
from typing import Any

from modelarc import __version__
from modelarc.archive.catalog.card import CardSubject, card_metadata
from modelarc.archive.exports.subject import ExportSubject, load_subject
from modelarc.archive.repository import Archive


def export_model_card(archive: Archive, ref_text: str) -> str:
    """README.md text for ``ref_text``: YAML front matter between ``---`` lines, then Markdown."""
    from huggingface_hub import ModelCard, ModelCardData  # slow import; only when a card is asked for

    subject = load_subject(archive, ref_text)
    metadata, notes = hub_metadata(subject)
    body = _body(subject, notes)
    # the body goes in as a value, not as template text: a description with "{{" must not be run as Jinja
    template = "---\n{{ card_data }}\n---\n\n{{ body }}"
    card = ModelCard.from_template(ModelCardData(**metadata), template_str=template, body=body)
    return str(card).rstrip("\n") + "\n"


def hub_metadata(subject: ExportSubject) -> tuple[dict[str, Any], list[str]]:
    """The Hub metadata fields, and notes on what could not be expressed in them (archive/catalog/card.py)."""
    view = subject.view
    return card_metadata(
        CardSubject(
            snapshot=view.snapshot,
            architecture=view.architecture,
            license=view.license,
            parents=view.parents,
            datasets=tuple(d.name for d in view.datasets),
            cutoff=view.cutoff,
            cutoff_precision=subject.cutoff_precision,
            parameter_count=view.parameter_count,
        )
    )


def _cell(value: Any) -> str:
    """A Markdown table cell: no pipes or line breaks from free text."""
    return re.sub(r"\s+", " ", str(value)).replace("|", "\\|")


def _body(subject: ExportSubject, notes: list[str]) -> str:
    view = subject.view
    arch = view.architecture
    arch_text = str(arch.get("model_type") or "unknown")
    if arch.get("architectures"):
        arch_text += f" ({', '.join(map(str, arch['architectures']))})"
    shape = ", ".join(
        f"{k} {arch[k]}" for k in ("num_layers", "hidden_size", "vocab_size", "context_length") if k in arch
    )
    cutoff = f"{view.cutoff} ({subject.cutoff_precision} precision)" if view.cutoff else "unknown"
    dtypes = ", ".join(f"{k} {v:,}" for k, v in sorted(view.dtypes.items()))
    if len(view.tensors_by_format) > 1:  # each format's apart: their dtype names overlap (F32 in both)
        dtypes = "; ".join(
            f"{kind} {t.parameters:,}: " + ", ".join(f"{k} {v:,}" for k, v in t.dtypes.items())
            for kind, t in view.tensors_by_format.items()
        )
    lines = [f"# {view.model}", ""]
    if view.description:
        lines += [view.description, ""]
    lines += [
        f"Archived with modelarc {__version__} as snapshot `{view.snapshot}`; the snapshot id is the sha256 of its "
        "manifest, which names every file and tensor by hash.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {_cell(arch_text)} |",
    ]
    if shape:
        lines.append(f"| shape | {shape} |")
    lines += [
        f"| parameters | {view.parameter_count:,} ({dtypes}) |",
        f"| training cutoff | {cutoff} |",
        f"| release date | {view.release_date or 'unknown'} |",
        f"| license | {_cell(view.license or 'unknown')} |",
    ]
    if view.source_url:
        lines.append(f"| source | {_cell(view.source_url)} |")
    if view.withdrawn:
        lines += ["", f"**Withdrawn** on {view.withdrawn.at}: {view.withdrawn.reason}"]
    lines += ["", "## Provenance", ""]
    if view.parents:
        lines += [f"- {p.relation} of `{p.model}` (snapshot `{p.snapshot}`)" for p in view.parents]
    else:
        lines.append("No parent model declared.")
    if notes:
        lines += [""] + [f"Note: {n}" for n in notes]
    if view.datasets:
        lines += [
            "",
            "## Training data",
            "",
            "| role | dataset | version | license | size (bytes) | tokens | time range | sha256 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for d in view.datasets:
            span = d.time_range
            when = f"{span.start or '?'} to {span.end or '?'}" if span.start or span.end else "-"
            digest = subject.dataset_hash(d)
            lines.append(
                f"| {d.role} | {_cell(d.name)} | {_cell(d.version or '-')} | {_cell(d.license or '-')} "
                f"| {d.size_bytes if d.size_bytes is not None else '-'} "
                f"| {d.tokens if d.tokens is not None else '-'} | {when} | {f'`{digest}`' if digest else '-'} |"
            )
    lines += ["", "## Files", "", "| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {_cell(f.path)} | {f.size} | `{f.sha256}` |" for f in view.files]
    return "\n".join(lines) + "\n"
