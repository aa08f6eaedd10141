"""The server side of remote push/pull (client: ``modelarc.archive.remote.sync``; wire format: docs/FORMAT.md "Transfer").

Reads (which objects are missing, object bytes, snapshot offers, trusted keys) follow the server's read policy;
writes (object uploads, commits) need a token with the push scope: 401 without one, 403 with a weaker one. A push
token limited to namespaces (``token create --namespace``) is refused (403) a check or commit of a ref outside them;
object uploads are content-addressed and belong to no model, so they are not judged by namespace.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any, BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modelarc.api.access import (
    PUBLIC_BYTES_LIFETIME,
    bytes_cache_headers,
    principal_of,
    require_delta_base_access,
    require_object_access,
)
from modelarc.api.conditional import Precondition, precondition
from modelarc.api.limits import (
    OBJECT_ID_PATTERN,
    Name,
    Namespace,
    ObjectIdText,
    Revision,
    read_body,
    read_json,
    require_json,
)
from modelarc.api.problems import BAD_REQUEST, clip, problem, problem_responses
from modelarc.api.receiving import body_memory
from modelarc.api.sending import DownloadResponse, held_bytes, stored_object
from modelarc.archive.access import readable_objects, served_standalone
from modelarc.archive.remote import batch
from modelarc.archive.remote.commit import commit_offer
from modelarc.archive.remote.offers import MAX_OFFER_BYTES, SnapshotOffer, offer_for
from modelarc.archive.remote.receive import (
    MAX_CODEC_OVERHEAD,
    MAX_OBJECT_BYTES,
    check_push,
    lacking,
    receive_object,
)
from modelarc.archive.repository import Archive
from modelarc.archive.signing.keys import key_fingerprint
from modelarc.archive.streaming import ADMIT_SECONDS, ChunkDecoder, ResponseMemory
from modelarc.archive.tokens import Principal, allows
from modelarc.errors import (
    NotFoundError,
    ObjectMissingError,
    PayloadTooLargeError,
    UsageError,
)
from modelarc.registry.keys import PublishedKey
from modelarc.registry.refs import parse_ref, revision_ref
from modelarc.storage import ObjectId
from modelarc.storage.store import delta_base_of

MAX_MISSING_QUERY = (
    100_000  # for a token: a pusher's or puller's snapshot of many thousand chunks in one question
)
# anonymous: each id is a stat of the store (~10 us), so 100 000 cost a second of server CPU for no credential;
# the remote client asks in batches of 5 000 (archive/remote/client.py MISSING_BATCH), well inside both
MAX_MISSING_ANONYMOUS = 10_000
MAX_UPLOAD_BYTES = MAX_OBJECT_BYTES + MAX_CODEC_OVERHEAD


# a JSON id is 64 hex digits, two quotes and a comma: 67 bytes; 70 leaves room for the separator's spaces
MAX_MISSING_BODY = MAX_MISSING_QUERY * 70 + 64
MAX_MISSING_ANONYMOUS_BODY = MAX_MISSING_ANONYMOUS * 70 + 64
MISSING_QUERY: dict[str, Any] = {
    "type": "object",
    "required": ["ids"],
    "properties": {
        "ids": {
            "type": "array",
            "maxItems": MAX_MISSING_QUERY,
            "items": {"type": "string", "pattern": OBJECT_ID_PATTERN},
        }
    },
}
MISSING_ANSWER: dict[str, Any] = {
    "type": "object",
    "required": ["missing"],
    "properties": {"missing": {"type": "array", "items": {"type": "string", "pattern": OBJECT_ID_PATTERN}}},
}
_OBJECT_ID = re.compile(OBJECT_ID_PATTERN)
BATCH_QUERY: dict[str, Any] = {
    "type": "object",
    "required": ["ids"],
    "properties": {
        "ids": {
            "type": "array",
            "maxItems": batch.MAX_BATCH_IDS,
            "items": {"type": "string", "pattern": OBJECT_ID_PATTERN},
        }
    },
}
MAX_BATCH_BODY = batch.MAX_BATCH_IDS * 70 + 64


def parse_missing_query(body: bytes, limit: int = MAX_MISSING_QUERY) -> list[ObjectId]:
    """``{"ids": [hex, ...]}`` -> the ids; 400 names the first bad one by its index and quotes at most 80 characters."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser's stack
        raise UsageError('the body is not JSON; expected {"ids": [hex, ...]}') from None
    ids = doc.get("ids") if isinstance(doc, dict) else None
    if not isinstance(ids, list):
        raise UsageError('expected {"ids": [hex, ...]}')
    if len(ids) > limit:
        raise PayloadTooLargeError(f"ask about at most {limit} ids at once, not {len(ids)}")
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not _OBJECT_ID.fullmatch(value):
            raise UsageError(f"ids[{index}] is not an object id (64 lowercase hex digits): {clip(value)}")
    return [ObjectId(value) for value in ids]


# what the transfer routes answer besides success (docs/FORMAT.md, "Transfer between archives")
TRANSFER_ERRORS = problem_responses(400, 401, 403, 404, 409, 410, 411, 413, 415, 422, 503)


def _refuse_unless_push(request: Request) -> Response | None:
    scope = getattr(request.state, "token_scope", None)
    if scope is None or principal_of(request) is None:  # a push is judged by its token (archive/remote/commit.py)
        return problem(
            401,
            "Unauthorized",
            "pushing needs a bearer token with the push scope",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not allows(scope, "push"):
        return problem(403, "Forbidden", f"this token has the {scope} scope; pushing needs push")
    return None


def _refuse_outside_namespaces(request: Request, offer: SnapshotOffer) -> Response | None:
    """403 unless this token may push into the namespace of the offer's ref: a token limited to namespaces
    records snapshots, moves tags and sets policies only there (``_refuse_unless_push`` has already run)."""
    principal = principal_of(request)
    namespace = parse_ref(offer.ref).namespace
    if principal is None:  # cannot happen after _refuse_unless_push; refused all the same
        return problem(
            401, "Unauthorized", "pushing needs a bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if (why := principal.push_refusal(offer.ref, namespace)) is not None:
        return problem(403, "Forbidden", why, headers={"X-Error-Code": "NamespaceForbidden"})
    return None


async def _offer_body(request: Request) -> Any:
    """The JSON of a snapshot offer, read to at most ``MAX_OFFER_BYTES`` (413) before it is parsed (400)."""
    return await read_json(request, MAX_OFFER_BYTES, "a snapshot offer")


def _pusher(request: Request) -> str:
    """Who is pushing (token:<id>:<name>): the audit log's actor and the holder of the push's object leases."""
    return getattr(request.state, "token_actor", None) or "anonymous"


async def _frames(
    archive: Archive,
    ids: list[ObjectId],
    readable: set[str],
    principal: Principal | None,
    memory: ResponseMemory,
) -> AsyncGenerator[bytes | memoryview, None]:
    """The batch response: the magic, then a frame per id, one object at a time, each counted in the process's
    response memory from before it is read until the socket has taken it (api/sending.py). The magic goes out with
    the first frame, so that frame's wait for memory comes before the status: a 503 if the server is full."""
    lead, admit = batch.MAGIC, ADMIT_SECONDS
    for oid in ids:
        plan = await run_in_threadpool(_frame_plan, archive, oid, readable, principal)
        if isinstance(plan, bytes):  # a reason frame: small, and nothing read
            yield lead + plan
        else:
            body = (
                stored_object(
                    memory,
                    *plan,
                    prefix=lead + batch.pack_frame_header(oid, batch.OBJECT, plan[1]),
                    admit=admit,
                )
                if isinstance(plan, tuple)
                else held_bytes(
                    memory,
                    lead + batch.pack_frame_header(oid, batch.OBJECT, len(plan.body)) + plan.body,
                    admit=admit,
                )
            )
            async with aclosing(body):
                async for piece in body:
                    yield piece
        lead, admit = b"", None
    if lead:
        yield lead


@dataclasses.dataclass(frozen=True)
class _Standalone:
    body: bytes


def _frame_plan(
    archive: Archive, oid: ObjectId, readable: set[str], principal: Principal | None
) -> bytes | tuple[BinaryIO, int] | _Standalone:
    """What to send for ``oid`` (on the thread pool): a reason frame, the open stored object and its size, or the
    object rebuilt on its own (a delta whose base this caller may not read)."""
    try:
        fh, size = archive.store.open_stored(oid)
    except ObjectMissingError:
        return _reason_frame(oid, batch.MISSING, f"no object {oid} in this archive")
    if oid not in readable:  # that it exists is no secret (ids are in public manifests); its bytes may be
        fh.close()
        return _reason_frame(
            oid,
            batch.REFUSED,
            f"object {oid} belongs only to weights that are gated or restricted here (or to no snapshot): "
            "a token holding a grant for the model may read it",
        )
    if served_standalone(archive, oid, principal):
        fh.close()
        return _Standalone(archive.store.standalone(oid))
    return fh, size


def _reason_frame(oid: ObjectId, status: int, reason: str) -> bytes:
    text = reason.encode()[: batch.MAX_REASON_BYTES]
    return batch.pack_frame_header(oid, status, len(text)) + text


def transfer_router(get_archive: Callable[[], Archive], decoders: Callable[[], ChunkDecoder]) -> APIRouter:
    router = APIRouter(tags=["transfer"], responses=TRANSFER_ERRORS)

    @router.post(
        "/v1/objects/missing",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": MISSING_QUERY}}}
        },
        responses={200: {"content": {"application/json": {"schema": MISSING_ANSWER}}}},
    )
    async def missing(request: Request) -> Any:
        """Which of these object ids this archive lacks (or holds only a copy of that a scrub found damaged: a
        pusher's bytes replace it): the first step of every push and pull.

        Anyone with read access may ask, so the body is bounded before it is parsed (413: at most 10 000 ids
        without a token, 100 000 with one) and every id is checked (400 names the first bad one by index); the ids
        are then looked up off the event loop. The body must be ``application/json`` (415 otherwise).
        """
        require_json(request)
        # no token: a tenth of the ids, so one anonymous request costs a tenth of the CPU
        if principal_of(request) is None:
            body, limit = await read_body(request, MAX_MISSING_ANONYMOUS_BODY), MAX_MISSING_ANONYMOUS
        else:
            body, limit = await read_body(request, MAX_MISSING_BODY), MAX_MISSING_QUERY
        ids = parse_missing_query(body, limit)
        archive = get_archive()
        # only a caller that may push sends bytes that could replace an unreadable copy: the header reads are its
        principal = principal_of(request)
        pusher = principal is not None and allows(principal.scope, "push")
        return {"missing": await run_in_threadpool(lambda: lacking(archive, ids, read_headers=pusher))}

    @router.get(
        "/v1/objects/{object_id}",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def download(object_id: ObjectIdText, request: Request) -> Response:
        """An object as stored (header + encoded payload); the receiver decodes and hashes it. 404 if absent; 403
        (``GatedRepo``) if it belongs only to weights this caller may not read."""
        archive = get_archive()
        principal = principal_of(request)
        try:
            fh, size = archive.store.open_stored(ObjectId(object_id))
        except ObjectMissingError:
            # an id the archive never held (or gc removed) is unknown to the client, not a broken archive
            raise NotFoundError(f"no object {object_id} in this archive") from None
        try:  # that it exists is no secret (ids are in public manifests); its bytes may be
            require_object_access(archive, object_id, principal)
        except BaseException:
            fh.close()
            raise
        headers = {
            "ETag": f'"{object_id}"',
            # a shared cache may keep what anyone may read, for an hour (a later gating or withdrawal must reach
            # it); what a token read (perhaps gated weights) it may not. Read anonymously, the object is public.
            **bytes_cache_headers(principal, withheld=False, public=PUBLIC_BYTES_LIFETIME),
        }
        memory = decoders().memory
        standalone = served_standalone(archive, object_id, principal)  # a delta whose base it may not read
        if standalone:  # another representation, with its own tag: a cache holding the delta (from when its base
            # was readable) must not have it confirmed by a 304, or it keeps serving what gives the base away
            headers["ETag"] = f'W/"{object_id}-standalone"'
        # checked after the access check: a revalidation is a 304 without the bytes only for who may read them
        if precondition(request.headers, headers["ETag"]) is Precondition.NOT_MODIFIED:
            fh.close()
            return Response(status_code=304, headers=headers)
        if standalone:
            fh.close()
            body = archive.store.standalone(ObjectId(object_id))
            return DownloadResponse(
                held_bytes(memory, body),
                media_type="application/octet-stream",
                headers={**headers, "Content-Length": str(len(body))},
            )
        # held in the process's response memory from before it is read until the socket has taken it
        return DownloadResponse(
            stored_object(memory, fh, size),
            media_type="application/octet-stream",
            headers={**headers, "Content-Length": str(size)},
        )

    @router.post(
        "/v1/objects/batch",
        response_class=Response,
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": BATCH_QUERY}}}},
        responses={200: {"content": {batch.MEDIA_TYPE: {}}}},
    )
    async def download_batch(request: Request) -> Response:
        """Several objects as stored, in one response (framing: docs/FORMAT.md "Transfer"): what a puller asks
        instead of one ``GET /v1/objects/{id}`` per chunk. Each object is judged as that route judges it: one
        missing here, or readable by this caller only as part of weights it may not read, is a frame saying so
        (the others are still sent); a delta whose base the caller may not read is sent on its own."""
        require_json(request)
        ids = parse_missing_query(await read_body(request, MAX_BATCH_BODY), batch.MAX_BATCH_IDS)
        archive = get_archive()
        principal = principal_of(request)
        readable = await run_in_threadpool(lambda: readable_objects(archive, ids, principal))
        return DownloadResponse(
            _frames(archive, ids, readable, principal, decoders().memory),
            media_type=batch.MEDIA_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    @router.put("/v1/objects/{object_id}", status_code=201)
    async def upload(object_id: ObjectIdText, request: Request) -> Response:
        """Store one object; refused unless its bytes decode to exactly ``object_id``. Idempotent.

        The body is held whole (it must hash to its id before a byte is written), counted in the process's memory
        for request bodies until it is stored (503 when that is full); a client that stops sending is answered 408.
        """
        if (refused := _refuse_unless_push(request)) is not None:
            return refused
        oid = ObjectId(object_id)
        declared = request.headers.get("content-length")
        if declared is None or not (declared.isascii() and declared.isdigit()):
            return problem(411, "Length Required", "uploads must declare their Content-Length")
        if int(declared) > MAX_UPLOAD_BYTES:
            return problem(413, "Payload Too Large", f"an object may be at most {MAX_UPLOAD_BYTES} bytes")
        async with body_memory(request, int(declared)):
            body = bytearray()
            async for block in request.stream():
                body += block
                if len(body) > int(declared):
                    raise PayloadTooLargeError(f"upload of {oid} is longer than its declared {declared} bytes")
            if len(body) != int(declared):
                return problem(
                    400,
                    "Bad Request",
                    f"upload of {oid} ended after {len(body)} of {declared} bytes",
                    headers=BAD_REQUEST,
                )
            archive = get_archive()
            added = not archive.store.has(oid)
            holder = _pusher(request)
            if (base := delta_base_of(oid, body)) is not None:
                principal = principal_of(request)
                await run_in_threadpool(lambda: require_delta_base_access(archive, oid, base, principal, holder))
            await run_in_threadpool(lambda: receive_object(archive, oid, body, holder=holder, stored=not added))
        return JSONResponse({"id": oid, "added": added}, status_code=201 if added else 200)

    @router.get("/v1/transfer/snapshots/{ns}/{name}/{rev}")
    def offer(ns: Namespace, name: Name, rev: Revision) -> Any:
        """What a puller needs besides the objects: signature bundle ids, provenance, lineage."""
        snapshot_offer, _manifest = offer_for(get_archive(), revision_ref(ns, name, rev))
        return snapshot_offer.to_json()

    @router.post("/v1/transfer/commit", status_code=201)
    async def commit(request: Request) -> Response:
        """Record a pushed snapshot and move its tag; 409 lists missing objects, 422 a signature problem."""
        if (refused := _refuse_unless_push(request)) is not None:
            return refused
        doc = await _offer_body(request)
        snapshot_offer = SnapshotOffer.from_json(doc)
        if (refused := _refuse_outside_namespaces(request, snapshot_offer)) is not None:
            return refused  # before anything is looked up, recorded or moved
        archive = get_archive()
        actor = _pusher(request)  # who pushed, in the audit log
        pusher = principal_of(request)
        result = await run_in_threadpool(
            lambda: commit_offer(archive, snapshot_offer, actor=actor, holder=actor, pusher=pusher)
        )
        return JSONResponse(result.to_json(), status_code=201 if result.new_snapshot else 200)

    @router.post("/v1/transfer/check")
    async def check(request: Request) -> Response:
        """Before any weight moves: is the signer trusted here, is the manifest sane, which objects are missing?

        The pusher asks this first, with nothing sent: a ref outside its token's namespaces is refused (403) with no
        object left here; else the manifest, bundles and data manifests missing here are listed (409), it uploads
        them and asks again; a snapshot signed by a key the server does not trust is refused (422) before a single
        weight object is sent. Objects already here are leased
        to the pusher until its commit, so gc cannot take them in between.
        """
        if (refused := _refuse_unless_push(request)) is not None:
            return refused
        doc = await _offer_body(request)
        snapshot_offer = SnapshotOffer.from_json(doc)
        if (refused := _refuse_outside_namespaces(request, snapshot_offer)) is not None:
            return refused  # before any weight is sent, and before any object is leased to this pusher
        archive = get_archive()
        holder = _pusher(request)
        principal = principal_of(request)
        missing = await run_in_threadpool(lambda: check_push(archive, snapshot_offer, holder, principal))
        return JSONResponse({"snapshot": snapshot_offer.snapshot, "missing": missing})

    @router.get("/v1/transfer/keys")
    def keys() -> Any:
        """The public keys this archive trusts, so a client can choose to trust the same signers."""
        archive = get_archive()
        known = {k.fingerprint: k for k in archive.list_keys()}
        return [
            PublishedKey(**dataclasses.asdict(info), public_pem=pem.decode()).to_json()
            for pem in archive.trusted_pems()
            if (info := known.get(key_fingerprint(pem))) is not None
        ]

    return router
