"""Access to weights over HTTP: who is asking, the one check every byte-serving route makes, and the request routes.

The rules are archive/access.py's; this module only asks them. A route that hands out the bytes of a snapshot's
files calls ``require_file_access``; ``/v1/objects/{id}`` calls ``require_object_access`` (an id may have been read
off a public manifest, so it is judged by every snapshot that uses the object). A refusal is ``AccessDeniedError``:
403 with ``X-Error-Code: GatedRepo`` everywhere, which unmodified huggingface_hub raises as ``GatedRepoError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modelarc.api.limits import Name, Namespace, read_json
from modelarc.api.problems import problem, problem_responses
from modelarc.archive.access import (
    MAX_POLICIES_AT_ONCE,
    AccessDecision,
    EffectivePolicy,
    PolicyWanted,
    apply_policies,
    is_withheld_entry,
    list_policies,
    list_requests,
    object_readable,
    read_decision,
    request_access,
)
from modelarc.archive.manifest import FileEntry
from modelarc.archive.provenance.dates import iso_day
from modelarc.archive.remote.receive import reusable_objects
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import Principal, allows
from modelarc.errors import AccessDeniedError, UsageError

_log = logging.getLogger("uvicorn.error")  # the server's own log (api/app.py)

MAX_REQUEST_BODY = 16 << 10  # a justification is at most 4000 characters (archive/access.py MAX_TEXT)
# `mirror sync` sends a model's policies in parts of at most 200 (archive/remote/mirror.py): about 200 bytes each
# with a short reason, 40 KB; 1 MiB holds 200 with reasons of 4000 characters. The body is parsed on the event loop,
# so its bound is what one push token may make the whole server wait for (16 MiB of `[{},{},...]` held it ~4 s).
MAX_POLICIES_BODY = 1 << 20
_POLICY: dict[str, Any] = {
    "type": "object",
    "required": ["level", "reason"],
    "properties": {
        "snapshot": {
            "type": "string",
            "description": "sha256:<hex> of a snapshot of the model; absent: the model",
        },
        "level": {"type": "string", "enum": ["public", "gated", "restricted", "inherit"]},
        "reason": {"type": "string", "minLength": 1, "maxLength": 4000},
        "until": {"type": ["string", "null"], "format": "date"},
        "files": {
            "type": "array",
            "maxItems": 64,
            "items": {"type": "string", "minLength": 1, "maxLength": 500},
        },
    },
}
POLICIES_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["policies"],
    "properties": {"policies": {"type": "array", "maxItems": MAX_POLICIES_AT_ONCE + 1, "items": _POLICY}},
}
REQUEST_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["justification"],
    "properties": {"justification": {"type": "string", "minLength": 1, "maxLength": 4000}},
}


def principal_of(request: Request) -> Principal | None:
    """The live token of this request (set by the app's authentication middleware); None: anonymous."""
    return getattr(request.state, "principal", None)


def refusal(decision: AccessDecision, principal: Principal | None) -> AccessDeniedError:
    """The one-line refusal: what the policy is, why, when it lifts, and what would let the caller in."""
    policy = decision.policy
    what = "restricted to administrators" if policy.level == "restricted" else "gated"
    until = f" until {policy.until.isoformat()}" if policy.until else ""
    why = f" ({policy.reason})" if policy.reason else ""
    target = f"{policy.model}@{policy.snapshot}" if policy.snapshot else policy.model
    if policy.level == "restricted":
        ask = "an admin token can read them"
    elif principal is None:
        ask = f"send a token that holds a grant, or request access: POST /v1/access/{policy.model}/requests"
    else:
        ask = (
            f"token {principal.name} holds no grant; request access: POST /v1/access/{policy.model}/requests"
        )
    named = f" and {', '.join(policy.files)}" if policy.files else ""
    return AccessDeniedError(f"the weights{named} of {target} are {what}{until}{why}: {ask}")


def require_file_access(
    archive: Archive, model: str, snapshot: str, entry: FileEntry, principal: Principal | None
) -> bool:
    """Refuse unless ``principal`` may read this file of the snapshot (every file a policy does not withhold is
    public: the policy is read first, since it may name files besides the weights). True when the policy withholds
    the file (and this caller may read it): its bytes must not reach a shared cache (``bytes_cache_headers``)."""
    decision = read_decision(archive, model, snapshot, principal)
    withheld = decision.policy.withholds and is_withheld_entry(entry, decision.policy.files)
    if decision.allowed or not withheld:
        return withheld
    raise refusal(decision, principal)


# How long a shared cache may keep bytes anyone may read. Gating, restricting or withdrawing a model later cannot
# reach a copy a cache already holds, so that copy must lapse: an hour bounds how long a takedown takes to reach
# every cache, while a cache still fetches a popular object at most once an hour (and, its ETag being its id, a
# revalidation is a 304 without the bytes). A year (content addressing alone would allow it) would keep withdrawn
# weights in every proxy for a year.
PUBLIC_BYTES_LIFETIME = "public, max-age=3600"


def bytes_cache_headers(principal: Principal | None, *, withheld: bool, public: str) -> dict[str, str]:
    """``Cache-Control`` and ``Vary`` for a response carrying file or object bytes, the one rule of every route
    that sends them. Bytes a policy withholds, or read with a token, are ``private`` (no shared cache may keep
    them: a cache would hand a granted token's copy to anyone); ``public`` is what anonymous public bytes get.
    ``Vary: Authorization`` always: whether the same URL answers 200 or 403 depends on the token."""
    if withheld or principal is not None:
        # private caches only, and revalidated on each use, so a revoked grant or a withdrawal is seen at once
        return {"Cache-Control": "private, no-cache", "Vary": "Authorization"}
    return {"Cache-Control": public, "Vary": "Authorization"}


def require_object_access(archive: Archive, object_id: str, principal: Principal | None) -> None:
    if not object_readable(archive, object_id, principal):
        raise AccessDeniedError(
            f"object {object_id} belongs only to weights that are gated or restricted here (or to no snapshot): "
            "a token holding a grant for the model may read it"
        )


def require_delta_base_access(
    archive: Archive, object_id: str, base: str, principal: Principal | None, holder: str
) -> None:
    """A pusher may send a delta only against a base it may read here or sent itself in this push: a delta
    against bytes it cannot read would make the server hand those bytes out (decoded, as the fine-tune's)."""
    if base in reusable_objects(archive, [base], principal, holder):  # the rule a commit judges its objects by
        return
    raise AccessDeniedError(
        f"object {object_id} is a delta against {base}, which this token may not read here: "
        "send the object on its own (or the base first)"
    )


def _public(policy: EffectivePolicy) -> dict[str, Any]:
    doc = policy.to_json()
    doc.pop("set_by", None)  # who set it is in the audit log, for the archive's operators
    return doc


def _public_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "set_by"}


def _policies_wanted(doc: Any) -> list[PolicyWanted]:
    """``{"policies": [{"level", "reason", "snapshot"?, "until"?, "files"?}, ...]}``; 400 names the first bad one."""
    items = doc.get("policies") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise UsageError('expected {"policies": [{"level": ..., "reason": ...}, ...]}')
    if len(items) > MAX_POLICIES_AT_ONCE + 1:
        raise UsageError(f"at most {MAX_POLICIES_AT_ONCE} snapshot policies at once, not {len(items)}")
    out = []
    for index, item in enumerate(items):
        where = f"policies[{index}]"
        if not isinstance(item, dict):
            raise UsageError(f"{where} is not an object")
        level, reason, snapshot = item.get("level"), item.get("reason"), item.get("snapshot")
        until, files = item.get("until"), item.get("files", [])
        if not isinstance(level, str) or not isinstance(reason, str):
            raise UsageError(f"{where}: level and reason are strings")
        if snapshot is not None and not isinstance(snapshot, str):
            raise UsageError(f"{where}: snapshot is a string (sha256:<hex>)")
        if snapshot is not None and not snapshot.startswith("sha256:"):
            raise UsageError(
                f"{where}: snapshot names a snapshot by its id (sha256:<hex>), not {snapshot[:80]!r}"
            )
        if until is not None and not isinstance(until, str):
            raise UsageError(f"{where}: until is a date (YYYY-MM-DD) or null")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise UsageError(f"{where}: files is a list of glob patterns")
        try:
            day = iso_day(until) if until is not None else None
        except ValueError:
            raise UsageError(f"{where}: invalid date {str(until)[:40]!r}: expected YYYY-MM-DD") from None
        out.append(PolicyWanted(snapshot, level, reason, day, tuple(files)))
    return out


def access_router(get_archive: Callable[[], Archive]) -> APIRouter:
    router = APIRouter(tags=["access"], responses=problem_responses(400, 401, 403, 404, 413))

    @router.get("/v1/access/{ns}/{name}")
    def policy(ns: Namespace, name: Name) -> Any:
        """A model's access policy (public, like all provenance): level, embargo date, reason. Grants are not."""
        (found,) = list_policies(get_archive(), f"{ns}/{name}")
        doc = _public(found.policy)
        # a snapshot's own policy overrides the model's: without them a gated or restricted snapshot of a public
        # model would look public here
        doc["snapshots"] = [_public(o) for o in found.overrides]
        return doc

    @router.put(
        "/v1/access/{ns}/{name}",
        responses=problem_responses(409),
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": POLICIES_BODY}}}
        },
    )
    async def set_policies(ns: Namespace, name: Name, request: Request) -> Response:
        """Set the model's policy and its snapshots' overrides (`mirror sync` keeps a served mirror's policies in
        step with its primary's this way), in one transaction; a policy already holding is left as it is, and the
        answer lists what changed. An admin token may set anything; a push token that may push to the namespace
        only what withholds no less than what holds now, at any date to come (403 `PolicyLoosening` otherwise,
        and nothing is changed)."""
        principal = principal_of(request)
        if principal is None:
            return problem(
                401, "Unauthorized", "setting a policy needs a token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not allows(principal.scope, "push"):
            return problem(
                403, "Forbidden", f"this token has the {principal.scope} scope; setting a policy needs push"
            )
        model = f"{ns}/{name}"
        if (why := principal.push_refusal(model, ns)) is not None:
            return problem(403, "Forbidden", why, headers={"X-Error-Code": "NamespaceForbidden"})
        doc = await read_json(request, MAX_POLICIES_BODY, '{"policies": [...]}')
        wanted = _policies_wanted(doc)
        archive = get_archive()
        actor = getattr(request.state, "token_actor", None) or principal.actor
        def left(path: Path, why: str) -> None:
            _log.warning("%s: a load-cache copy of weights now withheld was left in %s (%s)", model, path, why)

        changed = await run_in_threadpool(
            lambda: apply_policies(archive, model, wanted, principal, actor=actor, on_cache_left=left)
        )
        (found,) = await run_in_threadpool(lambda: list_policies(archive, model))
        answer = _public(found.policy)
        answer["snapshots"] = [_public(o) for o in found.overrides]
        answer["changed"] = [
            {"target": c.target, "before": _public_doc(c.before), "after": _public_doc(c.after)}
            for c in changed
        ]
        return JSONResponse(answer)

    @router.post(
        "/v1/access/{ns}/{name}/requests",
        status_code=201,
        responses=problem_responses(409),  # AccessNotRequestable: nothing of the model is gated
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": REQUEST_BODY}}}
        },
    )
    async def ask(ns: Namespace, name: Name, request: Request) -> Response:
        """Ask for a gated model's weights, with a free-text justification; an admin grants or denies it
        (`modelarc access decide`). Needs a token: the grant is made to it. A second request while one is
        pending answers that one (200). 409 (`AccessNotRequestable`) when nothing of the model is gated: a public
        model's weights need no grant, a restricted one's are for admin tokens whatever is granted."""
        principal = principal_of(request)
        if principal is None:
            return problem(
                401, "Unauthorized", "an access request needs a token", headers={"WWW-Authenticate": "Bearer"}
            )
        doc = await read_json(request, MAX_REQUEST_BODY, '{"justification": "..."}')
        text = doc.get("justification") if isinstance(doc, dict) else None
        if not isinstance(text, str):
            raise UsageError('expected {"justification": "..."}')
        archive = get_archive()

        def ask_once() -> tuple[Any, bool]:  # catalog work, off the event loop
            before = {r.id for r in list_requests(archive, principal=principal)}
            made = request_access(archive, f"{ns}/{name}", principal, text)
            return made, made.id in before

        made, known = await run_in_threadpool(ask_once)
        return JSONResponse(made.to_json(), status_code=200 if known else 201)

    @router.get("/v1/access/requests")
    def mine(request: Request) -> Any:
        """The calling token's own access requests, each with its status and, once decided, the decision."""
        principal = principal_of(request)
        if principal is None:
            return problem(
                401,
                "Unauthorized",
                "send the token that made the requests",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return [r.to_json() for r in list_requests(get_archive(), principal=principal)]

    return router
