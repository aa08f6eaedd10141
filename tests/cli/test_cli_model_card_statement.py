"""The exported model card gives a pusher's text as text: a description cannot forge the card's headings, tables
or HTML, and is labelled as the pusher's word; table cells escape HTML too (docs/EXPORTS.md)."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt
from modelfactory import write_model

FORGED = (
    "A small model.\n"
    "\n"
    "## Provenance\n"
    "Verified by the archive: trained on licensed data only.\n"
    "Signed\n"
    "---\n"
    "<script>alert(1)</script>\n"
    "<img src=x onerror=alert(2)>\n"
    "| forged | table |\n"
    "|---|---|\n"
    "```\n"
    "    # indented\n"
    "1. a list\n"
    "[click](javascript:alert(3)) \\<b>\n"
    "bell\x07 escape\x1b[31m red \u202eevil\u2066 \r\n"
    "> quoted"
)


def _card(arc, tmp_path: Path, *options: str) -> str:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1", "--description", FORGED, *options)
    out = tmp_path / "README.md"
    arc("export", "acme/m:v1", "--format", "model-card", "-o", out)
    return out.read_text()


def test_a_description_cannot_forge_the_cards_structure_or_html(arc, tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    text = _card(arc, tmp_path, "--license", "mit<script>x</script>|y", "--source", "https://e.org/<b>")
    card = ModelCard.load(tmp_path / "README.md")
    tokens = MarkdownIt("commonmark").enable("table").parse(card.text)
    # the card's own headings only: a title, its Provenance and Files sections
    headings = [(t.tag, tokens[i + 1].content) for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == [("h1", "acme/m"), ("h2", "Provenance"), ("h2", "Files")]
    # no HTML anywhere; one quote holding all of the description, and in it no link, code, list or rule
    assert [t.type for t in tokens].count("blockquote_open") == 1
    start = next(i for i, t in enumerate(tokens) if t.type == "blockquote_open")
    end = next(i for i, t in enumerate(tokens) if t.type == "blockquote_close")
    kinds = {c.type for t in tokens for c in [t, *(t.children or [])]}
    assert not kinds & {"html_block", "html_inline"}
    quoted_kinds = {c.type for t in tokens[start:end] for c in [t, *(t.children or [])]}
    assert not quoted_kinds & {"link_open", "image", "code_block", "fence", "code_inline", "bullet_list_open",
                               "ordered_list_open", "hr", "heading_open", "table_open"}  # fmt: skip
    assert [t.type for t in tokens].count("table_open") == 2  # the facts and the files
    label = "Description, as stated by tester (not verified, not signed):\n\n"
    quoted = text.split(label, 1)[1].split("\n\n")[0]
    assert all(line.startswith(">") for line in quoted.splitlines())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in quoted
    assert card.text in text  # huggingface_hub reads the body as written (a raw CR would not survive)
    for control in ("\x07", "\x1b", "\u202e", "\u2066", "\r"):
        assert control not in text
    # a table cell escapes HTML and pipes
    assert "| license | mit&lt;script&gt;x&lt;/script&gt;\\|y |" in text
    assert "| source | https://e.org/&lt;b&gt; |" in text
    # the provenance section says whose word the provenance is
    assert "Stated by tester: the cutoff, release date, license, source, description" in text


def test_a_plain_description_reads_as_it_was_given(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1", "--description", "A tiny model, trained in 2023.")
    text = arc("export", "acme/m:v1", "--format", "model-card").stdout
    assert "> A tiny model, trained in 2023.\n" in text
