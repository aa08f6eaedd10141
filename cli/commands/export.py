"""``modelarc export``: a snapshot's provenance as a CycloneDX ML-BOM or a Hugging Face model card."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelarc.cli.options import OutputFilePath, json_option, with_archive
from modelarc.cli.output import console, emit_json
from modelarc.errors import DestinationError, UsageError

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

FORMATS = ("cyclonedx", "model-card")


@click.command(name="export")
@click.argument("ref")
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    required=True,
    help="cyclonedx (CycloneDX 1.6 ML-BOM, JSON) or model-card (Hugging Face README.md).",
)
@click.option(
    "-o", "--output", type=OutputFilePath(), help="Write here instead of standard output."
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@json_option
@with_archive
def export(archive: Archive, ref: str, fmt: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Export REF's provenance: a CycloneDX 1.6 ML-BOM (validated) or a Hugging Face model card README.

    With --json, prints {format, path, bytes, sha256} and, without -o, the document itself under "document".
    """
    # checked here rather than by click.Choice so a bad value is one `error:` line like every other failure
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if output is not None and str(output) == "-":  # the usual spelling of standard output
        output = None
    from modelarc.archive.output_file import OutputFile, check_output_place

    if output is not None:
        from modelarc.archive.own_state import refuse_state_place, state_places

        refuse_state_place(output, state_places(archive.settings), "the export")
        check_output_place(output, "-o")
        if os.path.exists(output) and not force:
            raise DestinationError(f"{output} already exists; use --force to overwrite")

    target = OutputFile(output, option="-o") if output is not None else None  # refused now, not after the work
    try:
        # cyclonedx and huggingface_hub are slow to import: only when an export is asked for
        from modelarc.archive.exports.dispatch import EXPORTERS

        text = EXPORTERS[fmt](archive, ref)
        data = text.encode("utf-8")
        if target is not None:
            target.write(data)
    finally:
        if target is not None:
            target.discard()
    if as_json:
        summary = {
            "format": fmt,
            "path": str(output) if output else None,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if output is None:
            summary["document"] = json.loads(text) if fmt == "cyclonedx" else text
        emit_json(summary)
    elif output is None:
        click.echo(text, nl=False)
    else:
        console.print(f"wrote {output} ({len(data)} bytes, {fmt})")


def register(group: click.Group) -> None:
    group.add_command(export)
