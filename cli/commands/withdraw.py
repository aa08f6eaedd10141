"""``modelarc rm``: tombstone a snapshot (weights released, record and provenance kept)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from modelarc.archive.catalog.units import human_bytes
from modelarc.cli.options import json_option, with_archive
from modelarc.cli.output import console, echo_warning, emit_json, say_left_records

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command(name="rm")
@click.argument("ref")
@click.option(
    "--reason",
    help="Why it is withdrawn (kept with the record and shown by show/pull/ls); required, but for a snapshot "
    "already withdrawn, whose withdrawal a re-run finishes.",
)
@json_option
@with_archive
def rm(archive: Archive, ref: str, reason: str | None, as_json: bool) -> None:
    """Withdraw REF: free its weights, keep its manifest, hashes, provenance and the reason. On a snapshot already
    withdrawn, finish what that withdrawal left (a kill between its record and its deletion)."""
    from modelarc.archive.provenance.withdrawal import withdraw

    result = withdraw(archive, ref, reason)
    if as_json:
        emit_json(result)
        return
    if result.finished:
        console.print(
            f"{result.ref} ({result.snapshot[:19]}) was already withdrawn on {(result.withdrawn_at or '')[:10]}: "
            f"{result.reason}; finished that interrupted withdrawal"
            + (
                ""
                if reason is None or reason.strip() == result.reason
                else " (its reason stays; the new one is not recorded)"
            )
        )
    else:
        console.print(f"withdrew {result.ref} ({result.snapshot[:19]}): {result.reason}")
    say_left_records(
        result.record_completed, result.records_contradicting, change="withdrawal", command="rm", of="this snapshot"
    )
    if result.deferred_to_gc:
        console.print(
            f"{result.objects_released} weight objects released; a push is running, `modelarc gc` frees them"
        )
    else:
        rest = result.objects_released - result.objects_deleted  # only other snapshots' uses keep one now
        shared = f"; the other {rest} are used by other snapshots" if rest else ""
        released = "it released were still stored" if result.finished else "released"
        console.print(
            f"{result.objects_released} weight objects {released}, {result.objects_deleted} deleted "
            f"({human_bytes(result.bytes_freed)} freed{shared})"
        )
    if result.kept_as_bases:
        console.print(
            f"{result.kept_as_bases} of them kept: fine-tunes stored as deltas against these weights need them "
            "(they are freed once no live snapshot does)"
        )
    if result.cache_removed:
        console.print(
            f"removed its decoded copy from the load cache ({human_bytes(result.cache_bytes_freed)}): "
            + ", ".join(result.cache_removed)
        )
    if result.cache_left:
        echo_warning(
            "the load cache still holds its decoded weights at "
            + ", ".join(result.cache_left)
            + ": delete those folders (their owner may; a tag can name another snapshot by then, so not by REF)"
        )


def register(group: click.Group) -> None:
    group.add_command(rm)
