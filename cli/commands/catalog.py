"""``modelarc ls``, ``show``, ``log`` and ``tag``: what the catalog holds, and naming snapshots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from modelarc.archive.catalog.units import human_bytes, human_count
from modelarc.archive.provenance.statement import describe_pusher
from modelarc.cli.options import json_option, search_options, with_archive
from modelarc.cli.output import console, emit_json, line, say_left_records, styled

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command(name="ls")
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
        if any(v for k, v in options.items() if k != "limit"):
            console.print("no snapshots match")
        elif remote_name is None and _store_holds_snapshots(archive):
            # a catalog lost or replaced (a new MODELARC_DATABASE_URL, a deleted registry.db) over a full store
            console.print(
                "the catalog is empty, but the store holds snapshot records: if the catalog was lost or replaced, "
                "`modelarc rebuild-catalog` rebuilds it from the store"
            )
        else:
            console.print("the archive is empty")
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


def _store_holds_snapshots(archive: Archive) -> bool:
    """Whether the store has snapshot records a rebuild would restore: objects alone (a pull refused before its
    commit leaves its manifest and bundle) are no sign of a lost catalog."""
    from modelarc.archive.records import holds_snapshot_records

    return holds_snapshot_records(archive.store.backend)


@click.command()
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
    console.print(f"created:      {view.created_at} by {describe_pusher(view.pushed_by)}")
    arch = view.architecture
    if arch:
        console.print(
            f"architecture: {arch.get('model_type', '-')} {','.join(arch.get('architectures', []))}  "
            f"layers={arch.get('num_layers', '-')} hidden={arch.get('hidden_size', '-')} "
            f"vocab={arch.get('vocab_size', '-')} context={arch.get('context_length', '-')}"
        )
    # each format's tensors apart: their dtype names overlap (F32 in both), their tensors are not one list
    if len(view.tensors_by_format) > 1:
        console.print(
            f"parameters:   {human_count(view.parameter_count)} ({view.parameter_count:,}) in all formats"
        )
        for kind, t in view.tensors_by_format.items():
            dtypes = ", ".join(f"{k} {human_count(v)}" for k, v in t.dtypes.items()) or "-"
            console.print(
                f"  {kind + ':':<14}{human_count(t.parameters)} ({t.parameters:,}) in {t.tensors} tensors; {dtypes}"
            )
    else:
        dtypes = ", ".join(f"{k} {human_count(v)}" for k, v in view.dtypes.items()) or "-"
        console.print(
            f"parameters:   {human_count(view.parameter_count)} ({view.parameter_count:,}); {dtypes}"
        )
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
        console.print(f"source:       {view.source_url}{_source_note(view.source_url)}")
    for p in view.parents:
        console.print(f"parent:       {p.relation} of {p.model}@{p.snapshot[:19]}")
    # the provenance above is someone's word: no signature covers it (a bundle signs the files), so it is said
    # whose, before any signature line could be read as vouching for it
    stated = view.stated_by
    whose = "the remote's word" if stated is not None and stated.kind == "remote" else "the pusher's word"
    console.print(f"provenance:   stated by {stated.describe() if stated else '-'}, not signed: {whose}")
    for sig in view.signatures:
        trusted = "yes" if sig.trusted else "no"
        console.print(
            f"signature:    key {sig.key[:16]}… trusted={trusted} at {sig.created_at}; signs the files only"
        )
    console.print("files:")
    for f in view.files:
        console.print(f"  {human_bytes(f.size):>10}  {f.path}")


def _source_note(source_url: str) -> str:
    """What a source recorded by an offline Hub import from a cache of unknown origin means (archive/remote/hf_import.py)."""
    from modelarc.archive.remote.hf_cache import CACHE_SOURCE_SCHEME

    if not source_url.startswith(CACHE_SOURCE_SCHEME):
        return ""
    return " (from a Hugging Face cache: the endpoint its files were downloaded from is not known)"


@click.command()
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
            f"  {sn.created_at}  {sn.snapshot[:19]}{tags}  {human_bytes(sn.logical_bytes)}  by {describe_pusher(sn.pushed_by)}"
        )
    console.print("tag moves:")
    for mv in history.tag_moves:
        src = mv.from_snapshot[:19] if mv.from_snapshot else "(new)"
        console.print(f"  {mv.at}  {mv.tag}: {src} -> {mv.to_snapshot[:19]}  by {mv.actor}")


@click.command()
@click.argument("ref")
@click.argument("new_tag")
@json_option
@with_archive
def tag(archive: Archive, ref: str, new_tag: str, as_json: bool) -> None:
    """Point NEW_TAG of REF's model at REF's snapshot (moving it if it exists; the move is kept in history)."""
    digest, previous, left = archive.tag_move(ref, new_tag)
    completed = left.match.key if left.match is not None else None
    if as_json:
        emit_json(
            {
                "tag": new_tag,
                "snapshot": digest,
                "previous": previous,
                "record_completed": completed,
                "records_contradicting": list(left.others),
            }
        )
        return
    moved = f" (was {previous[:19]})" if previous and previous != digest else ""
    console.print(f"{new_tag} -> {digest}{moved}")
    say_left_records(completed, left.others, change="move", command="`tag`", of=f"the tag {new_tag}")


def register(group: click.Group) -> None:
    for command in (ls_, show, log, tag):
        group.add_command(command)
