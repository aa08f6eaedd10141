"""The JSON catalog API under /v1: models, snapshots (manifest, files, tensors), tags, datasets, lineage, search.

Conventions (docs/API.md): list endpoints take ``limit`` (1-1000) and an opaque ``cursor``; when more rows exist the
response carries ``Link: <...>; rel="next"``. Every GET answers with a strong ``ETag`` (the snapshot id for
content-addressed resources, which are also marked immutable; otherwise a hash of the body) and honours
``If-None-Match`` with 304. Errors are problem+json, mapped in api/app.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from modelarc.api.conditional import weak_match
from modelarc.api.limits import Count, Date, Name, Namespace, PathText, Revision, Text
from modelarc.api.problems import problem_responses
from modelarc.archive.catalog import views as views
from modelarc.archive.catalog.search import build_filters, search
from modelarc.archive.provenance.lineage import lineage_tree
from modelarc.archive.repository import Archive
from modelarc.errors import UsageError
from modelarc.registry.refs import revision_ref

IMMUTABLE = "public, max-age=31536000, immutable"
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page.")]
Cursor = Annotated[
    str | None, Query(max_length=100, description="Opaque; from the previous page's Link rel=next.")
]
# every catalog route may answer these; 422: stored bytes failed their check (the request itself was fine)
CATALOG_ERRORS = {
    304: {"description": "Not Modified (If-None-Match)"},
    **problem_responses(400, 401, 404, 410, 422),
}


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def cursor_offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset = doc["o"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise UsageError("invalid cursor; use the Link rel=next URL of the previous page") from None
    if type(offset) is not int or offset < 0 or offset > 10**9:  # a JSON true is no position (bool is an int)
        raise UsageError("invalid cursor; use the Link rel=next URL of the previous page")
    return offset


def respond(
    request: Request,
    payload: Any = None,
    *,
    body: bytes | None = None,
    etag: str | None = None,
    immutable: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    """JSON with a strong ETag; 304 when the client already has this representation."""
    if body is None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()
    tag = f'"{etag or hashlib.sha256(body).hexdigest()[:40]}"'
    out = {"ETag": tag, "Cache-Control": IMMUTABLE if immutable else "no-cache", **(headers or {})}
    wanted = request.headers.get("if-none-match")
    if wanted is not None and weak_match(wanted, tag):
        return Response(status_code=304, headers=out)
    return Response(body, media_type="application/json", headers=out)


def paged(request: Request, rows: Sequence[JsonRow], limit: int, offset: int) -> Response:
    """``rows`` holds up to limit+1 items; the extra one only says a next page exists."""
    more = len(rows) > limit
    return page_response(request, rows[:limit], encode_cursor(offset + limit) if more else None)


def page_response(request: Request, rows: Sequence[JsonRow], next_cursor: str | None) -> Response:
    """A page as a JSON array, with ``Link: <this URL with cursor=next_cursor>; rel="next"`` unless it is the last."""
    headers = {}
    if next_cursor is not None:
        nxt = request.url.include_query_params(cursor=next_cursor)
        headers["Link"] = f'<{nxt}>; rel="next"'
    return respond(request, [r.to_json() for r in rows], headers=headers)


class JsonRow(Protocol):
    """A result row that knows its one JSON form (the CLI's ``--json`` prints the same)."""

    def to_json(self) -> dict[str, Any]: ...


def v1_router(get_archive: Callable[[], Archive]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["catalog"], responses=CATALOG_ERRORS)

    @router.get("/models")
    def models(request: Request, q: Text = None, limit: Limit = 100, cursor: Cursor = None) -> Response:
        """Models by name; ``q`` matches part of ``namespace/name``."""
        offset = cursor_offset(cursor)
        rows = views.list_models(get_archive(), name_contains=q, limit=limit + 1, offset=offset)
        return paged(request, rows, limit, offset)

    @router.get("/models/{ns}/{name}")
    def model(request: Request, ns: Namespace, name: Name) -> Response:
        """Every snapshot of a model with its tags, and the history of tag moves."""
        return respond(request, get_archive().log(f"{ns}/{name}").to_json())

    @router.get("/models/{ns}/{name}/tags")
    def tags(request: Request, ns: Namespace, name: Name) -> Response:
        """Where each tag points now: ``{tag: snapshot id}``."""
        return respond(request, get_archive().log(f"{ns}/{name}").tags())

    @router.get("/snapshots")
    def snapshots(
        request: Request,
        cutoff_before: Date = None,
        cutoff_after: Date = None,
        arch: Text = None,
        min_params: Count = None,
        max_params: Count = None,
        trained_on: Text = None,
        license: Text = None,
        descendant_of: Text = None,
        as_of: Date = None,
        name: Text = None,
        order: Literal["newest", "cutoff"] = "newest",
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Response:
        """Search with the filters of ``modelarc ls`` (same names, same meaning; see docs/PROVENANCE.md)."""
        archive = get_archive()
        offset = cursor_offset(cursor)
        filters = build_filters(
            archive,
            cutoff_before=cutoff_before,
            cutoff_after=cutoff_after,
            arch=arch,
            min_params=min_params,
            max_params=max_params,
            trained_on=trained_on,
            license=license,
            descendant_of=descendant_of,
            as_of=as_of,
            name=name,
            limit=limit + 1,
            offset=offset,
        )
        return paged(request, search(archive, filters, order=order), limit, offset)

    @router.get("/snapshots/{ns}/{name}/{rev}")
    def snapshot(request: Request, ns: Namespace, name: Name, rev: Revision) -> Response:
        """Everything ``modelarc show`` says: architecture, parameters, dtypes, cutoff, datasets, lineage, signatures."""
        return respond(request, get_archive().show(revision_ref(ns, name, rev)).to_json())

    @router.get("/snapshots/{ns}/{name}/{rev}/manifest")
    def manifest(request: Request, ns: Namespace, name: Name, rev: Revision) -> Response:
        """The canonical manifest; its sha256 is the snapshot id, so clients can check it themselves."""
        ref = revision_ref(ns, name, rev)
        digest, data = views.snapshot_manifest_bytes(get_archive(), ref)
        return respond(request, body=data, etag=digest, immutable=ref.digest is not None)

    @router.get("/snapshots/{ns}/{name}/{rev}/files")
    def files(request: Request, ns: Namespace, name: Name, rev: Revision) -> Response:
        files = views.snapshot_files(get_archive(), revision_ref(ns, name, rev))
        return respond(request, [f.to_json() for f in files])

    @router.get("/snapshots/{ns}/{name}/{rev}/tensors")
    def tensors(
        request: Request, ns: Namespace, name: Name, rev: Revision, limit: Limit = 100, cursor: Cursor = None
    ) -> Response:
        """Tensors in file order: name, file, its format, dtype, shape, byte offset and length, digest."""
        offset = cursor_offset(cursor)
        rows = views.snapshot_tensors(
            get_archive(), revision_ref(ns, name, rev), limit=limit + 1, offset=offset
        )
        return paged(request, rows, limit, offset)

    @router.get("/lineage/{ns}/{name}/{rev}")
    def lineage(request: Request, ns: Namespace, name: Name, rev: Revision) -> Response:
        """Declared ancestors and descendants, each with its relation."""
        return respond(request, lineage_tree(get_archive(), revision_ref(ns, name, rev)).to_json())

    @router.get("/datasets")
    def datasets(request: Request, limit: Limit = 100, cursor: Cursor = None) -> Response:
        """Datasets by name, with how many snapshots used each. The cursor is a position by name (keyset): a
        dataset added while paging never shifts a page."""
        page = views.list_datasets(get_archive(), limit=limit, cursor=cursor)
        return page_response(request, page.rows, page.next_cursor)

    @router.get("/datasets/{name:anytext}")
    def dataset(request: Request, name: PathText) -> Response:
        """Every version of the dataset, with the snapshots trained on it. A name may hold slashes, as Hugging Face
        dataset ids do (``allenai/c4``): the lookup is by name in the catalog, never a file path."""
        return respond(request, [v.to_json() for v in views.dataset(get_archive(), name)])

    @router.get("/stats")
    def stats(request: Request) -> Response:
        return respond(request, get_archive().stats().to_json())

    return router
