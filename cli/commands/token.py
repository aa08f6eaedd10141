"""``modelarc token``: bearer tokens for the server (stored hashed; the token is printed once)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from modelarc.archive.tokens import SCOPES, create_token, list_tokens, revoke_token
from modelarc.cli.options import ROW_ID, json_option, with_archive
from modelarc.cli.output import console, emit_json, styled

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.group(name="token")
def token() -> None:
    """Bearer tokens with scopes read, push, admin."""


@token.command(name="create")
@click.option("--scope", type=click.Choice(SCOPES), required=True)
@click.option("--name", default="token", show_default=True)
@json_option
@with_archive
def create(archive: Archive, scope: str, name: str, as_json: bool) -> None:
    """Create a token; it is shown only now."""
    made = create_token(archive, scope, name)
    if as_json:
        emit_json(dataclasses.asdict(made))
    else:
        click.echo(made.token)
        console.print(
            styled(f"token {made.id} ({made.scope}); store it now, it is not kept in plain text", "dim")
        )


@token.command(name="ls")
@json_option
@with_archive
def ls(archive: Archive, as_json: bool) -> None:
    rows = list_tokens(archive)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        console.print(
            f"{r['id']:>4}  {r['scope']:<6} {r['name']:<20} {r['created_at']}{'  REVOKED' if r['revoked'] else ''}"
        )


@token.command(name="revoke")
@click.argument("token_id", type=ROW_ID)
@with_archive
def revoke(archive: Archive, token_id: int) -> None:
    revoke_token(archive, token_id)
    console.print(f"revoked token {token_id}")


def register(group: click.Group) -> None:
    group.add_command(token)
