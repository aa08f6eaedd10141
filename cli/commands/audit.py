"""``modelarc audit``: the append-only log of what changed in the archive, by whom and when."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from modelarc.cli.options import ROW_LIMIT, json_option, no_blank_value, with_archive
from modelarc.cli.output import console, emit_json

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@click.command(name="audit")
@click.option(
    "--action",
    callback=no_blank_value,
    help="Only this action (push, tag, tombstone, data.attach, key.trust, gc, ...).",
)
@click.option("--since", callback=no_blank_value, help="Only events on or after this date (YYYY[-MM[-DD]]).")
@click.option("--limit", type=ROW_LIMIT, default=100, show_default=True, help="At most this many events.")
@json_option
@with_archive
def audit(archive: Archive, action: str | None, since: str | None, limit: int, as_json: bool) -> None:
    """List audit events, newest first."""
    from modelarc.archive.catalog.views import audit_log
    from modelarc.archive.repository import parse_cutoff

    since_date = parse_cutoff(since)[0] if since else None
    rows = [e.to_json() for e in audit_log(archive, action=action, since=since_date, limit=limit)]
    if as_json:
        emit_json(rows)
        return
    if not rows and action:
        from modelarc.archive.catalog.views import audit_actions

        known = audit_actions(archive)
        if action not in known:  # e.g. `rm`, which the log calls tombstone: say so rather than print nothing
            console.print(
                f"the log has no action {action!r}; it has: {', '.join(known) or 'none yet'}", soft_wrap=True
            )
            return
    if not rows:
        console.print("no audit events match" if action or since else "the audit log is empty")
        return
    for r in rows:
        details = json.dumps(r["details"], sort_keys=True, default=str) if r["details"] else ""
        console.print(f"{r['at']}  {r['actor']:<12} {r['action']:<12} {r['target']}  {details}")


def register(group: click.Group) -> None:
    group.add_command(audit)
