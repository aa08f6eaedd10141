"""``modelarc init``: create the archive home, its catalog and a signing key."""

from __future__ import annotations

import click

from modelarc.cli.options import json_option
from modelarc.cli.output import console, emit_json


@click.command()
@json_option
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Create the archive home, its catalog and a signing key (safe to run again)."""
    from modelarc.archive.repository import Archive

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


def register(group: click.Group) -> None:
    group.add_command(init)
