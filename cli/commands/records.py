"""``modelarc rebuild-catalog`` and ``modelarc upgrade``: the catalog kept as records in the store, and rebuilt from
them (docs/FORMAT.md "Catalog records")."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from modelarc.cli.options import json_option, with_archive
from modelarc.cli.output import console, echo_warning, emit_json

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command(name="rebuild-catalog")
@json_option
@with_archive
def rebuild_catalog(archive: Archive, as_json: bool) -> None:
    """Rebuild a lost catalog from the store's records, into an empty catalog (SQLite or PostgreSQL).

    Every snapshot is re-checked (manifest hash, signature, objects present, every file rebuilt from its chunks)
    before it is recorded; what fails is reported and left out. The load cache's copies of withdrawn snapshots are
    removed, as `rm` removes them. Not recovered: API tokens, mirrors, scrub results, and audit details beyond one entry
    per record.
    """
    from modelarc.archive.rebuild import rebuild_catalog as rebuild

    report = rebuild(archive)
    if as_json:
        emit_json(report.to_json())
    else:
        for key, why in sorted(report.refused.items()):
            console.print(f"NOT REPLAYED  {key}: {why}")
        for note in report.notes:
            console.print(f"note: {note}")
        if report.cache_removed:
            shown = ", ".join(report.cache_removed)
            console.print(f"removed the decoded copies of withdrawn snapshots from the load cache: {shown}")
        for left in report.cache_left:
            echo_warning(f"left in the load cache: {left}")
        done = ", ".join(f"{n} {kind}" for kind, n in sorted(report.replayed.items())) or "nothing"
        console.print(f"{report.records} records read; replayed {done}; {len(report.refused)} not replayed")
    if not report.ok:
        sys.exit(5)


@click.command(name="upgrade")
@json_option
@with_archive
def upgrade(archive: Archive, as_json: bool) -> None:
    """Write the catalog records an archive made before them lacks (one time; running it again writes nothing)."""
    from modelarc.archive.upgrade import upgrade as run_upgrade

    report = run_upgrade(archive)
    if as_json:
        emit_json(report.to_json())
        return
    for item in report.not_recordable:
        console.print(f"NOT RECORDABLE  {item}")
    for item in report.contradicted:
        console.print(f"CONTRADICTED    {item}")
    for item in report.not_in_catalog:
        console.print(f"NOT IN CATALOG  {item}")
    written = ", ".join(f"{n} {kind}" for kind, n in sorted(report.written.items())) or "no records"
    console.print(f"{report.records_found} records were there; wrote {written}")


def register(group: click.Group) -> None:
    group.add_command(rebuild_catalog)
    group.add_command(upgrade)
