"""problem+json (RFC 9457): the one body every API error has, how it is declared in OpenAPI, and how it quotes input.

An error may quote what the client sent, so the client can see what was refused; ``clip`` bounds every such quote,
so a hostile request can never make the server echo (or hold, or log) more than a few dozen characters of its own
input. Every handler in api/app.py passes its detail through ``bounded_detail`` as a last guard.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

from modelarc.errors import ModelarcError, UsageError, http_error

PROBLEM_MEDIA_TYPE = "application/problem+json"
MAX_ECHO = 80  # characters of one client-supplied value an error may quote
MAX_DETAIL = 500  # characters of a whole detail: messages we write are shorter; anything longer quotes input

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "maxLength": MAX_DETAIL + 40},
    },
}


# the code a malformed request's 400 carries where no ModelarcError is raised (FastAPI's validation, the NUL
# refusal, a short upload): the one table's, as for a UsageError (modelarc/errors.py HTTP_ERRORS)
BAD_REQUEST = {"X-Error-Code": http_error(UsageError(""))[1]}


def clip(value: object, limit: int = MAX_ECHO) -> str:
    """``repr`` of a client-supplied value, cut to ``limit`` characters with a note of how long it was.

    >>> clip("x" * 1000, 4)
    "'xx… (1002 characters)"
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


def bounded_detail(detail: object) -> str:
    """A detail of at most MAX_DETAIL characters (plus a short note), whatever produced it."""
    text = str(detail)
    if len(text) <= MAX_DETAIL:
        return text
    return f"{text[:MAX_DETAIL]}… ({len(text)} characters)"


def problem(
    status: int, title: str, detail: object, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The problem+json answer; ``detail`` is bounded here, so no caller can echo unbounded input.

    ``extra`` members are ours, not the client's (e.g. the ``missing`` object ids of a 409).
    """
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": bounded_detail(detail), **extra},
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries declaring problem+json for these statuses (for a router or one route).

    Declaring 422 ourselves also keeps FastAPI from documenting its own validation body, which this API never sends
    (malformed input is a 400 problem, see api/app.py).
    """
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


def status_for(exc: ModelarcError) -> int:
    """The HTTP status of an expected failure: the one table, modelarc/errors.py ``HTTP_ERRORS``."""
    return http_error(exc)[0]


# The Hub routes (api/hub.py, api/hub_browse.py) answer in the Hub's own terms, so huggingface_hub raises its own
# typed errors: a not-found is 404 with the Hub's X-Error-Code (RepositoryNotFoundError, RevisionNotFoundError,
# EntryNotFoundError) and a {"error": ...} body; a withdrawn snapshot is our 410 with the header the Hub sends for a
# disabled repository (DisabledRepoError). The status still comes from the one table (HTTP_ERRORS); any other
# failure is the same problem+json as elsewhere.
HUB_TAG = "huggingface hub"  # the OpenAPI tag of every Hub route: the exception handler tells them apart by it
HUB_NOT_FOUND = {
    "ModelNotFound": "RepoNotFound",
    "TagNotFound": "RevisionNotFound",
    "SnapshotNotFound": "RevisionNotFound",
    "NotFound": "EntryNotFound",
}
HUB_DISABLED = "Access to this resource is disabled."  # huggingface_hub matches this text (X-Error-Message)


def hub_error(exc: ModelarcError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The Hub routes' answer to an expected failure (see above); ``headers`` are added (e.g. X-Repo-Commit)."""
    status, code = http_error(exc)
    if status == 404:
        out = {"X-Error-Code": HUB_NOT_FOUND.get(code, "EntryNotFound")}
    elif code == "GatedRepo":  # huggingface_hub raises GatedRepoError on this code, whatever the status
        out = {"X-Error-Code": code}
    elif status == 410:
        out = {"X-Error-Code": code, "X-Error-Message": HUB_DISABLED}
    else:
        return problem(status, type(exc).__name__, exc, headers={"X-Error-Code": code, **(headers or {})})
    return JSONResponse({"error": bounded_detail(exc)}, status_code=status, headers={**out, **(headers or {})})
