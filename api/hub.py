"""Hugging Face Hub-compatible download routes, so unmodified huggingface_hub and transformers can load archived models.

With ``HF_ENDPOINT=http://127.0.0.1:8470``: ``HEAD``/``GET /{ns}/{name}/resolve/{rev}/{path}`` with
``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``/``X-Linked-Size`` for weight files, ``Content-Length`` and ``Range``.
A revision is a tag, ``main`` (the ``main`` tag, else ``latest``), a snapshot id or prefix, or the 40-hex commit id
derived from a snapshot id (archive/catalog/revisions.py). Files stream from the store, verified chunk by chunk; no
Xet. Model info, listings, refs, commits and trees are in api/hub_browse.py.
Each download holds at most two decoded chunks and decodes only as its client reads; the server's ``ChunkDecoder``
caps the chunks decoded at once across all downloads (archive/streaming.py, docs/API.md "Serving many clients").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from modelarc.api.access import bytes_cache_headers, principal_of, require_file_access
from modelarc.api.conditional import Precondition, precondition, range_applies
from modelarc.api.limits import MAX_TEXT
from modelarc.api.problems import HUB_TAG, clip, problem, problem_responses
from modelarc.api.sending import DownloadResponse
from modelarc.archive.catalog.revisions import commit_id, refuse_withdrawn, resolve_revision
from modelarc.archive.manifest import SnapshotManifest, check_relative_path
from modelarc.archive.repository import Archive
from modelarc.archive.streaming import ChunkDecoder
from modelarc.errors import UsageError
from modelarc.registry.refs import SnapshotId

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".onnx", ".msgpack", ".model")
# RFC 9110 14.1: "All range unit names are case-insensitive" (ASCII case: no other letter folds to an ASCII one
# here). Spaces or tabs after the "=" are taken too, a leniency: the grammar has none there, but a client that
# sends them means the same range.
_RANGE = re.compile(r"bytes=[ \t]*([0-9]*)-([0-9]*)", re.IGNORECASE | re.ASCII)
_MAX_POSITION_DIGITS = 19  # 2^63 has 19 digits: a longer position lies beyond any file we can hold


class RangeNotSatisfiable(Exception):
    """A valid single byte range that selects nothing of the file: answered 416 with ``bytes */size``."""


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``(start, end)`` (end exclusive) a Range header asks for, or None to send the whole file (200).

    As nginx and Apache do (RFC 9110 14.2 lets a server ignore Range): a unit other than bytes (in any case:
    ``BYTES=`` is bytes), several ranges and a malformed or inverted range are ignored. A valid range that starts
    at or after the end of the file is 416. Positions are compared, never converted, once they have more digits
    than 2^63: a 5000-digit position is just "beyond the end" (Python refuses to turn so many digits into an int).
    """
    m = _RANGE.fullmatch(header.strip()) if header else None
    if m is None or not (m[1] or m[2]):
        return None
    first, last = _position(m[1]), _position(m[2])
    if first is None:  # "-N": the last N bytes (N is there: an empty "-" was ignored above)
        suffix = last or 0
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    if last is not None and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable
    return first, size if last is None else min(last + 1, size)


def _position(digits: str) -> int | None:
    if not digits:
        return None
    significant = digits.lstrip("0") or "0"
    return 2**63 if len(significant) > _MAX_POSITION_DIGITS else int(significant)


HubText = Annotated[str, Path(max_length=MAX_TEXT)]
FilePath = Annotated[str, Path(max_length=4096, description="A file path inside the snapshot.")]
_HUB_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
# huggingface_hub reads 404s (with X-Error-Code) and 410s (withdrawn) as {"error": ...}; malformed input is a 400 problem
HUB_ERRORS: dict[int | str, dict[str, Any]] = {
    **problem_responses(400, 401, 422),
    404: {"description": "Not Found", "content": {"application/json": {"schema": _HUB_ERROR}}},
    410: {"description": "Withdrawn", "content": {"application/json": {"schema": _HUB_ERROR}}},
    403: {"description": "Gated (X-Error-Code: GatedRepo)", "content": {"application/json": {"schema": _HUB_ERROR}}},
}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file", "content": {"application/octet-stream": {}}},
    206: {"description": "The requested byte range", "content": {"application/octet-stream": {}}},
    304: {"description": "Not Modified (If-None-Match names the file's current ETag, or is *)"},
    412: {"description": "Precondition Failed (If-Match names none of the file's current ETag)"},
    416: {"description": "Range Not Satisfiable"},
}


def attachment(path: str) -> str:
    """``Content-Disposition: attachment`` naming the file's last path segment (RFC 6266): an ASCII ``filename``
    for every client, plus ``filename*`` (RFC 8187, UTF-8 percent-encoded) when the name is not plain ASCII.

    The fallback replaces what a quoted string cannot hold safely (quotes, backslashes, control characters,
    non-ASCII, and ``%``, which some browsers decode) with ``_``; the header never carries a raw line break.

    ``onnx/modèle.onnx`` gives ``attachment; filename="mod_le.onnx"; filename*=UTF-8''mod%C3%A8le.onnx``.
    """
    name = path.rsplit("/", 1)[-1]
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%' else "_" for c in name) or "download"
    if fallback == name:
        return f'attachment; filename="{name}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def refuse_unsafe_path(path: str) -> None:
    """A file path in a URL must be a plain relative path (no ``..``, no leading ``/``, no NUL or backslash): 400."""
    try:
        check_relative_path(path)
    except UsageError:
        raise UsageError(f"refusing unsafe path {clip(path)}") from None


def _not_found(code: str, message: str, commit: str | None = None) -> Response:
    headers = {"X-Error-Code": code}
    if commit:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=404, headers=headers)


class HubView:
    def __init__(self, archive: Archive, decoder: Callable[[], ChunkDecoder]) -> None:
        self.decoder = decoder
        self.archive = archive

    def resolve(self, repo: str, revision: str) -> tuple[SnapshotId, SnapshotManifest] | Response:
        """The snapshot and manifest ``revision`` names; an unknown one or a withdrawn snapshot raises, and the
        exception handler answers as the Hub does (api/problems.py ``hub_error``)."""
        rev = resolve_revision(self.archive, repo, revision)
        refuse_withdrawn(rev)
        return rev.snapshot.digest, self.archive.manifest(rev.snapshot)

    def resolve_file(self, request: Request, repo: str, revision: str, path: str) -> Response:
        refuse_unsafe_path(path)
        found = self.resolve(repo, revision)
        if isinstance(found, Response):
            return found
        digest, manifest = found
        commit = commit_id(digest)
        entry = next((f for f in manifest.files if f.path == path), None)
        if entry is None:
            return _not_found("EntryNotFound", f"{clip(path)} not found in {repo}@{clip(revision)}", commit)
        # HEAD and ranges too: a weight file's header is its bytes (names, sizes and hashes are in the tree)
        principal = principal_of(request)
        withheld = require_file_access(self.archive, repo, digest, entry, principal)
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{entry.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            # an uploaded .html or .svg must never render as a page of the archive's origin: always a download
            "Content-Disposition": attachment(entry.path),
            # public bytes: revalidated on every use (a 304 by the sha256 ETag, after the access check), since a
            # tag may move and a policy or a withdrawal may change what this URL gives; withheld ones: private
            **bytes_cache_headers(principal, withheld=withheld, public="public, no-cache"),
        }
        if entry.path.endswith(LFS_SUFFIXES):
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        decision = precondition(request.headers, headers["ETag"])
        if decision is Precondition.NOT_MODIFIED:
            return Response(
                status_code=304, headers={k: v for k, v in headers.items() if k != "Content-Type"}
            )
        if decision is Precondition.FAILED:
            return problem(
                412,
                "Precondition Failed",
                f"{clip(path)} is now {headers['ETag']}, not what If-Match names",
                # which file an ETag names depends on the token too: the same Vary as every answer of this route
                headers={"ETag": headers["ETag"], "X-Repo-Commit": commit, "Vary": headers["Vary"]},
            )
        start, end = 0, entry.size
        status = 200
        # a stale If-Range (the tag moved since the client's first part): the whole file, never a splice of two
        asked = request.headers.get("range") if range_applies(request.headers, headers["ETag"]) else None
        try:
            wanted = requested_range(asked, entry.size)
        except RangeNotSatisfiable:
            return Response(
                status_code=416, headers={"Content-Range": f"bytes */{entry.size}", "Vary": headers["Vary"]}
            )
        if wanted is not None:
            start, end = wanted
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        # only the chunks that overlap the range are decoded, each as the client reads up to it
        body = self.decoder().stream(self.archive.store, entry, start, end)
        return DownloadResponse(body, status_code=status, headers=headers)


def hub_router(get_archive: Any, decoder: Callable[[], ChunkDecoder]) -> APIRouter:
    router = APIRouter(tags=[HUB_TAG], responses=HUB_ERRORS)

    @router.get(
        "/{ns}/{name}/resolve/{revision}/{path:anytext}", response_class=Response, responses=FILE_RESPONSES
    )
    def resolve(request: Request, ns: HubText, name: HubText, revision: HubText, path: FilePath) -> Response:
        return HubView(get_archive(), decoder).resolve_file(request, f"{ns}/{name}", revision, path)

    @router.head(
        "/{ns}/{name}/resolve/{revision}/{path:anytext}", response_class=Response, responses=FILE_RESPONSES
    )
    def resolve_head(
        request: Request, ns: HubText, name: HubText, revision: HubText, path: FilePath
    ) -> Response:
        """Headers only: huggingface_hub reads X-Repo-Commit, ETag and sizes from here before downloading."""
        return HubView(get_archive(), decoder).resolve_file(request, f"{ns}/{name}", revision, path)

    return router


__all__ = ["HubView", "commit_id", "hub_router"]
