"""``modelarc mirror``, ``scrub`` and ``repair``: more copies, checked often, and mended from each other."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from modelarc.archive.catalog.units import human_bytes
from modelarc.cli.options import FiniteFloatRange, json_option, not_empty, with_archive
from modelarc.cli.output import byte_progress, console, emit_json
from modelarc.errors import UnsupportedObjectError
from modelarc.registry.bounds import CATALOG_INT_MAX

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive
    from modelarc.archive.scrub import ScrubReport


def _not_empty_name(value: str | None) -> str | None:
    """``""`` is not "every mirror": an unset variable in ``modelarc mirror sync "$NAME"`` synced them all."""
    if value == "":
        raise click.BadParameter("is empty; name a mirror (`mirror sync` without NAME syncs every one)")
    return value


def _vouched_mirror(value: str | None) -> str | None:
    if value == "":
        raise click.BadParameter("is empty; name the one mirror whose catalog records you vouch for")
    return value


@click.group()
def mirror() -> None:
    """Other stores (a folder, s3://BUCKET/PREFIX, or a served archive remote:NAME) that keep a verified copy of
    every object."""


@mirror.command(name="add")
@click.argument("name")
@click.argument("target", callback=not_empty)
@json_option
@with_archive
def mirror_add(archive: Archive, name: str, target: str, as_json: bool) -> None:
    """Add mirror NAME at TARGET: a folder, s3://BUCKET/PREFIX, or remote:REMOTE (a `modelarc serve` archive added
    with `modelarc remote add`, with a push token); it must answer now. Then `mirror sync`."""
    from modelarc.archive.mirrors import add_mirror

    record = add_mirror(archive, name, target)
    if as_json:
        emit_json({"name": record.name, "target": record.target})
    else:
        console.print(f"mirror {record.name} -> {record.target}; run `modelarc mirror sync {record.name}`")


@mirror.command(name="rm")
@click.argument("name")
@json_option
@with_archive
def mirror_rm(archive: Archive, name: str, as_json: bool) -> None:
    """Forget mirror NAME (its copies stay where they are)."""
    from modelarc.archive.mirrors import remove_mirror

    record = remove_mirror(archive, name)
    if as_json:
        emit_json({"name": record.name, "target": record.target, "removed": True})
        return
    console.print(f"removed mirror {record.name} ({record.target}); its copies were left in place")


@mirror.command(name="ls")
@json_option
@with_archive
def mirror_ls(archive: Archive, as_json: bool) -> None:
    """Each mirror: objects behind (by listing it now), last sync, last verified by `scrub --mirrors`."""
    from modelarc.archive.mirrors import states

    found = states(archive)
    if as_json:
        emit_json([m.to_json() for m in found])
        return
    if not found:
        console.print("no mirrors (modelarc mirror add NAME TARGET)")
    for m in found:
        behind = f"error: {m.error}" if m.error else f"{m.objects_behind} objects behind"
        console.print(
            f"{m.name:<16} {m.target}  {behind}; synced {m.synced_at or 'never'}, verified {m.verified_at or 'never'}"
        )


@mirror.command(name="sync")
@click.argument("name", required=False, callback=lambda ctx, param, value: _not_empty_name(value))
@click.option(
    "--read-data",
    is_flag=True,
    help="Also re-read every copy a folder or bucket mirror has, and replace each damaged one (what "
    "`scrub --mirrors` finds there) with a verified copy; the damaged one is kept in the mirror's quarantine/.",
)
@click.option("--progress/--no-progress", "show_progress", default=True, help="Progress bar on a terminal.")
@json_option
@with_archive
def mirror_sync(archive: Archive, name: str | None, read_data: bool, show_progress: bool, as_json: bool) -> None:
    """Copy every object NAME (default: every mirror) lacks, verified; run again to resume."""
    from modelarc.archive.mirrors import mirrors, sync

    reports = []
    for record in mirrors(archive, name):
        with byte_progress(f"mirror {record.name}", show_progress and not as_json) as (advance, set_total):
            reports.append(sync(archive, record, progress=advance, on_total=set_total, read_data=read_data))
    if as_json:
        emit_json([r.to_json() for r in reports])
    else:
        for r in reports:
            console.print(
                f"{r.mirror}: {r.objects_copied} objects copied ({human_bytes(r.bytes_copied)}), "
                f"{r.already_there} already there"
                + (f", {r.temp_removed} temp files of killed syncs removed" if r.temp_removed else "")
            )
            for oid, aside in sorted(r.replaced.items()):
                console.print(f"REPLACED  {r.mirror}: {oid}" + (f" (damaged copy kept at {aside})" if aside else ""))
            if r.snapshots_copied:
                console.print(f"{r.mirror}: {r.snapshots_copied} snapshots committed there")
            for oid, why in sorted(r.not_copied.items()):
                console.print(f"NOT COPIED  {oid}: {why} (modelarc repair)")
            for label, why in sorted(r.snapshots_refused.items()):
                console.print(f"REFUSED  {label}: {why}")
            for label in r.snapshots_withdrawn:
                console.print(f"withdrawn, not mirrored: {label}")
            for change in r.policies_changed:
                console.print(
                    f"POLICY  {r.mirror}: {change['target']} {_policy_text(change['before'])} -> "
                    f"{_policy_text(change['after'])}"
                )
            for model, why in sorted(r.policies_refused.items()):
                console.print(f"POLICY NOT APPLIED  {r.mirror}: {model}: {why}")
    _echo_unreachable(r.unreachable for r in reports)
    if not all(r.ok for r in reports):
        refused = sum(len(r.snapshots_refused) for r in reports)
        damaged = sum(len(r.not_copied) for r in reports)
        unreachable = sum(1 for r in reports if r.unreachable)
        policies = sum(len(r.policies_refused) for r in reports)
        click.echo(
            f"error: mirror sync incomplete: {damaged} objects not copied, {refused} snapshots refused, "
            f"{unreachable} mirrors unreachable"
            + (
                f", {policies} models' policies not applied there (the mirror serves them otherwise than this archive)"
                if policies
                else ""
            )
            + " (see above)",
            err=True,
        )
        sys.exit(5)


def _policy_text(doc: dict[str, object]) -> str:
    """A policy as `mirror sync` reports its change: ``gated until 2031-01-01 (+ notes/*)``; a snapshot that follows
    its model is ``inherit``."""
    if doc.get("snapshot") and doc.get("source") != "snapshot":
        return "inherit"
    level = str(doc.get("level") if doc.get("lapsed") else doc.get("declared") or doc.get("level"))
    until = f" until {doc['until']}" if doc.get("until") and not doc.get("lapsed") else ""
    files = doc.get("files")
    named = (
        f" (+ {', '.join(map(str, files))})"
        if isinstance(files, list) and files and level != "public"
        else ""
    )
    return f"{level}{until}{named}"


def _mending(archive: Archive, report: ScrubReport) -> str:
    """What mends the damage a scrub found: `repair` the primary's, `mirror sync --read-data` a store mirror's
    (repair only ever writes the primary); a served mirror keeps its own copies and mends them itself."""
    from modelarc.archive.mirrors import is_remote_target, mirrors

    served = {m.name for m in mirrors(archive) if is_remote_target(m.target)}
    damaged = {name for name, problems in report.mirrors.items() if any(problems.values())}
    steps = ["run `modelarc repair`"] if report.corrupt or report.missing else []
    for name in sorted(damaged - served):
        steps.append(f"run `modelarc mirror sync {name} --read-data`")
    for name in sorted(damaged & served):
        steps.append(f"run `modelarc repair` on the archive mirror {name} serves")
    return "; ".join(steps)


def _echo_unreachable(whys: Iterable[str | None]) -> None:
    """One error line per mirror that could not be read (it names the mirror and its target), in text and --json
    alike: a missing mirror is a failure, never something to find in a report by chance."""
    for why in whys:
        if why:
            click.echo(f"error: {why}", err=True)


@click.command()
# bounded like every size the catalog keeps (64-bit): no store holds more bytes than that
@click.option(
    "--max-bytes", type=click.IntRange(1, CATALOG_INT_MAX), help="Stop after re-reading this many bytes."
)
@click.option("--max-seconds", type=FiniteFloatRange(0.1, None), help="Stop after this long.")
@click.option("--rate", type=FiniteFloatRange(0.1, None), help="Read at most this many MB/s.")
@click.option("--mirrors", "with_mirrors", is_flag=True, help="Also re-read each object's copy in every mirror.")
@click.option("--progress/--no-progress", "show_progress", default=True, help="Progress bar on a terminal.")
@json_option
@with_archive
def scrub(
    archive: Archive,
    max_bytes: int | None,
    max_seconds: float | None,
    rate: float | None,
    with_mirrors: bool,
    show_progress: bool,
    as_json: bool,
) -> None:
    """Re-read and re-hash objects, oldest-verified first, within the limits; name what is corrupt or missing."""
    from modelarc.archive.scrub import ScrubLimits
    from modelarc.archive.scrub import scrub as run_scrub

    limits = ScrubLimits(max_bytes, max_seconds, rate * 1e6 if rate else None)
    with byte_progress("scrub", show_progress and not as_json) as (advance, _total):
        report = run_scrub(archive, limits, with_mirrors=with_mirrors, progress=advance)
    if as_json:
        emit_json(report.to_json())
    else:
        for oid, snaps in sorted(report.missing.items()):
            console.print(f"MISSING  object {oid} needed by {', '.join(snaps) or 'no snapshot'}")
        for oid, snaps in sorted(report.corrupt.items()):
            console.print(f"CORRUPT  object {oid} needed by {', '.join(snaps) or 'no snapshot'}")
        for oid, snaps in sorted(report.unsupported.items()):
            console.print(
                f"UNSUPPORTED  object {oid} needed by {', '.join(snaps) or 'no snapshot'}: of a newer format, "
                "not damaged (needs a newer modelarc)"
            )
        for name, problems in sorted(report.mirrors.items()):
            for kind, ids in sorted(problems.items()):
                for oid in ids:
                    console.print(f"MIRROR {name}: {kind} object {oid}")
        for name, behind in sorted(report.mirrors_behind.items()):
            why = "it was never synced" if name in report.mirrors_never_synced else "archived since its last sync"
            console.print(
                f"mirror {name}: {behind} objects not there yet ({why}), which is no damage; "
                f"`modelarc mirror sync {name}` copies them",
                soft_wrap=True,
            )
        console.print(
            f"{report.objects_checked} objects ({human_bytes(report.bytes_checked)}) re-hashed, stopped: "
            f"{report.stopped_by}; {report.objects_ever_verified} of {report.objects_total} objects ever verified"
        )
        if report.ok or report.damage_found:
            console.print("ok" if report.ok else f"damage found: {_mending(archive, report)}")
        elif report.unsupported_found and not report.unreachable:
            console.print("no damage found; objects of a newer format need a newer modelarc")
    _echo_unreachable(report.unreachable.values())
    if report.damage_found or report.unreachable:
        sys.exit(5)
    if report.unsupported_found:
        sys.exit(UnsupportedObjectError.exit_code)


@click.command()
@click.option("--read-data", is_flag=True, help="Re-hash every object first instead of trusting the last scrub.")
@click.option(
    "--records-from",
    metavar="MIRROR",
    callback=lambda _ctx, _param, value: _vouched_mirror(value),
    help="Also put back catalog records this catalog has no note of writing, from MIRROR only: you vouch that "
    "no one else wrote to it (a record there can lift an embargo or trust a key at the next rebuild-catalog).",
)
@json_option
@with_archive
def repair(archive: Archive, read_data: bool, records_from: str | None, as_json: bool) -> None:
    """Replace missing or corrupt objects with verified copies from the mirrors; damaged ones are quarantined.
    A lost catalog record is put back only if this catalog wrote it, any other only with --records-from."""
    from modelarc.archive.repair import repair as run_repair

    report = run_repair(archive, read_data=read_data, records_from=records_from)
    if as_json:
        emit_json(report.to_json())
    else:
        for oid, source in sorted(report.repaired.items()):
            aside = report.quarantined.get(oid)
            console.print(f"REPAIRED  {oid} from {source}" + (f" (damaged copy kept at {aside})" if aside else ""))
        for oid, snaps in sorted(report.unrepaired.items()):
            why = report.unrepaired_why.get(oid, "no mirror has a good copy")
            console.print(f"NOT REPAIRED  {oid}: {why}; breaks {', '.join(snaps) or 'nothing'}")
        for oid, why in sorted(report.unsupported.items()):
            console.print(f"LEFT AS IT IS  {oid}: {why} (of a newer format, not damaged)")
        for oid in sorted(report.realigned):
            aside = report.quarantined.get(oid)
            console.print(f"REALIGNED  {report.realigned[oid]}" + (f" (delta copy kept at {aside})" if aside else ""))
        for key, source in sorted(report.records_repaired.items()):
            console.print(f"REPAIRED  catalog record {key} from {source}")
        for key, why in sorted(report.records_unrepaired.items()):
            console.print(f"NOT REPAIRED  catalog record {key}: {why}")
        for key, why in sorted(report.records_not_taken.items()):
            console.print(f"NOT TAKEN  catalog record {key}: {why}")
        console.print(
            f"{len(report.repaired)} repaired, {len(report.unrepaired)} not repaired"
            + (f", {len(report.realigned)} realigned with the catalog" if report.realigned else "")
            + (
                f", {report.base_references_released} references to bases nothing decodes against released (gc "
                "frees them)"
                if report.base_references_released
                else ""
            )
            + (f"; broken: {', '.join(report.broken_snapshots)}" if report.broken_snapshots else "")
        )
    _echo_unreachable(report.unreachable.values())
    if not report.ok:
        sys.exit(5)


def register(group: click.Group) -> None:
    group.add_command(mirror)
    group.add_command(scrub)
    group.add_command(repair)
