"""``modelarc keys``: this archive's signing key, and the keys it trusts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from modelarc.cli.options import json_option, with_archive
from modelarc.cli.output import console, emit_json

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.group()
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
@click.argument("pem_file", type=click.Path(allow_dash=True))
@click.option("--label", help="A name for the key's owner.")
@json_option
@with_archive
def keys_import(archive: Archive, pem_file: str, label: str | None, as_json: bool) -> None:
    """Import a public key (PEM file, or - for stdin) and trust it."""
    from modelarc.archive.limits import MAX_PUBLIC_KEY_BYTES, read_small_file, read_small_stream

    what = "a PEM public key"
    if pem_file == "-":
        with click.open_file("-", "rb") as stdin:
            pem = read_small_stream(stdin, MAX_PUBLIC_KEY_BYTES, "stdin", what)
    else:
        pem = read_small_file(pem_file, MAX_PUBLIC_KEY_BYTES, what)
    fingerprint = archive.import_key(pem, label)
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


def register(group: click.Group) -> None:
    group.add_command(keys)
