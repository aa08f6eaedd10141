"""``modelarc push`` and ``modelarc pull``: into and out of this archive, and to and from a remote."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelarc.archive.catalog.units import human_bytes
from modelarc.cli.options import (
    OutputFilePath,
    jobs_option,
    json_option,
    no_blank_value,
    not_empty,
    not_empty_path,
    with_archive,
)
from modelarc.cli.output import (
    LINEAGE_CYCLE,
    byte_progress,
    byte_progress_steps,
    echo_line,
    echo_warning,
    emit_json,
)
from modelarc.registry.records import RELATIONS  # the catalog's own list: help and errors cannot drift
from modelarc.registry.refs import parse_ref

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command()
@click.argument("source", callback=not_empty)
@click.argument("ref", required=False)
@click.option(
    "--remote", "remote_name", help="Also send the snapshot to this remote (see `modelarc remote add`)."
)
@jobs_option("Parallel transfers with --remote, and parallel downloads from a Hub endpoint (hf://).")
@click.option("--cutoff", callback=no_blank_value, help="Training-data cutoff: YYYY, YYYY-MM or YYYY-MM-DD.")
@click.option("--license", "license_", callback=no_blank_value, help="License id, e.g. apache-2.0.")
@click.option("--description", callback=no_blank_value, help="Free-text description.")
@click.option("--parent", "parents", multiple=True, help="REF of a model this one derives from (repeatable).")
@click.option(
    "--relation",
    "relations",
    multiple=True,
    # the names in the option's column, which click never wraps: in the help text it broke "continued-pretrain"
    metavar="|".join(RELATIONS),
    help="How it derives from each --parent (one of the names shown).",
)
@click.option(
    "--delta-base",
    help="Store tensors as deltas against this REF's same tensors instead of the first --parent's.",
)
@click.option(
    "--delta-rename",
    "delta_renames",
    multiple=True,
    metavar="NEW=OLD",
    help="Tensor NEW of this model is the base's tensor OLD, renamed (repeatable).",
)
@click.option("--no-delta", is_flag=True, help="Store every tensor on its own, even with --parent.")
@click.option("--source", "source_url", callback=no_blank_value, help="Where the weights came from (URL).")
@click.option("--released", callback=no_blank_value, help="Release date of these weights (YYYY[-MM[-DD]]).")
@click.option(
    "--data",
    "data_manifest",
    type=click.Path(path_type=Path),
    help="Training-data manifest (YAML/JSON) to attach.",
)
@click.option(
    "--follow-symlinks",
    is_flag=True,
    help="Archive what symlinks point to even outside SOURCE, and follow symlinked folders.",
)
@click.option(
    "--mirror",
    "mirror_names",
    multiple=True,
    help="Then bring this mirror in step (`modelarc mirror sync NAME`; repeatable, `all` for every mirror).",
)
@click.option(
    "--with-parents",
    is_flag=True,
    help="With --remote: first send the declared ancestors the remote lacks, so it records the lineage too.",
)
@click.option(
    "--rehash",
    is_flag=True,
    help="Read and hash every file, even those unchanged (same size, times and inode) since an earlier push.",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="With hf:// and HF_HUB_OFFLINE=1: archive what the Hugging Face cache holds of a revision it may not hold "
    "whole (one modelarc did not write), recorded as possibly partial.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@json_option
@with_archive
def push(
    archive: Archive,
    source: str,
    ref: str | None,
    remote_name: str | None,
    jobs: int,
    cutoff: str | None,
    license_: str | None,
    description: str | None,
    parents: tuple[str, ...],
    relations: tuple[str, ...],
    delta_base: str | None,
    delta_renames: tuple[str, ...],
    no_delta: bool,
    source_url: str | None,
    released: str | None,
    data_manifest: Path | None,
    follow_symlinks: bool,
    mirror_names: tuple[str, ...],
    with_parents: bool,
    rehash: bool,
    allow_partial: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """Archive the folder or file SOURCE (or hf://org/name[@revision] from a Hub endpoint) as REF (ns/name:tag).

    With --remote NAME, also send it to that remote; `push REF --remote NAME` sends an already archived REF.
    """
    if ref is None:
        if remote_name is None:
            raise click.UsageError("missing REF: push SOURCE REF, or push REF --remote NAME")
        if mirror_names:
            raise click.UsageError("--mirror goes with push SOURCE REF (or run `modelarc mirror sync`)")
        _push_remote(archive, source, remote_name, jobs, progress, as_json, with_parents=with_parents)
        return
    if with_parents and remote_name is None:
        raise click.UsageError("--with-parents goes with --remote NAME")
    if relations and len(relations) not in (1, len(parents)):
        raise click.UsageError("give one --relation for all parents, or one per --parent")
    if relations and not parents:
        raise click.UsageError("--relation needs --parent REF")
    if parents and not relations:
        raise click.UsageError(f"--parent needs --relation ({', '.join(RELATIONS)})")
    from modelarc.archive.repository import parse_cutoff
    from modelarc.registry.records import Provenance

    rels = relations * len(parents) if len(relations) == 1 else relations
    cutoff_date, precision = parse_cutoff(cutoff) if cutoff else (None, None)
    # a bad training-data manifest must fail before a byte is archived
    data_doc = None
    if data_manifest:
        from modelarc.archive.provenance.data import load_data_manifest  # jsonschema: only with --data

        data_doc = load_data_manifest(data_manifest)
    provenance = Provenance(
        cutoff=cutoff_date,
        cutoff_precision=precision,
        license=license_,
        description=description,
        source_url=source_url,
        parents=tuple(zip(parents, rels, strict=True)),
        release_date=parse_cutoff(released)[0] if released else None,
    )
    # imported here: ingest and signing load for push alone
    from modelarc.archive.push import DeltaRequest, push_source

    if no_delta and (delta_base or delta_renames):
        raise click.UsageError("--no-delta cannot go with --delta-base or --delta-rename")
    delta = DeltaRequest(delta_base, _renames(delta_renames), enabled=not no_delta)

    targets = _mirror_records(archive, mirror_names)  # an unknown mirror fails before a byte is archived
    if remote_name is not None:  # so does an unknown or unusable remote (a typo must not archive and move the tag)
        from modelarc.archive.remote.config import get_remote

        get_remote(archive.settings.home, remote_name)
    # a Hub import shows its download first, then the push
    steps = [f"download {source}", f"push {ref}"] if source.startswith("hf://") else [f"push {ref}"]
    with byte_progress_steps(steps, progress and not as_json) as bars:
        (fetch_advance, fetch_total), (advance, set_total) = bars[0], bars[-1]
        result = push_source(
            archive,
            source,
            ref,
            provenance,
            data=data_doc,
            follow_symlinks=follow_symlinks,
            progress=advance,
            on_total=set_total,
            warn=echo_warning,
            delta=delta,
            rehash=rehash,
            jobs=jobs,
            fetch_progress=fetch_advance,
            on_fetch_total=fetch_total,
            allow_partial=allow_partial,
        )
    synced = _sync_mirrors(archive, targets, progress and not as_json)
    if remote_name is not None:
        _push_remote(
            archive,
            f"{parse_ref(result.ref).model}@{result.snapshot}",
            remote_name,
            jobs,
            progress,
            as_json,
            tag=result.ref,
            with_parents=with_parents,
        )
        if not all(r.ok for r in synced):
            click.echo("error: a mirror is not in step; see `modelarc mirror sync` for details", err=True)
            sys.exit(5)
        return
    if as_json:
        emit_json(
            {**dataclasses.asdict(result), "mirrors": [r.to_json() for r in synced]} if targets else result
        )
        if not all(r.ok for r in synced):
            sys.exit(5)
        return
    # plain lines (echo_line): a push need not load rich's console to print them
    state = "new snapshot" if result.new_snapshot else "unchanged snapshot"
    echo_line(f"{result.ref} -> {result.snapshot} ({state})")
    ratio = result.stored_bytes_added / result.logical_bytes if result.logical_bytes else 0
    echo_line(
        f"{result.files} files, {result.tensors} tensors, {human_bytes(result.logical_bytes)} logical, "
        f"{human_bytes(result.stored_bytes_added)} stored ({ratio:.3f}), {result.seconds:.2f}s"
    )
    if result.unchanged_files:
        echo_line(
            f"{result.unchanged_files} of {result.files} files unchanged since an earlier push, not read again "
            "(--rehash reads them)"
        )
    if result.proven_files:
        echo_line(
            f"{result.proven_files} of {result.files} files read and found to be an earlier push's bytes, by their "
            "chunk ids"
        )
    if result.healed:
        echo_line(
            f"healed {len(result.healed)} damaged object(s) a scrub had found corrupt or missing, from this push's "
            "bytes (a damaged copy is kept in quarantine/)"
        )
    for parent in result.lineage_refused:
        echo_warning(f"lineage to {parent} not recorded: {LINEAGE_CYCLE}")
    if result.delta_base:
        echo_line(
            f"deltas against {result.delta_base}: {result.delta_objects} chunks, "
            f"{human_bytes(result.delta_stored_bytes)} stored instead of "
            f"{human_bytes(result.delta_standalone_bytes)} on their own"
        )
    for r in synced:
        echo_line(f"mirror {r.mirror}: {r.objects_copied} objects copied ({human_bytes(r.bytes_copied)})")
    if not all(r.ok for r in synced):
        click.echo("error: a mirror is not in step; see `modelarc mirror sync` for details", err=True)
        sys.exit(5)


def _renames(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        new, sep, old = pair.partition("=")
        if not sep or not new or not old:
            raise click.UsageError(f"--delta-rename takes NEW=OLD (two tensor names), not {pair!r}")
        if out.get(new, old) != old:  # the last one silently won
            raise click.UsageError(f"--delta-rename names {new!r} twice, as {out[new]!r} and as {old!r}: give one")
        out[new] = old
    return out


def _mirror_records(archive: Archive, names: tuple[str, ...]) -> list[Any]:
    """The mirrors a push is to sync, each known and answering: a missing one (an unmounted disk) is refused
    before a byte is archived."""
    if not names:
        return []
    from modelarc.archive.mirrors import check_reachable, mirrors

    if "all" in names:
        records = mirrors(archive)
    else:
        records = [record for name in dict.fromkeys(names) for record in mirrors(archive, name)]
    check_reachable(archive, records)
    return records


def _sync_mirrors(archive: Archive, records: list[Any], show_progress: bool) -> list[Any]:
    """Each mirror brought in step after the push (only what it lacks moves)."""
    if not records:
        return []
    from modelarc.archive.mirrors import sync

    reports = []
    for record in records:
        with byte_progress(f"mirror {record.name}", show_progress) as (advance, set_total):
            reports.append(sync(archive, record, progress=advance, on_total=set_total))
        if reports[-1].unreachable:  # gone since the push began: the snapshot is archived, this mirror is not
            click.echo(f"error: {reports[-1].unreachable}", err=True)
    return reports


def _push_remote(
    archive: Archive,
    ref: str,
    remote_name: str,
    jobs: int,
    progress: bool,
    as_json: bool,
    tag: str | None = None,
    with_parents: bool = False,
) -> None:
    from modelarc.archive.remote.client import RemoteArchive
    from modelarc.archive.remote.config import get_remote
    from modelarc.archive.remote.sync import ancestors_of, push_to_remote
    from modelarc.cli.commands.remote import emit_transfer

    ancestors = ancestors_of(archive, ref) if with_parents else []
    with RemoteArchive(get_remote(archive.settings.home, remote_name), jobs=jobs) as client:
        for ancestor in ancestors:  # by digest: an ancestor's tags on the remote are not this push's business
            with byte_progress(f"push {ancestor} -> {remote_name}", progress and not as_json) as (
                advance,
                total,
            ):
                sent = push_to_remote(archive, ancestor, client, progress=advance, on_total=total)
            if not as_json:
                emit_transfer(sent, as_json, "pushed")
        with byte_progress(f"push {ref} -> {remote_name}", progress and not as_json) as (advance, set_total):
            result = push_to_remote(archive, tag or ref, client, progress=advance, on_total=set_total)
    emit_transfer(result, as_json, "pushed", with_parents=with_parents)


@click.command()
@click.argument("ref")
@click.argument("dest", type=click.Path(), required=False, callback=not_empty_path)
@click.option("--remote", "remote_name", help="Fetch REF from this remote into the archive first.")
@jobs_option("Parallel transfers with --remote.")
@click.option("--force", is_flag=True, help="Overwrite existing files in DEST.")
@click.option(
    "--signature",
    "signature",
    type=OutputFilePath(),
    help="Also write the signature bundle (model_signing format) here.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on a terminal.")
@json_option
@with_archive
def pull(
    archive: Archive,
    ref: str,
    dest: Path | None,
    remote_name: str | None,
    jobs: int,
    force: bool,
    signature: Path | None,
    progress: bool,
    as_json: bool,
) -> None:
    """Rebuild the files of REF byte-identically into DEST, verifying every byte.

    With --remote NAME, first copy REF from that remote into this archive (verified, signature checked against
    keys this archive trusts); DEST is then optional.
    """
    if remote_name is not None:
        from modelarc.archive.remote.client import RemoteArchive
        from modelarc.archive.remote.config import get_remote
        from modelarc.archive.remote.sync import fetch_from_remote
        from modelarc.cli.commands.remote import emit_transfer

        # with --signature the bundle is written by the local pull below, so fetch only into the archive here
        direct = dest if signature is None else None
        with RemoteArchive(get_remote(archive.settings.home, remote_name), jobs=jobs) as client:
            with byte_progress(f"pull {ref} <- {remote_name}", progress and not as_json) as (bar, set_total):
                fetched = fetch_from_remote(
                    archive, ref, client, dest=direct, force=force, progress=bar, on_total=set_total
                )
        if dest is None or direct is not None:
            emit_transfer(fetched, as_json, "fetched")
            if direct is not None and not as_json:
                echo_line(f"written and verified in {Path(direct).absolute()}")
            return
        if not as_json:
            emit_transfer(fetched, False, "fetched")
        ref = f"{parse_ref(fetched.ref).model}@{fetched.snapshot}"
    if dest is None:
        raise click.UsageError("missing DEST (it may be left out only with --remote)")
    with byte_progress(f"pull {ref}", progress and not as_json) as (advance, set_total):
        result = archive.pull(
            ref, dest, force=force, signature_path=signature, progress=advance, on_total=set_total
        )
    if as_json:
        emit_json(result)
        return
    echo_line(f"{result.ref} ({result.snapshot}) -> {result.dest}")
    echo_line(
        f"{result.files} files, {human_bytes(result.bytes)}, verified (signed by {result.key_fingerprint[:16]}…), "
        f"{result.seconds:.2f}s"
    )
    if result.signature:
        echo_line(f"signature bundle written to {result.signature}")


def register(group: click.Group) -> None:
    group.add_command(push)
    group.add_command(pull)
