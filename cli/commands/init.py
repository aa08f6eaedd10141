"""``modelarc init``: create the archive home, its catalog and a signing key."""

from __future__ import annotations

import click

from modelarc.cli.options import json_option, not_empty
from modelarc.cli.output import console, emit_json
from modelarc.cli.startup import startup_done


@click.command()
@click.option(
    "--store",
    metavar="LOCATION",
    callback=not_empty,
    help="Keep the objects in this folder or S3-compatible bucket (s3://BUCKET/PREFIX) instead of HOME/store; "
    "endpoint and credentials come from the standard AWS variables and files. Default: $MODELARC_STORE_URL.",
)
@json_option
@click.pass_context
def init(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """Create the archive home, its catalog and a signing key (safe to run again)."""
    from modelarc.archive.repository import Archive

    archive, created = Archive.init(ctx.obj["home"], store=store)
    startup_done()
    with archive:
        from modelarc.archive.signing.keys import key_fingerprint

        info = {
            "home": str(archive.settings.home),
            "database": archive.settings.database_url,
            "store": archive.settings.store_location,
            "key_created": created,
            "key_fingerprint": key_fingerprint(archive.public_key_pem()),
        }
    if as_json:
        emit_json(info)
    else:
        console.print(f"archive ready at {info['home']} (objects in {info['store']})")
        console.print(f"signing key {info['key_fingerprint'][:16]}… ({'created' if created else 'existing'})")


def register(group: click.Group) -> None:
    group.add_command(init)
