"""The FastAPI app: a small JSON API under /v1 and the Hugging Face Hub-compatible read routes.

The API layer only parses, calls the archive and formats; errors become problem+json in one place.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from modelarc import __version__
from modelarc.api.access import access_router
from modelarc.api.health import HEALTH_PATHS, health_router
from modelarc.api.html import html_router
from modelarc.api.hub import hub_router
from modelarc.api.hub_browse import hub_browse_router
from modelarc.api.limits import host_problem, url_text_problem
from modelarc.api.problems import BAD_REQUEST, HUB_TAG, MAX_ECHO, hub_error, problem
from modelarc.api.public_url import PublicUrl
from modelarc.api.receiving import RECEIVE_FAILED, RECEIVING, BodyLimits, guarded_receive
from modelarc.api.send_watch import SendWatch, reset_connection
from modelarc.api.sending import HEAD_ONLY
from modelarc.api.transfer import transfer_router
from modelarc.api.v1 import v1_router
from modelarc.archive.repository import Archive
from modelarc.archive.streaming import ChunkDecoder, ResponseMemory
from modelarc.archive.tokens import allows, token_principal
from modelarc.errors import (
    MissingObjectsError,
    ModelarcError,
    RequestTimeoutError,
    ServerBusyError,
    http_error,
)

OPEN_PATHS = ("/docs", "/openapi.json")  # the API's description, not the archive's content
_log = logging.getLogger("uvicorn.error")  # the server's own log: where `modelarc serve` prints what happened


def create_app(
    get_archive: Callable[[], Archive],
    *,
    anonymous_read: bool = True,
    decoder: ChunkDecoder | None = None,
    public_url: PublicUrl | None = None,
) -> ArchiveApp:
    """``anonymous_read=False`` requires a bearer token with at least the read scope on every data route.

    ``public_url``: the URLs the server hands out name it, never the request's Host (api/public_url.py).

    ``decoder`` decodes the chunks of every file download; by default the app makes its own on the first download,
    sized by the archive's ``decode_slots``, and stops it at shutdown.
    """
    decoders = ServerDecoder(get_archive, decoder)

    @functools.cache
    def send_timeout() -> tuple[float, int]:
        settings = get_archive().settings
        return settings.send_timeout, settings.send_min_rate

    @functools.cache
    def body_limits() -> BodyLimits:
        settings = get_archive().settings
        memory = ResponseMemory(settings.receive_memory, "request bodies in flight")
        return BodyLimits(settings.receive_timeout, settings.receive_min_rate, memory)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        decoders.close()

    app = ArchiveApp(
        send_timeout,
        body_limits,
        title="modelarc",
        version=__version__,
        description="An archive for machine-learning models.",
        # Swagger UI and ReDoc load their scripts from a CDN: /docs is the server's own page (api/api_reference.py)
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # before any route or token lookup sees the text
        if (refused := host_problem(request) or url_text_problem(request)) is not None:
            return problem(400, "Bad Request", refused, headers=BAD_REQUEST)
        if public_url is not None:  # checked above all the same: a malformed Host is a malformed request
            public_url.apply(request.scope)
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
        answer = _failure_answer(request, exc)
        if answer.status_code in (401, 403):  # another token gets another answer at this URL (docs/API.md)
            answer.headers["Vary"] = "Authorization"
        return answer

    def _failure_answer(request: Request, exc: ModelarcError) -> Response:
        if HUB_TAG in getattr(request.scope.get("route"), "tags", ()):
            # the Hub's own codes, so huggingface_hub raises its typed errors
            return hub_error(exc, _extra_headers(exc))
        status, code = http_error(exc)  # the one table, modelarc/errors.py HTTP_ERRORS
        extra = (
            {"snapshot": exc.snapshot, "missing": exc.missing} if isinstance(exc, MissingObjectsError) else {}
        )
        return problem(
            status, type(exc).__name__, exc, headers={"X-Error-Code": code, **_extra_headers(exc)}, **extra
        )

    @app.exception_handler(ClientDisconnect)
    def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        if (timed_out := request.scope.get(RECEIVE_FAILED)) is not None:  # too slow, not gone: 408 (api/receiving.py)
            return expected_failure(request, timed_out)
        # the client closed the connection before sending the whole body: nobody reads an answer, and a traceback
        # per aborted upload would let anyone flood the log; one line says it happened
        _log.info("client %s disconnected before sending the body of %s %s", _peer(request), request.method,
                  request.url.path[:MAX_ECHO])  # fmt: skip
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        # the code of every other malformed input (docs/API.md "Errors"): a client tells them apart by it
        return problem(400, "RequestValidationError", validation_detail(exc), headers=BAD_REQUEST)

    @app.exception_handler(StarletteHTTPException)
    def http_exception(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 304:
            return Response(status_code=304, headers=exc.headers)
        return problem(exc.status_code, "HTTPException", exc.detail, headers=exc.headers)

    app.include_router(health_router(get_archive))
    app.include_router(v1_router(get_archive))
    app.include_router(hub_router(get_archive, decoders))
    app.include_router(hub_browse_router(get_archive))
    app.include_router(transfer_router(get_archive, decoders))
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
                settings = self._get_archive().settings
                self._decoder = ChunkDecoder(settings.decode_slots, ResponseMemory(settings.send_memory))
            return self._decoder

    def close(self) -> None:
        """At server shutdown: stop the threads of a decoder made here (one passed in belongs to the caller)."""
        with self._lock:
            if self._owned and self._decoder is not None:
                self._decoder.close()
                self._decoder = None


NOSNIFF = (b"x-content-type-options", b"nosniff")


def _with_head_allowed(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A 405's ``Allow`` with HEAD beside GET: this app answers HEAD wherever GET is routed (``ArchiveApp``), which
    the router's own list (the methods routes declare) does not know."""
    out = []
    for name, value in headers:
        if name.lower() == b"allow":
            methods = [m.strip() for m in value.split(b",") if m.strip()]
            if b"GET" in methods and b"HEAD" not in methods:
                value = b", ".join([*methods, b"HEAD"])
        out.append((name, value))
    return out


class ArchiveApp(FastAPI):
    """The FastAPI app, with what every response of it gets, at the one place that sees the server's own ``send``:

    - ``X-Content-Type-Options: nosniff``, so a browser never guesses a type (a file served as octet-stream stays
      a download, a JSON error never runs as a script);
    - HEAD wherever GET is routed (FastAPI routes only the methods declared; Starlette's own routes add HEAD to
      GET): the GET route answers, marked ``HEAD_ONLY`` so a download starts no body, and the server sends the
      headers alone;
    - a send timeout: a client that takes less than the minimum rate over ``send_timeout()`` seconds is dropped and its
      connection aborted (not closed, which would wait for the client to read what the socket holds), so the
      memory its response held goes back (archive/streaming.py ``ResponseMemory``);
    - a receive timeout and a memory budget for request bodies (``body_limits()``, api/receiving.py): a client that
      stops sending its body is answered 408 and the half-read body let go.
    """

    def __init__(
        self,
        send_timeout: Callable[[], tuple[float, int]],
        body_limits: Callable[[], BodyLimits],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._send_timeout = send_timeout
        self._body_limits = body_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        timeout, min_rate = self._send_timeout()
        limits = self._body_limits()
        scope[RECEIVING] = limits  # for the routes that read a body (api/receiving.py ``body_memory``)
        dropped = False
        started = [False]  # the response has begun: the body is no longer waited for
        watch: SendWatch | None = None  # made with the body's first piece, for all of them

        async def guarded(message: Message) -> None:
            nonlocal dropped, watch
            if message["type"] == "http.response.start":
                started[0] = True
                headers = [*message.get("headers", ()), NOSNIFF]
                if message.get("status") == 405:
                    headers = _with_head_allowed(headers)
                message = {**message, "headers": headers}
            if message["type"] == "http.response.body" and watch is None:
                transport = _transport_of(send)
                if transport is not None:
                    watch = SendWatch(transport, timeout, min_rate)
            if message["type"] == "http.response.body" and watch is not None:
                stalled = await watch.send(send, message)
            else:
                with anyio.move_on_after(timeout) as waited:
                    await send(message)
                stalled = waited.cancelled_caught
            if stalled:
                dropped = True
                _abort_connection(send)
                raise ClientStoppedReading(f"the client took less than {min_rate} B/s for {timeout:g} seconds")

        try:
            await super().__call__(
                self._head_as_get(scope), guarded_receive(receive, scope, limits, started), guarded
            )
        except Exception:
            if not dropped:
                raise
            await anyio.sleep(
                0
            )  # the server sees the connection lost before this app returns: nothing to log
        finally:
            if watch is not None:
                watch.close()

    def _head_as_get(self, scope: Scope) -> Scope:
        if scope["method"] != "HEAD" or self._routed(scope):
            return scope
        as_get = {**scope, "method": "GET", HEAD_ONLY: True}  # a copy: the server still knows it was a HEAD
        return as_get if self._routed(as_get) else scope

    def _routed(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.router.routes)


class ClientStoppedReading(Exception):
    """Raised through the app when the send timeout dropped a client; ``ArchiveApp`` ends the request quietly."""


def _transport_of(send: Send) -> asyncio.Transport | None:
    """The connection's transport: uvicorn's ``send`` is a method of the request's cycle, which holds it."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None


def _abort_connection(send: Send) -> None:
    """Drop the connection now, with whatever its socket buffer holds. uvicorn's ``send`` is a method of the
    request's cycle, which holds the transport; under another server nothing is aborted and the response just
    ends (its body generator is closed all the same). The lingering is set to zero first, so the socket is reset.
    """
    transport = _transport_of(send)
    if transport is not None:
        reset_connection(transport)


def _extra_headers(exc: ModelarcError) -> dict[str, str]:
    """``Retry-After`` on a 503 for a full server; ``Connection: close`` on a 408, so the server reads nothing more
    of a body it gave up on (uvicorn closes the connection once the answer is sent)."""
    if isinstance(exc, ServerBusyError):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, RequestTimeoutError):
        return {"Connection": "close"}
    return {}


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
