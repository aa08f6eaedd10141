"""``modelarc verify``, ``fsck``, ``gc`` and ``stats``: re-reading what is stored, and what it costs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from modelarc.archive.catalog.units import human_bytes
from modelarc.cli.options import json_option, with_archive
from modelarc.cli.output import console, echo_warning, emit_json
from modelarc.errors import UnsupportedObjectError

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command()
@click.argument("ref", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every snapshot.")
@json_option
@with_archive
def verify(archive: Archive, ref: str | None, all_: bool, as_json: bool) -> None:
    """Re-read every byte of REF (or --all): objects, file hashes and the signature."""
    if bool(ref) == all_:
        raise click.UsageError("give a REF or --all")
    if ref:
        report = archive.verify(ref)
        if as_json:
            emit_json({"ok": True, **report.__dict__})
        else:
            console.print(
                f"ok  {report.ref} {report.snapshot[:19]}: {report.files} files, {human_bytes(report.bytes)}, signature by {report.key_fingerprint[:16]}…"
            )
        return
    ok, failed = archive.verify_all()
    if as_json:
        emit_json(
            {
                "ok": not failed,
                "verified": [r.__dict__ for r in ok],
                "failed": [{"snapshot": s, "error": e} for s, e in failed],
            }
        )
    else:
        for r in ok:
            console.print(f"ok      {r.ref}: {r.files} files, {human_bytes(r.bytes)}")
        for label, err in failed:
            console.print(f"FAILED  {label}: {err}")
        console.print(f"{len(ok)} verified, {len(failed)} failed")
    if failed:
        sys.exit(5)


@click.command()
@click.option(
    "--read-data",
    is_flag=True,
    help="Also re-read and re-hash every object (on S3: download the whole store). Default: check that every "
    "needed object is present and every manifest is intact.",
)
@json_option
@with_archive
def fsck(archive: Archive, read_data: bool, as_json: bool) -> None:
    """Check the store against the catalog; name what is missing or corrupt and the snapshots it breaks."""
    report = archive.fsck(read_data=read_data)
    if as_json:
        emit_json({"ok": report.ok, **report.__dict__})
    else:
        for oid, snaps in sorted(report.missing.items()):
            console.print(f"MISSING  object {oid} needed by {', '.join(snaps) or 'no snapshot'}")
        for oid, snaps in sorted(report.corrupt.items()):
            why = report.corrupt_why.get(oid, "")
            console.print(
                f"CORRUPT  object {oid} needed by {', '.join(snaps) or 'no snapshot'}" + (f" ({why})" if why else "")
            )
        for oid, snaps in sorted(report.unsupported.items()):
            why = report.unsupported_why.get(oid, "").removeprefix(f"object {oid}: ")  # named once
            console.print(
                f"UNSUPPORTED  object {oid} needed by {', '.join(snaps) or 'no snapshot'} ({why}; not damaged: "
                "check it with that modelarc)"
            )
        for snap in report.broken_snapshots:
            console.print(f"BROKEN   snapshot {snap}")
        for why in (report.mismatched[oid] for oid in sorted(report.mismatched)):
            console.print(
                f"MISMATCH {why}: gc keeps bases by the catalog (`modelarc repair --read-data` makes them agree)"
            )
        for key in report.stray:
            console.print(f"STRAY    {key} is not an object (no reader uses it; move it out of the store)")
        for line in report.records_contradicted:
            console.print(f"RECORD   {line}")
        for line in report.records_not_in_catalog:
            echo_warning(f"record not in the catalog (not damage): {line}")
        console.print(
            f"{report.objects_checked} objects listed"
            + (f", {human_bytes(report.bytes_checked)} re-hashed" if read_data else " (bytes not re-read: --read-data)")
            + "; "
            f"{len(report.missing)} missing, {len(report.corrupt)} corrupt, "
            + (f"{len(report.unsupported)} of a newer format, " if report.unsupported else "")
            + f"{report.unreferenced} unreferenced, "
            f"{report.temp_files} temp files"
            + (f", {len(report.stray)} stray files" if report.stray else "")
            + (f", {len(report.mismatched)} not as the catalog records" if report.mismatched else "")
            + (
                f", {len(report.records_contradicted)} records contradicting the catalog"
                if report.records_contradicted
                else ""
            )
            + (
                f", {len(report.records_not_in_catalog)} records of changes the catalog lacks"
                if report.records_not_in_catalog
                else ""
            )
        )
        if report.damage_found:
            console.print(f"{len(report.broken_snapshots)} snapshots damaged")
        elif report.mismatched:
            console.print("no damage found; the catalog misdescribes stored objects")
        elif report.records_contradicted:
            console.print(
                "no damage found; records in the store contradict the catalog (a rebuild would not restore it)"
            )
        else:
            console.print("ok" if report.ok else "no damage found; objects of a newer format need a newer modelarc")
    if report.damage_found or report.mismatched or report.records_contradicted:
        sys.exit(5)
    if report.unsupported:
        sys.exit(UnsupportedObjectError.exit_code)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@json_option
@with_archive
def gc(archive: Archive, dry_run: bool, as_json: bool) -> None:
    """Remove objects that no snapshot references (refuses to run during a push)."""
    report = archive.gc(dry_run=dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, **report.__dict__})
    else:
        verb = "would remove" if dry_run else "removed"
        if report.withdrawn_weights_released:
            console.print(
                f"{'would release' if dry_run else 'released'} {report.withdrawn_weights_released} references of "
                "withdrawn snapshots to files that are weights by today's definition"
                + (" (what they free is not counted below)" if dry_run else "")
            )
        console.print(
            f"{verb} {report.objects_removed} objects ({human_bytes(report.bytes_freed)}), "
            f"{report.temp_files_removed} temp files; kept {report.objects_kept}"
        )


@click.command()
@json_option
@with_archive
def stats(archive: Archive, as_json: bool) -> None:
    """Logical vs stored bytes, deduplication and compression ratios."""
    st = archive.stats()
    if as_json:
        emit_json(st.to_json())
        return
    console.print(f"models:       {st.models}")
    console.print(f"snapshots:    {st.snapshots}")
    console.print(f"objects:      {st.objects}")
    console.print(f"logical:      {human_bytes(st.logical_bytes)}  (sum of every snapshot's files)")
    console.print(f"unique:       {human_bytes(st.unique_bytes)}  (after deduplication)")
    console.print(
        f"stored:       {human_bytes(st.stored_bytes)}  (after compression; {human_bytes(st.store_bytes_on_disk)} on disk)"
    )
    if st.dedup_ratio:
        console.print(
            f"dedup:        {st.dedup_ratio:.2f}x   compression: {st.compression_ratio:.3f}   "
            f"stored/logical: {st.overall_ratio:.3f}"
        )
    d = st.deltas
    if d and d.objects:
        alone = f"{human_bytes(d.standalone_bytes)} on their own" if d.standalone_bytes else "not measured"
        console.print(
            f"deltas:       {d.objects} objects ({human_bytes(d.raw_bytes)} raw) stored in "
            f"{human_bytes(d.stored_bytes)}; {alone}, {human_bytes(d.saved_bytes)} saved"
            + (f" ({d.unmeasured} received from elsewhere, not measured)" if d.unmeasured else "")
        )


def register(group: click.Group) -> None:
    for command in (verify, fsck, gc, stats):
        group.add_command(command)
