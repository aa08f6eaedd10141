"""``modelarc timeline``: archived snapshots ordered by training cutoff, with the same filters as ``ls``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from modelarc.archive.catalog.units import human_count
from modelarc.cli.options import json_option, search_options, with_archive
from modelarc.cli.output import console, emit_json, line

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command(name="timeline")
@search_options
@json_option
@with_archive
def timeline(archive: Archive, as_json: bool, **options: object) -> None:
    """Snapshots ordered by training cutoff (unknown cutoffs last), then release date."""
    from modelarc.archive.catalog.search import build_filters, search

    rows = search(archive, build_filters(archive, **options), order="cutoff")  # type: ignore[arg-type]
    if as_json:
        emit_json([dataclasses.asdict(r) for r in rows])
        return
    if not rows:  # as `ls` says it: an empty answer is told apart from a command that printed nothing
        console.print(
            "no snapshots match"
            if any(v for k, v in options.items() if k != "limit")
            else "the archive is empty"
        )
        return
    for r in rows:
        mark = ("  WITHDRAWN", "red") if r.withdrawn else ""
        tags = ",".join(r.tags) or "-"
        console.print(
            line(
                f"{r.cutoff or 'unknown':<10} {r.model}:{tags}  {r.snapshot[:19]}  {r.model_type or '-'}  "
                f"{human_count(r.parameters)} params  released {r.release_date or '-'}",
                mark,
            )
        )


def register(group: click.Group) -> None:
    group.add_command(timeline)
