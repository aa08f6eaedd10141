"""``modelarc``: the command line. Each command parses, calls ``modelarc.archive``, and prints text or JSON."""

from __future__ import annotations

import errno
import functools
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from modelarc import __version__
from modelarc.archive.catalog.search import SEARCH_FILTERS
from modelarc.archive.catalog.units import human_bytes, human_count
from modelarc.archive.repository import Archive, parse_cutoff
from modelarc.cli.commands import register_all
from modelarc.cli.output import byte_progress, console, echo_error, echo_warning, emit_json, line, styled
from modelarc.errors import DiskFullError, ModelarcError
from modelarc.registry.records import Provenance
from modelarc.registry.refs import parse_ref


class ArchiveGroup(click.Group):
    """Turns every ModelarcError into one ``error:`` line and its exit code, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelarcError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            echo_error(str(exc))
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # a full disk the core did not name itself (it names the store and pull destinations): still one line
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            where = f" writing {exc.filename}" if exc.filename else ""
            echo_error(f"disk full: no space left on the device{where} ({exc.strerror})")
            ctx.exit(DiskFullError.exit_code)
        except KeyboardInterrupt:
            echo_error("interrupted; nothing partial was recorded")
            ctx.exit(130)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
jobs_option = click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Parallel transfers with --remote.",
)


def with_archive(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        with Archive.open(ctx.obj["home"]) as archive:
            return fn(archive, *args, **kwargs)

    return wrapper


@click.group(cls=ArchiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="MODELARC_HOME",
    type=click.Path(file_okay=False),
    help="Archive home (default ~/.modelarc).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="modelarc")
@click.pass_context
def cli(ctx: click.Context, home: str | None, debug: bool) -> None:
    """modelarc: archive model weights deduplicated, compressed and signed, with their provenance."""
    ctx.obj = {"home": home, "debug": debug}


@cli.command()
@json_option
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Create the archive home, its catalog and a signing key (safe to run again)."""
    archive, created = Archive.init(ctx.obj["home"])
    with archive:
        from modelarc.archive.signing.keys import key_fingerprint

        info = {
            "home": str(archive.settings.home),
            "database": archive.settings.database_url,
            "key_created": created,
            "key_fingerprint": key_fingerprint(archive.public_key_pem()),
        }
    if as_json:
        emit_json(info)
    else:
        console.print(f"archive ready at {info['home']}")
        console.print(f"signing key {info['key_fingerprint'][:16]}… ({'created' if created else 'existing'})")


@cli.command()
@click.argument("source")
@click.argument("ref", required=False)
@click.option(
    "--remote", "remote_name", help="Also send the snapshot to this remote (see `modelarc remote add`)."
)
@jobs_option
@click.option("--cutoff", help="Training-data cutoff: YYYY, YYYY-MM or YYYY-MM-DD.")
@click.option("--license", "license_", help="License id, e.g. apache-2.0.")
@click.option("--description", help="Free-text description.")
@click.option("--parent", "parents", multiple=True, help="REF of a model this one derives from (repeatable).")
@click.option(
    "--relation",
    "relations",
    multiple=True,
    help="How it derives from each --parent: finetune, quantized, merge, adapter, distilled.",
)
@click.option("--source", "source_url", help="Where the weights came from (URL).")
@click.option("--released", help="Release date of these weights (YYYY[-MM[-DD]]).")
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
    source_url: str | None,
    released: str | None,
    data_manifest: Path | None,
    follow_symlinks: bool,
    progress: bool,
    as_json: bool,
) -> None:
    """Archive the folder or file SOURCE (or hf://org/name[@revision] from a Hub endpoint) as REF (ns/name:tag).

    With --remote NAME, also send it to that remote; `push REF --remote NAME` sends an already archived REF.
    """
    if ref is None:
        if remote_name is None:
            raise click.UsageError("missing REF: push SOURCE REF, or push REF --remote NAME")
        _push_remote(archive, source, remote_name, jobs, progress, as_json)
        return
    if relations and len(relations) not in (1, len(parents)):
        raise click.UsageError("give one --relation for all parents, or one per --parent")
    if relations and not parents:
        raise click.UsageError("--relation needs --parent REF")
    if parents and not relations:
        raise click.UsageError("--parent needs --relation (finetune, quantized, merge, adapter, distilled)")
    rels = relations * len(parents) if len(relations) == 1 else relations
    cutoff_date, precision = parse_cutoff(cutoff) if cutoff else (None, None)
    # a bad training-data manifest must fail before a byte is archived
    from modelarc.archive.provenance.data import load_data_manifest

    data_doc = load_data_manifest(data_manifest) if data_manifest else None
    provenance = Provenance(
        cutoff=cutoff_date,
        cutoff_precision=precision,
        license=license_,
        description=description,
        source_url=source_url,
        parents=tuple(zip(parents, rels, strict=True)),
        release_date=parse_cutoff(released)[0] if released else None,
    )
    from modelarc.archive.push import push_source  # imported here: ingest and signing load for push alone

    with byte_progress(f"push {ref}", progress and not as_json) as (advance, set_total):
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
        )
    if remote_name is not None:
        _push_remote(
            archive,
            f"{parse_ref(result.ref).model}@{result.snapshot}",
            remote_name,
            jobs,
            progress,
            as_json,
            tag=result.ref,
        )
        return
    if as_json:
        emit_json(result)
        return
    state = "new snapshot" if result.new_snapshot else "unchanged snapshot"
    console.print(f"{result.ref} -> {result.snapshot} ({state})")
    ratio = result.stored_bytes_added / result.logical_bytes if result.logical_bytes else 0
    console.print(
        f"{result.files} files, {result.tensors} tensors, {human_bytes(result.logical_bytes)} logical, "
        f"{human_bytes(result.stored_bytes_added)} stored ({ratio:.3f}), {result.seconds:.2f}s"
    )


def _push_remote(
    archive: Archive,
    ref: str,
    remote_name: str,
    jobs: int,
    progress: bool,
    as_json: bool,
    tag: str | None = None,
) -> None:
    from modelarc.archive.remote.client import RemoteArchive
    from modelarc.archive.remote.config import get_remote
    from modelarc.archive.remote.sync import push_to_remote
    from modelarc.cli.commands.remote import emit_transfer

    with RemoteArchive(get_remote(archive.settings.home, remote_name), jobs=jobs) as client:
        with byte_progress(f"push {ref} -> {remote_name}", progress and not as_json) as (advance, set_total):
            result = push_to_remote(archive, tag or ref, client, progress=advance, on_total=set_total)
    emit_transfer(result, as_json, "pushed")


@cli.command()
@click.argument("ref")
@click.argument("dest", type=click.Path(path_type=Path), required=False)
@click.option("--remote", "remote_name", help="Fetch REF from this remote into the archive first.")
@jobs_option
@click.option("--force", is_flag=True, help="Overwrite existing files in DEST.")
@click.option(
    "--signature",
    "signature",
    type=click.Path(path_type=Path),
    help="Also write the signature bundle (model_signing format) here.",
)
@click.option("--progress/--no-progress", default=True)
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
                console.print(f"written and verified in {Path(direct).absolute()}")
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
    console.print(f"{result.ref} ({result.snapshot}) -> {result.dest}")
    console.print(
        f"{result.files} files, {human_bytes(result.bytes)}, verified (signed by {result.key_fingerprint[:16]}…), "
        f"{result.seconds:.2f}s"
    )
    if result.signature:
        console.print(f"signature bundle written to {result.signature}")


def search_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The provenance filters shared by ``ls`` and ``timeline``."""
    options = [
        *(click.option(f.option, help=f.help) for f in SEARCH_FILTERS),
        click.option(
            "--limit", type=click.IntRange(1, None), default=100, show_default=True, help="Rows at most."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command(name="ls")
@search_options
@click.option("--remote", "remote_name", help="List what this remote holds instead (same filters).")
@json_option
@with_archive
def ls_(archive: Archive, as_json: bool, remote_name: str | None, **options: Any) -> None:
    """List archived snapshots, newest first, filtered by provenance."""
    from modelarc.archive.catalog.search import build_filters, search

    if remote_name is not None:
        from modelarc.archive.remote.client import RemoteArchive
        from modelarc.archive.remote.config import get_remote

        limit = options.pop("limit")
        with RemoteArchive(get_remote(archive.settings.home, remote_name)) as client:
            rows = client.search(options, limit)
    else:
        rows = search(archive, build_filters(archive, **options))
    if as_json:
        emit_json([r.to_json() for r in rows])
        return
    if not rows:
        console.print(
            "no snapshots match"
            if any(v for k, v in options.items() if k != "limit")
            else "the archive is empty"
        )
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("MODEL", "TAGS", "SNAPSHOT", "TYPE", "PARAMS", "SIZE", "CUTOFF", "CREATED", ""):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.model,
            ",".join(r.tags) or "-",
            r.snapshot[:19],
            r.model_type or "-",
            human_count(r.parameters),
            human_bytes(r.logical_bytes),
            r.cutoff or "-",
            r.created_at,
            "WITHDRAWN" if r.withdrawn else "",
        )
    console.print(table)


@cli.command()
@click.argument("ref")
@json_option
@with_archive
def show(archive: Archive, ref: str, as_json: bool) -> None:
    """Show one snapshot: architecture, parameters, provenance, files, signatures."""
    view = archive.show(ref)
    if as_json:
        emit_json(view.to_json())
        return
    console.print(line((view.model, "bold"), f"  {view.snapshot}"))
    if view.withdrawn:
        console.print(line(("WITHDRAWN", "bold red"), f" on {view.withdrawn.at}: {view.withdrawn.reason}"))
    console.print(f"tags:         {', '.join(view.tags) or '-'}")
    console.print(f"created:      {view.created_at} by {view.pushed_by or '-'}")
    arch = view.architecture
    if arch:
        console.print(
            f"architecture: {arch.get('model_type', '-')} {','.join(arch.get('architectures', []))}  "
            f"layers={arch.get('num_layers', '-')} hidden={arch.get('hidden_size', '-')} "
            f"vocab={arch.get('vocab_size', '-')} context={arch.get('context_length', '-')}"
        )
    dtypes = ", ".join(f"{k} {human_count(v)}" for k, v in view.dtypes.items()) or "-"
    console.print(f"parameters:   {human_count(view.parameter_count)} ({view.parameter_count:,}); {dtypes}")
    console.print(
        f"size:         {human_bytes(view.logical_bytes)} in {view.file_count} files, {view.tensor_count} tensors; "
        f"{human_bytes(view.stored_bytes_added)} new bytes stored at push"
    )
    console.print(f"cutoff:       {view.cutoff or '-'}")
    if view.release_date:
        console.print(f"released:     {view.release_date}")
    console.print(f"license:      {view.license or '-'}")
    for d in view.datasets:
        console.print(f"dataset:      {d.role} {d.name} {d.version or ''}")
    if view.description:
        console.print(f"description:  {view.description}")
    if view.source_url:
        console.print(f"source:       {view.source_url}")
    for p in view.parents:
        console.print(f"parent:       {p.relation} of {p.model}@{p.snapshot[:19]}")
    for sig in view.signatures:
        trusted = "yes" if sig.trusted else "no"
        console.print(f"signature:    key {sig.key[:16]}… trusted={trusted} at {sig.created_at}")
    console.print("files:")
    for f in view.files:
        console.print(f"  {human_bytes(f.size):>10}  {f.path}")


@cli.command()
@click.argument("name")
@json_option
@with_archive
def log(archive: Archive, name: str, as_json: bool) -> None:
    """History of the model NAME (ns/name): its snapshots and every tag move."""
    history = archive.log(name)
    if as_json:
        emit_json(history.to_json())
        return
    console.print(styled(history.model, "bold"))
    for sn in history.snapshots:
        tags = f" ({', '.join(sn.tags)})" if sn.tags else ""
        console.print(
            f"  {sn.created_at}  {sn.snapshot[:19]}{tags}  {human_bytes(sn.logical_bytes)}  by {sn.pushed_by}"
        )
    console.print("tag moves:")
    for mv in history.tag_moves:
        src = mv.from_snapshot[:19] if mv.from_snapshot else "(new)"
        console.print(f"  {mv.at}  {mv.tag}: {src} -> {mv.to_snapshot[:19]}  by {mv.actor}")


@cli.command()
@click.argument("ref")
@click.argument("new_tag")
@json_option
@with_archive
def tag(archive: Archive, ref: str, new_tag: str, as_json: bool) -> None:
    """Point NEW_TAG of REF's model at REF's snapshot (moving it if it exists; the move is kept in history)."""
    digest, previous = archive.tag(ref, new_tag)
    if as_json:
        emit_json({"tag": new_tag, "snapshot": digest, "previous": previous})
    else:
        moved = f" (was {previous[:19]})" if previous and previous != digest else ""
        console.print(f"{new_tag} -> {digest}{moved}")


@cli.command()
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


@cli.command()
@json_option
@with_archive
def fsck(archive: Archive, as_json: bool) -> None:
    """Re-read and re-hash every stored object; name what is missing or corrupt and the snapshots it breaks."""
    report = archive.fsck()
    if as_json:
        emit_json({"ok": report.ok, **report.__dict__})
    else:
        for oid, snaps in sorted(report.missing.items()):
            console.print(f"MISSING  object {oid} needed by {', '.join(snaps) or 'no snapshot'}")
        for oid, snaps in sorted(report.corrupt.items()):
            console.print(f"CORRUPT  object {oid} needed by {', '.join(snaps) or 'no snapshot'}")
        for snap in report.broken_snapshots:
            console.print(f"BROKEN   snapshot {snap}")
        console.print(
            f"{report.objects_checked} objects ({human_bytes(report.bytes_checked)}) checked; "
            f"{len(report.missing)} missing, {len(report.corrupt)} corrupt, {report.unreferenced} unreferenced, "
            f"{report.temp_files} temp files"
        )
        console.print("ok" if report.ok else f"{len(report.broken_snapshots)} snapshots damaged")
    if not report.ok:
        sys.exit(5)


@cli.command()
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
        console.print(
            f"{verb} {report.objects_removed} objects ({human_bytes(report.bytes_freed)}), "
            f"{report.temp_files_removed} temp files; kept {report.objects_kept}"
        )


@cli.command()
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


@cli.group()
def keys() -> None:
    """Signing keys: export yours, list, import and trust others."""


@keys.command(name="export")
@with_archive
def keys_export(archive: Archive) -> None:
    """Print this archive's public key (PEM)."""
    click.echo(archive.public_key_pem().decode(), nl=False)


@keys.command(name="list")
@json_option
@with_archive
def keys_list(archive: Archive, as_json: bool) -> None:
    """List known keys and whether they are trusted."""
    rows = archive.list_keys()
    if as_json:
        emit_json([k.to_json() for k in rows])
        return
    for k in rows:
        flags = ("trusted" if k.trusted else "untrusted") + (", local" if k.local else "")
        console.print(f"{k.fingerprint}  {flags}  {k.label or ''}")


@keys.command(name="import")
@click.argument("pem_file", type=click.File("rb"))
@click.option("--label", help="A name for the key's owner.")
@json_option
@with_archive
def keys_import(archive: Archive, pem_file: Any, label: str | None, as_json: bool) -> None:
    """Import a public key (PEM file, or - for stdin) and trust it."""
    fingerprint = archive.import_key(pem_file.read(), label)
    emit_json({"fingerprint": fingerprint, "trusted": True}) if as_json else console.print(
        f"trusted {fingerprint}"
    )


@keys.command(name="trust")
@click.argument("fingerprint")
@json_option
@with_archive
def keys_trust(archive: Archive, fingerprint: str, as_json: bool) -> None:
    """Trust a known key (fingerprint or unique prefix)."""
    fp = archive.set_key_trust(fingerprint, True)
    emit_json({"fingerprint": fp, "trusted": True}) if as_json else console.print(f"trusted {fp}")


@keys.command(name="distrust")
@click.argument("fingerprint")
@json_option
@with_archive
def keys_distrust(archive: Archive, fingerprint: str, as_json: bool) -> None:
    """Stop trusting a key: snapshots signed only by it no longer verify."""
    fp = archive.set_key_trust(fingerprint, False)
    emit_json({"fingerprint": fp, "trusted": False}) if as_json else console.print(f"distrusted {fp}")


register_all(cli)


def main() -> None:
    cli(prog_name="modelarc")


if __name__ == "__main__":
    main()
