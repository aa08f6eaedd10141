"""``modelarc token``: bearer tokens for the server (stored hashed; the token is printed once)."""

from __future__ import annotations

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
@click.option("--scope", type=click.Choice(SCOPES), required=True, help="What the token may do.")
@click.option("--name", default="token", show_default=True, help="A label for it, shown by `token ls`.")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="Limit a push token to this namespace (repeatable); without it, it can push to every namespace.",
)
@json_option
@with_archive
def create(archive: Archive, scope: str, name: str, namespaces: tuple[str, ...], as_json: bool) -> None:
    """Create a token; it is shown only now."""
    made = create_token(archive, scope, name, namespaces)
    if as_json:
        emit_json(made.to_json())
        return
    click.echo(made.token)
    console.print(
        styled(f"token {made.id} ({made.scope}); store it now, it is not kept in plain text", "dim")
    )
    if made.namespaces:
        console.print(
            f"can push only to namespace{'s' if len(made.namespaces) > 1 else ''} {', '.join(made.namespaces)}"
        )
    elif made.scope == "push":  # say it, so an archive-wide token is a choice, not an accident
        console.print("can push to every namespace; --namespace limits it")


@token.command(name="ls")
@json_option
@with_archive
def ls(archive: Archive, as_json: bool) -> None:
    """Every token: id, scope, name, created, the namespaces it may push to ("all": no limit), revoked."""
    rows = list_tokens(archive)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        spaces = r["namespaces"]
        reach = ",".join(map(str, spaces)) if isinstance(spaces, list) else str(spaces)
        console.print(
            f"{r['id']:>4}  {r['scope']:<6} {r['name']:<20} {r['created_at']}  namespaces: {reach}"
            f"{'  REVOKED' if r['revoked'] else ''}"
        )


@token.command(name="revoke")
@click.argument("token_id", type=ROW_ID)
@json_option
@with_archive
def revoke(archive: Archive, token_id: int, as_json: bool) -> None:
    """Revoke token TOKEN_ID (its id in `modelarc token ls`): the server refuses it from now on."""
    before = revoke_token(archive, token_id)
    if as_json:
        emit_json(
            {"id": token_id, "revoked": True, "already_revoked_at": before.isoformat() if before else None}
        )
        return
    if before is not None:
        console.print(
            f"token {token_id} was already revoked ({before.isoformat(timespec='seconds')}); nothing changed"
        )
        return
    console.print(f"revoked token {token_id}")


def register(group: click.Group) -> None:
    group.add_command(token)
