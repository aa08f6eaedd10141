"""Access to weights over HTTP: who is asking, the one check every byte-serving route makes, and the request routes.

The rules are archive/access.py's; this module only asks them. A route that hands out the bytes of a snapshot's
files calls ``require_file_access``; ``/v1/objects/{id}`` calls ``require_object_access`` (an id may have been read
off a public manifest, so it is judged by every snapshot that uses the object). A refusal is ``AccessDeniedError``:
403 with ``X-Error-Code: GatedRepo`` everywhere, which unmodified huggingface_hub raises as ``GatedRepoError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modelarc.api.limits import Name, Namespace, read_json
from modelarc.api.problems import problem, problem_responses
from modelarc.archive.access import (
    AccessDecision,
    EffectivePolicy,
    is_withheld_entry,
    list_policies,
    list_requests,
    object_readable,
    read_decision,
    request_access,
)
from modelarc.archive.manifest import FileEntry
from modelarc.archive.remote.receive import reusable_objects
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import Principal
from modelarc.errors import AccessDeniedError, UsageError

MAX_REQUEST_BODY = 16 << 10  # a justification is at most 4000 characters (archive/access.py MAX_TEXT)
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
