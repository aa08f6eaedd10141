"""Liveness and readiness, for the load balancer or orchestrator in front of several servers (docs/DEPLOY.md).

``/healthz`` says the process answers, and nothing else: restarting a server because the database is down would
not bring the database back. ``/readyz`` says this server can do its job right now: the catalog answers and is at
the schema this code expects, and the store answers a listing; a server that is not ready is taken out of rotation.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from modelarc.archive.health import readiness
from modelarc.archive.repository import Archive

HEALTH_PATHS = ("/healthz", "/readyz")


def health_router(get_archive: Callable[[], Archive]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: the catalog and the store answer",
        responses={503: {"description": "the catalog or the store does not answer"}},
    )
    def readyz() -> Response:
        checks = readiness(get_archive())
        ready = all(ok for ok, _detail in checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()},
        }
        return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})

    return router
