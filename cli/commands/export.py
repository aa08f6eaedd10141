"""``modelarc export``: a snapshot's provenance as a CycloneDX ML-BOM or a Hugging Face model card."""

from __future__ import annotations

from pathlib import Path

import click

from modelarc.archive.repository import Archive, write_atomic
from modelarc.cli.main import with_archive
from modelarc.cli.output import console
from modelarc.errors import DestinationError


@click.command(name="export")
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["cyclonedx", "model-card"]), required=True)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write here instead of standard output."
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@with_archive
def export(archive: Archive, ref: str, fmt: str, output: Path | None, force: bool) -> None:
    """Export REF's provenance: CycloneDX 1.6 ML-BOM (validated) or a Hugging Face model card README."""
    from modelarc.archive.export import export_cyclonedx, export_model_card  # heavy imports, only when used

    text = export_cyclonedx(archive, ref) if fmt == "cyclonedx" else export_model_card(archive, ref)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    if output.exists() and not force:
        raise DestinationError(f"{output} already exists; use --force to overwrite")
    write_atomic(output, text.encode("utf-8"))
    console.print(f"wrote {output}")


def register(group: click.Group) -> None:
    group.add_command(export)
