"""``modelarc cache ls`` and ``cache clear``: the load cache that ``load_model(..., cache=True)`` fills."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelarc.archive.catalog.units import human_bytes
from modelarc.cli.options import json_option, with_archive
from modelarc.cli.output import console, echo_warning, emit_json

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive
    from modelarc.archive.runtime.cache import CacheEntry, LoadCache


@click.group()
def cache() -> None:
    """The load cache: decoded copies kept by load_model(..., cache=True), per snapshot.

    It lives in MODELARC_CACHE_DIR (default: cache/ in the archive home); MODELARC_CACHE_MAX_BYTES caps it (e.g.
    20GB), least recently used entries going first.
    """


def _load_cache(ctx: click.Context) -> LoadCache:
    from modelarc.archive.runtime.cache import LoadCache
    from modelarc.config import load_settings

    return LoadCache.of(load_settings(ctx.obj["home"]))


def _entry_json(e: CacheEntry) -> dict[str, Any]:
    return {
        "snapshot": e.snapshot,
        "model": e.model,
        "bytes": e.bytes,
        "files": len(e.files),
        "created": _iso(e.created),
        "last_used": _iso(e.last_used),
        "path": str(e.folder),
    }


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


@cache.command("ls")
@json_option
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List the cached snapshots, least recently used first, with their sizes and the total."""
    listing = _load_cache(ctx).listing()
    if as_json:
        emit_json(
            {
                "path": str(listing.folder),
                "bytes": listing.bytes,
                "max_bytes": listing.max_bytes,
                "entries": [_entry_json(e) for e in listing.entries],
                "temp_folders": listing.temp_folders,
                "temp_bytes": listing.temp_bytes,
                "unreadable": [{"path": str(u.folder), "bytes": u.bytes} for u in listing.unreadable],
            }
        )
        return
    for e in listing.entries:
        console.print(
            f"{e.snapshot[:19]}  {human_bytes(e.bytes):>9}  last used {_iso(e.last_used)}  {e.model}"
        )
    cap = (
        f" of {human_bytes(listing.max_bytes)} (MODELARC_CACHE_MAX_BYTES)"
        if listing.max_bytes is not None
        else ""
    )
    temp = (
        f"; {listing.temp_folders} temp folders, {human_bytes(listing.temp_bytes)}"
        if listing.temp_folders
        else ""
    )
    for u in listing.unreadable:  # never served; counted against the cap, and evicted first
        console.print(f"{'UNREADABLE':<19}  {human_bytes(u.bytes):>9}  {u.folder}")
    if listing.unreadable:
        temp += f"; {len(listing.unreadable)} unreadable entries (never served; evicted first)"
    console.print(
        f"{len(listing.entries)} snapshot{'' if len(listing.entries) == 1 else 's'}, {human_bytes(listing.bytes)}{cap} in {listing.folder}{temp}"
    )


@cache.command("clear")
@click.argument("ref", required=False)
@click.option(
    "--all", "all_", is_flag=True, help="Remove every entry (and temp folders left by interrupted loads)."
)
@json_option
@with_archive
def clear(archive: Archive, ref: str | None, all_: bool, as_json: bool) -> None:
    """Remove the cached copy of REF's snapshot, or of every snapshot with --all."""
    from modelarc.archive.runtime.cache import LoadCache

    if bool(ref) == all_:
        raise click.UsageError("give a REF or --all")
    load_cache = LoadCache.of(archive.settings)
    left: tuple[Path, ...] = ()
    trash: list[tuple[Path, int]] = []
    if ref:
        _r, snap = archive.resolve(ref)
        entry = load_cache.remove(snap.digest)
        removed = [entry] if entry else []
        trash = load_cache.purge_trash(snap.digest)  # what a removal of it killed before its delete left
        freed = sum(e.bytes for e in removed) + sum(size for _path, size in trash)
    else:
        cleared = load_cache.clear()
        removed, freed, left = list(cleared.removed), cleared.bytes_freed, cleared.left
    if as_json:
        emit_json(
            {
                "removed": [_entry_json(e) for e in removed],
                "trash_removed": [str(p) for p, _size in trash],
                "bytes_freed": freed,
                "left": [str(p) for p in left],
            }
        )
        return
    for e in removed:
        console.print(f"removed {e.snapshot[:19]}  {human_bytes(e.bytes)}  {e.model}")
    for path, size in trash:
        console.print(f"removed {path}  {human_bytes(size)}  (left by a removal that was stopped)")
    if ref and not removed and not trash:
        console.print(f"{ref}: not in the load cache")
    console.print(f"freed {human_bytes(freed)}")
    if left:
        echo_warning(
            f"left {len(left)} entries or temp folders in {load_cache.folder} that this user may not remove "
            "(other users' in a shared cache folder, or a read-only folder); their owners can clear them"
        )


def register(group: click.Group) -> None:
    group.add_command(cache)
