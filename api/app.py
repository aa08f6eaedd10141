"""The FastAPI app: a small JSON API under /v1 and the Hugging Face Hub-compatible read routes.

The API layer only parses, calls the archive and formats; errors become problem+json in one place.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from modelarc import __version__
from modelarc.api.access import access_router
from modelarc.api.health import HEALTH_PATHS, health_router
from modelarc.api.html import html_router
from modelarc.api.hub import hub_router
from modelarc.api.hub_browse import hub_browse_router
from modelarc.api.limits import url_text_problem
from modelarc.api.problems import HUB_TAG, MAX_ECHO, hub_error, problem
from modelarc.api.transfer import transfer_router
from modelarc.api.v1 import v1_router
from modelarc.archive.repository import Archive
from modelarc.archive.streaming import ChunkDecoder
from modelarc.archive.tokens import allows, token_principal
from modelarc.errors import (
    MissingObjectsError,
    ModelarcError,
    http_error,
)

OPEN_PATHS = ("/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")
_log = logging.getLogger("uvicorn.error")  # the server's own log: where `modelarc serve` prints what happened


def create_app(
    get_archive: Callable[[], Archive], *, anonymous_read: bool = True, decoder: ChunkDecoder | None = None
) -> FastAPI:
    """``anonymous_read=False`` requires a bearer token with at least the read scope on every data route.

    ``decoder`` decodes the chunks of every file download; by default the app makes its own on the first download,
    sized by the archive's ``decode_slots``, and stops it at shutdown.
    """
    decoders = ServerDecoder(get_archive, decoder)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        decoders.close()

    app = FastAPI(
        title="modelarc",
        version=__version__,
        description="An archive for machine-learning models.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # before any route or token lookup sees the text
        if (refused := url_text_problem(request)) is not None:
            return problem(400, "Bad Request", refused)
        if request.url.path in OPEN_PATHS or request.url.path in HEALTH_PATHS:
            return await call_next(request)
        header = request.headers.get("authorization", "")
        scope = None
        request.state.principal = None  # anonymous, as the access rules see it (archive/access.py)
        if header:
            kind, _, token = header.partition(" ")
            found = token_principal(get_archive(), token.strip()) if kind.lower() == "bearer" else None
            if found is None:  # a wrong token is refused even when anonymous reads are allowed
                return _unauthorized("invalid or revoked token")
            scope, request.state.token_actor = found.scope, found.actor
            request.state.principal = found  # with the namespaces it may push to (api/transfer.py)
        if not anonymous_read and not allows(scope, "read"):
            return _unauthorized("this archive requires a token with the read scope")
        request.state.token_scope = scope  # routes that write check it (push, admin)
        return await call_next(request)

    @app.exception_handler(ModelarcError)
    def expected_failure(request: Request, exc: ModelarcError) -> Response:
        if HUB_TAG in getattr(request.scope.get("route"), "tags", ()):
            return hub_error(exc)  # the Hub's own codes, so huggingface_hub raises its typed errors
        status, code = http_error(exc)  # the one table, modelarc/errors.py HTTP_ERRORS
        extra = (
            {"snapshot": exc.snapshot, "missing": exc.missing} if isinstance(exc, MissingObjectsError) else {}
        )
        return problem(status, type(exc).__name__, exc, headers={"X-Error-Code": code}, **extra)

    @app.exception_handler(ClientDisconnect)
    def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # the client closed the connection before sending the whole body: nobody reads an answer, and a traceback
        # per aborted upload would let anyone flood the log; one line says it happened
        _log.info("client %s disconnected before sending the body of %s %s", _peer(request), request.method,
                  request.url.path[:MAX_ECHO])  # fmt: skip
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        return problem(400, "RequestValidationError", validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    def http_exception(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 304:
            return Response(status_code=304, headers=exc.headers)
        return problem(exc.status_code, "HTTPException", exc.detail, headers=exc.headers)

    app.include_router(health_router(get_archive))
    app.include_router(v1_router(get_archive))
    app.include_router(hub_router(get_archive, decoders))
    app.include_router(hub_browse_router(get_archive))
    app.include_router(transfer_router(get_archive))
    app.include_router(access_router(get_archive))
    app.include_router(html_router(get_archive))  # last: "/" and /ui/ only
    return app


class ServerDecoder:
    """The server's one ``ChunkDecoder``, made on the first download with the archive's ``decode_slots``.

    Lazily, because an app can be built before (or without) an archive to serve. Every server process (each worker
    of ``serve --workers N`` too) builds one app, so the cap is per process: N workers decode up to N x slots.
    """

    def __init__(self, get_archive: Callable[[], Archive], decoder: ChunkDecoder | None = None) -> None:
        self._get_archive = get_archive
        self._decoder = decoder
        self._owned = decoder is None
        self._lock = threading.Lock()

    def __call__(self) -> ChunkDecoder:
        with self._lock:
            if self._decoder is None:
                self._decoder = ChunkDecoder(self._get_archive().settings.decode_slots)
            return self._decoder

    def close(self) -> None:
        """At server shutdown: stop the threads of a decoder made here (one passed in belongs to the caller)."""
        with self._lock:
            if self._owned and self._decoder is not None:
                self._decoder.close()
                self._decoder = None


def validation_detail(exc: RequestValidationError) -> str:
    """Where and why the first invalid parameter failed; never its value (pydantic keeps it as ``input``).

    A location can hold client-chosen text too (a JSON key), so each part is clipped.
    """
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part)[:MAX_ECHO] for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid request')}"


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def _unauthorized(detail: str) -> Response:
    return problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
