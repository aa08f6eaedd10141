"""``modelarc access``: who may read a model's weights (policies, embargoes, grants, access requests).

Every change needs ``--reason``, which the audit log and the catalog records keep. The level and the reason are
checked by the core (archive/access.py), not by click, so a bad one is the usual one ``error:`` line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from modelarc.archive.catalog.units import human_bytes
from modelarc.cli.options import json_option, no_blank_value, with_archive
from modelarc.cli.output import console, echo_warning, emit_json, say_left_records
from modelarc.registry.bounds import ROW_ID_MAX

if TYPE_CHECKING:
    from modelarc.archive.access import EffectivePolicy, GrantChange
    from modelarc.archive.repository import Archive

reason_option = click.option(
    "--reason", help="Why (kept in the audit log and the catalog records). Required."
)


@click.group(name="access")
def access() -> None:
    """Who may read a model's weights: public, gated (grants), restricted (admins), embargoed --until a date.

    Provenance stays public whatever the policy: catalog entry, manifest, file names, sizes and hashes, configs,
    tokenizers, model cards, licences, signatures; every other file is withheld as weights, whatever its format.
    """


def _describe(p: EffectivePolicy) -> str:
    if p.source == "default":
        return "public (no policy set)"
    text = p.declared
    if p.until is not None:
        text += f" until {p.until.isoformat()}" + (", lapsed: public" if p.lapsed else "")
    if p.files:
        text += f" (weights and {', '.join(p.files)})"
    return f"{text}: {p.reason}  [{p.set_by}, {p.set_at:%Y-%m-%d %H:%M}]" if p.set_at else text


@access.command(name="set")
@click.argument("model")
@click.argument("level")
@click.option("--until", callback=no_blank_value, help="YYYY-MM-DD: the policy lapses to public from 00:00 UTC that day (an embargo).")
@click.option("--snapshot", help="A tag or snapshot id of MODEL: override the model's policy for it only.")
@click.option(
    "--withhold",
    "withhold",
    multiple=True,
    metavar="GLOB",
    help="Also withhold the files this glob names (matched against the whole path, ignoring case; repeatable).",
)
@reason_option
@json_option
@with_archive
def set_(
    archive: Archive,
    model: str,
    level: str,
    until: str | None,
    snapshot: str | None,
    withhold: tuple[str, ...],
    reason: str | None,
    as_json: bool,
) -> None:
    """Set MODEL's policy: LEVEL is public, gated or restricted (with --snapshot also inherit, ending the
    override)."""
    from modelarc.archive.access import change_policy

    change = change_policy(
        archive, model, level, reason=reason or "", until=until, snapshot=snapshot, files=withhold
    )
    if as_json:
        emit_json(change.to_json())
        return
    policy = change.policy
    where = f"{model}@{policy.snapshot}" if snapshot else model
    console.print(f"{where}: {_describe(policy)}")
    say_left_records(
        change.record_completed,
        change.records_contradicting,
        change="policy change",
        command="`access set`",
        of=where,
    )
    if change.cache_removed:
        freed = human_bytes(change.cache_bytes_freed)
        console.print(
            f"removed decoded copies of its weights from the load cache ({freed}): "
            + ", ".join(change.cache_removed)
        )
    if change.cache_left:
        echo_warning(
            "the load cache still holds decoded weights at "
            + ", ".join(change.cache_left)
            + ": delete those folders (their owner may)"
        )


@access.command(name="grant")
@click.argument("model")
@click.argument("token_or_name")
@reason_option
@json_option
@with_archive
def grant_(archive: Archive, model: str, token_or_name: str, reason: str | None, as_json: bool) -> None:
    """Let a token read gated MODEL's weights: TOKEN_OR_NAME is token:<id> or a token name (every live token so
    named). On a model that is not gated the grant is recorded, for when it is, and has no effect until then."""
    from modelarc.archive.access import grant

    change = grant(archive, model, token_or_name, reason=reason or "")
    if as_json:
        emit_json(
            {
                "model": change.model,
                "subject": change.subject,
                "grants": [g.to_json() for g in change.grants],
                "effective": change.note is None,
                "note": change.note,
                "record_completed": change.record_completed,
                "records_contradicting": list(change.records_contradicting),
            }
        )
        return
    if change.note is not None:  # never "granted" for a grant that gives nothing now
        console.print(f"grant of {change.subject} on {change.model} {change.note}: {change.reason}")
    else:
        console.print(f"granted {change.subject} the weights of {change.model}: {change.reason}")
    _say_left(change)


@access.command(name="revoke")
@click.argument("model")
@click.argument("token_or_name")
@reason_option
@json_option
@with_archive
def revoke_(archive: Archive, model: str, token_or_name: str, reason: str | None, as_json: bool) -> None:
    """Revoke the live grants of exactly TOKEN_OR_NAME on MODEL."""
    from modelarc.archive.access import revoke

    change = revoke(archive, model, token_or_name, reason=reason or "")
    if as_json:
        emit_json(
            {
                "model": change.model,
                "subject": change.subject,
                "grants": [g.to_json() for g in change.grants],
                "record_completed": change.record_completed,
                "records_contradicting": list(change.records_contradicting),
            }
        )
        return
    console.print(
        f"revoked {len(change.grants)} grant(s) of {change.subject} on {change.model}: {change.reason}"
    )
    _say_left(change)


def _say_left(change: GrantChange) -> None:
    what = "revocation" if change.action == "revoke" else "grant"
    say_left_records(
        change.record_completed,
        change.records_contradicting,
        change=what,
        command=f"`access {change.action}`",
        of=f"{change.subject} on {change.model}",
    )


@access.command(name="ls")
@click.argument("model", required=False)
@click.option("--history", is_flag=True, help="Revoked grants too.")
@json_option
@with_archive
def ls(archive: Archive, model: str | None, history: bool, as_json: bool) -> None:
    """Policies, embargoes and grants of MODEL, or of every model that has one."""
    from modelarc.archive.access import list_policies

    rows = list_policies(archive, model, history=history)
    if as_json:
        emit_json([r.to_json() for r in rows])
        return
    if not rows:
        console.print("every model is public (no policy or grant set)")
    for r in rows:
        console.print(f"{r.model}  {_describe(r.policy)}")
        for o in r.overrides:
            console.print(f"  snapshot {o.snapshot}  {_describe(o)}")
        for g in r.grants:
            state = f"  REVOKED {g.revoked_at:%Y-%m-%d}: {g.revoke_reason}" if g.revoked_at else ""
            console.print(
                f"  grant {g.id}  {g.subject}: {g.reason}  [{g.granted_by}, {g.granted_at:%Y-%m-%d}]{state}"
            )


@access.command(name="requests")
@click.option("--all", "all_requests", is_flag=True, help="Decided requests too.")
@json_option
@with_archive
def requests(archive: Archive, all_requests: bool, as_json: bool) -> None:
    """Access requests tokens made (POST on the server), pending ones unless --all."""
    from modelarc.archive.access import list_requests

    rows = list_requests(archive, all_requests=all_requests)
    if as_json:
        emit_json([r.to_json() for r in rows])
        return
    if not rows:
        console.print("no pending access requests" if not all_requests else "no access requests")
    for r in rows:
        decided = f"  {r.status} by {r.decided_by}: {r.decision_reason}" if r.decided_at else ""
        console.print(
            f"{r.id:>4}  {r.model}  token:{r.token_id} ({r.token_name})  {r.created_at:%Y-%m-%d %H:%M}  "
            f"{r.status}{decided}"
        )
        console.print(f"      {r.justification}")


@access.command(name="decide")
@click.argument("request_id")
@click.argument("decision")
@reason_option
@json_option
@with_archive
def decide(archive: Archive, request_id: str, decision: str, reason: str | None, as_json: bool) -> None:
    """Grant or deny access request REQUEST_ID (DECISION: grant | deny); granting grants token:<id>."""
    from modelarc.archive.access import decide_request, grant_note
    from modelarc.errors import UsageError

    # digits within the catalog's ids (cli/options.py ROW_ID): a larger number names no request, and overflows
    if not (request_id.isascii() and request_id.isdigit()) or not 1 <= int(request_id) <= ROW_ID_MAX:
        raise UsageError(f"{request_id!r} is not a request id (see `modelarc access requests`)")
    made = decide_request(archive, int(request_id), decision, reason=reason or "")
    granted = made.status == "granted"
    note = grant_note(archive, made.model) if granted else None
    if as_json:
        emit_json({**made.to_json(), **({"effective": note is None, "note": note} if granted else {})})
        return
    # a model that stopped being gated since the request: the grant is kept, and is not reported as "granted"
    outcome = made.status if note is None else f"grant {note}"
    console.print(f"request {made.id} ({made.model}, token:{made.token_id}): {outcome}: {made.decision_reason}")


def register(group: click.Group) -> None:
    group.add_command(access)
