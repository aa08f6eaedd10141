"""``modelarc data``: training-data manifests attached to snapshots, and the datasets they name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelarc.archive.catalog.units import human_bytes, human_count
from modelarc.cli.options import ROW_LIMIT, json_option, no_blank_value, with_archive
from modelarc.cli.output import console, emit_json, err_console, line, say_left_records
from modelarc.errors import NotFoundError

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.group(name="data")
def data() -> None:
    """Training-data manifests (docs/PROVENANCE.md) and datasets."""


@data.command(name="attach")
@click.argument("ref")
@click.argument("manifest", type=click.Path(path_type=Path))
@json_option
@with_archive
def attach(archive: Archive, ref: str, manifest: Path, as_json: bool) -> None:
    """Attach the training-data MANIFEST (YAML or JSON) to REF; attachments are append-only."""
    from modelarc.archive.provenance.data import (  # jsonschema is slow to import
        attach_data,
        load_data_manifest,
    )

    result = attach_data(archive, ref, load_data_manifest(manifest))
    if as_json:
        emit_json(dataclasses.asdict(result))
        return
    console.print(f"attached {len(result.datasets)} datasets to {result.ref} ({result.snapshot[:19]})")
    for d in result.datasets:
        console.print(
            f"  {d['role']:<11} {d['name']} {d['version'] or ''}{'' if d['new'] else '  (already known)'}"
        )
    say_left_records(
        result.record_completed,
        result.records_contradicting,
        change="attachment",
        command="`data attach`",
        of=f"{result.ref}",
    )


@data.command(name="ls")
@click.option("--limit", type=ROW_LIMIT, default=100, show_default=True, help="Rows at most (one page).")
@click.option("--cursor", callback=no_blank_value, help="Start after the previous page: the cursor its last line on stderr gave.")
@json_option
@with_archive
def data_ls(archive: Archive, as_json: bool, limit: int, cursor: str | None) -> None:
    """Datasets known to the archive, by name, and how many snapshots used each; a page at a time.

    stdout holds the page alone (text or --json, the same rows as GET /v1/datasets); when more datasets follow,
    stderr ends with the command for the next page.
    """
    from modelarc.archive.catalog.views import list_datasets

    page = list_datasets(archive, limit=limit, cursor=cursor)
    if as_json:
        emit_json([r.to_json() for r in page.rows])
    elif not page.rows:
        console.print("no datasets recorded")
    else:
        for r in page.rows:
            span = r.time_range
            console.print(
                f"{r.name:<24} {r.version or '-':<10} {human_bytes(r.size_bytes):>9} "
                f"{human_count(r.tokens):>7} tokens  {span.start or '?'}..{span.end or '?'}  "
                f"used by {r.snapshots} snapshots"
            )
    if page.next_cursor is not None:
        options = ("" if limit == 100 else f" --limit {limit}") + (" --json" if as_json else "")
        err_console.print(
            f"more datasets: modelarc data ls{options} --cursor {page.next_cursor}", soft_wrap=True
        )


@data.command(name="show")
@click.argument("name")
@json_option
@with_archive
def data_show(archive: Archive, name: str, as_json: bool) -> None:
    """One dataset (all versions) and the snapshots trained or evaluated on it."""
    from modelarc.archive.catalog.views import dataset_versions

    versions = dataset_versions(archive, name)
    if not versions:
        raise NotFoundError(f"no dataset named {name!r} (see `modelarc data ls`)")
    if as_json:
        emit_json([v.to_json() for v in versions])
        return
    for v in versions:
        # not "sha256": without a stated one it is the hash of the description (docs/PROVENANCE.md, "content hash")
        console.print(line((v.name, "bold"), f" {v.version or ''}  content hash {v.content_hash}"))
        for key in ("source", "license", "size_bytes", "records", "tokens", "notes"):
            if (value := getattr(v, key)) is not None:
                console.print(f"  {key}: {value}")
        console.print(f"  time range: {v.time_range.start or '?'} .. {v.time_range.end or '?'}")
        for u in v.used_by:
            console.print(f"  {u.role:<11} {u.model}@{u.snapshot[:19]}")
        # the same data hash stated under other labels: each snapshot is linked to what its own manifest said
        for o in v.described_otherwise:
            console.print(
                f"  also described here as {o.name} {o.version or ''} (license {o.license or 'unknown'}), "
                f"used by {o.snapshots} snapshot{'' if o.snapshots == 1 else 's'}",
                soft_wrap=True,
            )


def register(group: click.Group) -> None:
    group.add_command(data)
