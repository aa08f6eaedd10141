"""``modelarc remote``: name other archives (``modelarc serve``) to push to and pull from."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from modelarc.archive.remote.config import (
    Remote,
    check_remote,
    load_remotes,
    remove_remote,
    save_remote,
    without_password,
)
from modelarc.cli.options import json_option, with_archive
from modelarc.cli.output import LINEAGE_CYCLE, console, echo_line, echo_warning, emit_json, styled

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.group(name="remote")
def remote() -> None:
    """Other archives to push to and pull from (`push --remote NAME`, `pull --remote NAME`)."""


@remote.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option(
    "--token",
    help="Bearer token for this remote (push scope to push). Kept in <home>/remotes.json, mode 0600.",
)
@click.option(
    "--trust-keys/--no-trust-keys",
    default=True,
    show_default=True,
    help="Trust the remote's own signing keys now, so pulled snapshots verify (trust on first use).",
)
@json_option
@with_archive
def add(archive: Archive, name: str, url: str, token: str | None, trust_keys: bool, as_json: bool) -> None:
    """Add (or update) remote NAME at URL, e.g. http://127.0.0.1:8470."""
    from modelarc.archive.remote.client import RemoteArchive
    from modelarc.archive.remote.sync import trust_remote_keys

    entry = Remote(name, url, token)
    check_remote(entry)  # before it is contacted
    trusted: list[str] = []
    distrusted: list[str] = []
    already: list[str] = []
    if trust_keys:  # contact it first: a typo in the URL should fail now, not at the first pull
        with RemoteArchive(entry) as client:
            keys = trust_remote_keys(archive, client)
            trusted, distrusted, already = keys.trusted, keys.kept_distrusted, keys.already_trusted
    save_remote(archive.settings.home, entry)
    if as_json:
        emit_json(
            {
                "name": name,
                "url": url.rstrip("/"),
                "token": bool(token),
                "trusted_keys": trusted,
                "distrusted_keys": distrusted,
                "already_trusted_keys": already,
            }
        )
        return
    console.print(f"remote {name} -> {url.rstrip('/')}")
    for fp in trusted:
        console.print(f"trusting its signing key {fp[:16]}… (undo: modelarc keys distrust {fp[:16]})")
    for fp in already:  # trusted before this: no undo to offer (it may be this archive's own key)
        console.print(f"its signing key {fp[:16]}… is already trusted here")
    for fp in distrusted:
        console.print(
            styled(
                f"not trusting its signing key {fp[:16]}…: you distrusted it (modelarc keys trust {fp[:16]})",
                "yellow",
            )
        )


@remote.command(name="ls")
@json_option
@with_archive
def ls(archive: Archive, as_json: bool) -> None:
    """List remotes (tokens are never printed)."""
    remotes = load_remotes(archive.settings.home)
    # a password in a URL (refused since, or written by hand) is a secret like the token
    rows = [{"name": r.name, "url": without_password(r.url), "token": bool(r.token)} for r in remotes.values()]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        # two spaces, not a tab: the console shows every control character as an escape (cli/output.py)
        console.print(f"{row['name']}  {row['url']}{'  (token)' if row['token'] else ''}")


@remote.command(name="rm")
@click.argument("name")
@json_option
@with_archive
def rm(archive: Archive, name: str, as_json: bool) -> None:
    """Forget remote NAME (its trusted keys stay trusted; see `modelarc keys`)."""
    removed = remove_remote(archive.settings.home, name)
    if as_json:
        emit_json({"name": removed.name, "url": without_password(removed.url), "removed": True})
        return
    console.print(f"removed remote {name}")


def emit_transfer(result: object, as_json: bool, verb: str, *, with_parents: bool = False) -> None:
    """``with_parents``: the push was asked to send the ancestors first (``--with-parents``), so a parent still
    missing on the receiver is one this archive could not send, and pushing again would not help."""
    if as_json:
        emit_json(result)
        return
    r = dataclasses.asdict(result)  # type: ignore[call-overload]
    # plain lines (echo_line): rich's console loads only for the coloured lines below (~30 ms of start-up)
    echo_line(
        f"{verb} {r['ref']} ({r['snapshot']}) {'to' if verb == 'pushed' else 'from'} remote {r['remote']}"
    )
    echo_line(
        f"{r['objects_sent']} of {r['objects']} objects transferred ({r['bytes_sent']} bytes), "
        f"signed by {r['key_fingerprint'][:16]}…, {r['seconds']:.2f}s"
    )
    if r.get("previous") and r["previous"] != r["snapshot"]:
        # a tag that already named another snapshot now names this one: said aloud, as a remote may answer a tag
        # with an older snapshot than the one recorded here (`modelarc tag` moves it back)
        where = "on remote " + r["remote"] if verb == "pushed" else "here"
        console.print(styled(f"tag {r['ref']} moved {where}: {r['previous']} -> {r['snapshot']}", "yellow"))
    # the receiver keeps the lineage as declared: a later push that brings the parent records it
    if verb != "pushed":
        fix = ""
    elif with_parents:  # (ancestors_of sends no withdrawn snapshot, and one only recorded by id is not here)
        fix = "; --with-parents could not send it: it is withdrawn or not archived here"
    else:
        fix = "; push again with --with-parents to send it and record the lineage"
    for parent in r["parents_missing"]:
        console.print(
            styled(f"lineage to {parent} not recorded: the receiver does not have it{fix}", "yellow")
        )
    for parent in r.get("lineage_refused") or ():
        echo_warning(f"lineage to {parent} not recorded: {LINEAGE_CYCLE}")
    for left in r.get("cache_left") or ():
        echo_warning(f"a load-cache copy of weights now withheld here was left: {left}")


def register(group: click.Group) -> None:
    group.add_command(remote)
