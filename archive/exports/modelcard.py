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


# C0 and C1 controls, and the format characters that reorder or hide text (bidi overrides and isolates, zero
# width): a pusher's text may not make the card read otherwise than its bytes say
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
# what Markdown reads as markup inside a line: a backslash first (so an escape given cannot undo ours), then code,
# links and images, table pipes; HTML is escaped as entities
_INLINE = str.maketrans(
    {"\\": "\\\\", "`": "\\`", "[": "\\[", "]": "\\]", "|": "\\|", "&": "&amp;", "<": "&lt;", ">": "&gt;"}
)
# what opens a block at the start of a line (a heading, a quote, a list, a thematic break or setext underline, a
# fence, a table row): escaped there, so a line of the pusher's text stays a line of text
_BLOCK_START = re.compile(r"^(?:([#>+*=~_-])|(\d+)([.)]))")


def _plain(value: Any) -> str:
    """Free text with no control characters, its line breaks as ``\\n``."""
    text = re.sub(r"\r\n?|[\u2028\u2029]", "\n", str(value))
    return _CONTROLS.sub("", text.replace("\t", " "))


def _inline(value: Any) -> str:
    """Free text as Markdown that renders as that text: no HTML, links, code or pipes of its own."""
    return _plain(value).translate(_INLINE)


def _cell(value: Any) -> str:
    """A Markdown table cell: one line of ``_inline`` text."""
    return re.sub(r"\s+", " ", _inline(value)).strip()


def _escaped_start(m: re.Match[str]) -> str:
    """``## x`` as ``\\## x``, ``1. x`` as ``1\\. x``: the line's first character no longer opens a block."""
    return f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}"


def _statement(text: str, who: str) -> list[str]:
    """The pusher's (or a remote's) description as a quoted block labelled as theirs: each line escaped so that it
    opens no heading, list, fence, table or HTML of the card's own (a description saying ``## Provenance`` must
    not read as the card's section)."""
    lines = [f"Description, as stated by {_inline(who)} (not verified, not signed):", ""]
    for line in _plain(text).split("\n"):
        # indentation dropped: four spaces would make a code block of the line; a list number's dot is escaped
        line = _BLOCK_START.sub(_escaped_start, _inline(line).strip())
        lines.append(f"> {line}" if line else ">")
    return lines


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
    stated = view.stated_by
    who = stated.describe() if stated else "its pusher"
    lines = [f"# {view.model}", ""]
    if view.description:
        lines += [*_statement(view.description, who), ""]
    lines += [
        f"Archived with modelarc {__version__} as snapshot `{view.snapshot}`; the snapshot id is the sha256 of its "
        "manifest, which names every file and tensor by hash.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {_cell(arch_text)} |",
    ]
    if shape:
        lines.append(f"| shape | {_cell(shape)} |")
    lines += [
        f"| parameters | {view.parameter_count:,} ({dtypes}) |",
        f"| training cutoff | {cutoff} |",
        f"| release date | {view.release_date or 'unknown'} |",
        f"| license | {_cell(view.license or 'unknown')} |",
    ]
    if view.source_url:
        lines.append(f"| source | {_cell(view.source_url)} |")
    if view.withdrawn:
        lines += ["", f"**Withdrawn** on {view.withdrawn.at}: {_cell(view.withdrawn.reason)}"]
    lines += [
        "",
        "## Provenance",
        "",
        f"Stated by {_inline(who)}: the cutoff, release date, license, source, description, lineage and training "
        "data are that word, not verified; the signature signs the files only.",
        "",
    ]
    if view.parents:
        lines += [f"- {p.relation} of `{p.model}` (snapshot `{p.snapshot}`)" for p in view.parents]
    else:
        lines.append("No parent model declared.")
    if notes:
        lines += [""] + [f"Note: {_cell(n)}" for n in notes]
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
