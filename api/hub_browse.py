"""Hugging Face Hub browsing routes: unmodified ``HfApi`` and ``HfFileSystem`` list, search and inspect the archive.

Beside the download routes (api/hub.py), with ``HF_ENDPOINT`` pointing here:
- ``GET /api/models``: ``list_models`` (search, author, filter, sort, limit, full, cardData, config, expand);
- ``GET /api/models/{ns}/{name}[/revision/{rev}]``: ``model_info`` with ``expand`` and ``blobs`` (files metadata);
- ``GET /api/models/{ns}/{name}/refs``: ``list_repo_refs``, tags as branches and snapshot ids as tags;
- ``GET /api/models/{ns}/{name}/commits/{rev}``: ``list_repo_commits``, the history of a tag;
- ``GET /api/models/{ns}/{name}/tree/{rev}[/{path}]``: ``list_repo_tree`` (``recursive``, ``expand``);
- ``POST /api/models/{ns}/{name}/paths-info/{rev}``: ``get_paths_info`` (form or JSON body).
Lists are paged with ``Link: <...>; rel="next"``, as the Hub pages them. What each field means here, and which
``HfApi`` methods work, is in docs/API.md ("Browsing with Hugging Face tools"). Errors: api/problems.py ``hub_error``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modelarc.api.hub import HUB_ERRORS, FilePath, HubText, refuse_unsafe_path
from modelarc.api.limits import MAX_INT, MAX_TEXT, read_body
from modelarc.api.problems import HUB_TAG, problem_responses
from modelarc.api.v1 import cursor_offset, encode_cursor
from modelarc.archive.access import effective_policy
from modelarc.archive.catalog import hub_repos
from modelarc.archive.catalog.hub_repos import Commit, RepoCard
from modelarc.archive.catalog.repo_tree import RepoTree, TreeEntry, file_entry
from modelarc.archive.catalog.revisions import Revision, commit_id, refuse_withdrawn, resolve_revision
from modelarc.archive.catalog.views import model_history
from modelarc.archive.repository import Archive
from modelarc.errors import InvalidRefError, ModelNotFoundError, NotFoundError, UsageError

PAGE = 100  # list_models rows per page when the client names no limit
MAX_PAGE = 1000  # the Hub's largest page; a larger limit is served in pages of this size
TREE_PAGE, TREE_PAGE_EXPANDED = 1000, 50  # the Hub's tree pages: 50 entries when each carries its last commit
MAX_PATHS = 1000  # paths in one paths-info request
MAX_PATHS_BODY = 1 << 20  # bytes of a paths-info body
# Every property the Hub's ``expand`` accepts (huggingface_hub ExpandModelProperty_T; a test holds the two equal).
# Those this archive has no data for (downloads, likes, spaces, inference, ...) are left out of the answer, as the
# Hub leaves out what a repository does not have.
HubProperty = Literal[
    "author", "baseModels", "cardData", "childrenModelCount", "config", "createdAt", "disabled", "downloads",
    "downloadsAllTime", "evalResults", "gated", "gguf", "inference", "inferenceProviderMapping", "lastModified",
    "library_name", "likes", "mask_token", "model-index", "pipeline_tag", "private", "resourceGroup", "safetensors",
    "sha", "siblings", "spaces", "tags", "transformersInfo", "trendingScore", "usedStorage", "widgetData",
]  # fmt: skip
Flag = Annotated[bool, Query(description="true or false")]
SecurityFlag = Annotated[
    bool, Query(alias="securityStatus", description="Accepted; no scan results exist here.")
]
# lists are never nullable in the document: a query string cannot tell an empty list from a missing one
Texts = Annotated[
    list[Annotated[str, Query(max_length=MAX_TEXT)]], Query(max_length=100, default_factory=list)
]
Expand = Annotated[
    list[HubProperty], Query(max_length=40, description="Only these properties.", default_factory=list)
]
Cursor = Annotated[str | None, Query(max_length=100, description="Opaque; from the Link rel=next of a page.")]
JSON_LIST: dict[int | str, dict[str, Any]] = {
    200: {"description": "A page; Link rel=next when more exist", "content": {"application/json": {}}},
}
PATHS_BODY = {
    "type": "object",
    "required": ["paths"],
    "additionalProperties": False,
    "properties": {
        "paths": {
            "type": "array",
            "maxItems": MAX_PATHS,
            "items": {"type": "string", "maxLength": 4096},
        },
        "expand": {"type": "boolean"},
    },
}


def hub_browse_router(get_archive: Callable[[], Archive]) -> APIRouter:
    router = APIRouter(tags=[HUB_TAG], responses=HUB_ERRORS)

    @router.get("/api/models", responses=JSON_LIST)
    def list_models(
        request: Request,
        *,
        search: Annotated[
            str | None, Query(max_length=MAX_TEXT, description="Part of ns/name, any case.")
        ] = None,
        author: Annotated[str | None, Query(max_length=MAX_TEXT, description="The namespace.")] = None,
        filter_: Annotated[
            list[Annotated[str, Query(max_length=MAX_TEXT)]],
            Query(
                alias="filter", max_length=100, default_factory=list, description="Tags, ANDed (docs/API.md)."
            ),
        ],
        num_parameters: Annotated[str | None, Query(max_length=100, description="min:1B,max:70B")] = None,
        gated: bool | None = None,
        sort: Annotated[
            str | None, Query(max_length=40, description="lastModified, createdAt or id.")
        ] = None,
        direction: Annotated[
            Literal["-1", "1"] | None, Query(description="-1: descending (default).")
        ] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=MAX_INT, description="Rows per page (at most 1000).")
        ] = None,
        cursor: Cursor = None,
        full: Flag = False,
        config: Flag = False,
        card_data: Annotated[bool, Query(alias="cardData")] = False,
        expand: Expand,
        pipeline_tag: Annotated[str | None, Query(max_length=MAX_TEXT, description="Not supported.")] = None,
        apps: Texts,
        inference: Annotated[str | None, Query(max_length=MAX_TEXT, description="Not supported.")] = None,
        inference_provider: Texts,
    ) -> Response:
        """``HfApi.list_models``: each model as its default revision (``main``, else ``latest``) shows it."""
        given = {
            "pipeline_tag": pipeline_tag,
            "apps": apps,
            "inference": inference,
            "inference_provider": inference_provider,
        }
        for name, value in given.items():
            if value:
                raise UsageError(
                    f"{name} is not supported: archived models carry no pipeline or inference data"
                )
        query = hub_repos.repo_query(
            filters=filter_ or (),
            search=search,
            author=author,
            num_parameters=num_parameters,
            sort=sort,
            descending=direction != "1",
        )
        size = min(limit or PAGE, MAX_PAGE)
        offset = cursor_offset(cursor)
        fields = _list_fields(full=full, config=config, card_data=card_data, expand=expand)
        with_files = bool(fields & {"siblings", "safetensors"})
        archive = get_archive()
        cards = hub_repos.list_repos(archive, query, limit=size + 1, offset=offset, with_files=with_files)
        gates = _gates(archive, cards) if "gated" in fields or gated is not None else {}
        if gated is not None:  # the filter narrows the page it is given (a page may come back short)
            cards = [c for c in cards if (gates[c.model] is not False) == gated]
        return _page(request, [_repo_json(c, fields, gates.get(c.model, False)) for c in cards], size, offset)

    def model_info(ns: str, name: str, revision: str, expand: Sequence[str]) -> Response:
        rev = resolve_revision(get_archive(), f"{ns}/{name}", revision)
        refuse_withdrawn(rev)
        fields = set(expand) if expand else INFO_FIELDS
        card = hub_repos.repo_card(get_archive(), rev)
        return JSONResponse(_repo_json(card, fields, _gates(get_archive(), [card])[card.model]))

    @router.get("/api/models/{ns}/{name}")
    def model_info_main(
        *,
        ns: HubText,
        name: HubText,
        expand: Expand,
        blobs: Flag = False,
        security_status: SecurityFlag = False,
    ) -> Response:
        """``HfApi.model_info``: the default revision. Sizes, git ids and sha256 of every file are always given."""
        return model_info(ns, name, "main", expand)

    @router.get("/api/models/{ns}/{name}/revision/{revision:anytext}")
    def model_info_revision(
        *,
        ns: HubText,
        name: HubText,
        revision: HubText,
        expand: Expand,
        blobs: Flag = False,
        security_status: SecurityFlag = False,
    ) -> Response:
        """``HfApi.model_info(revision=...)``: a tag, ``main``, a snapshot id (or prefix) or a commit id."""
        return model_info(ns, name, revision, expand)

    @router.get("/api/models/{ns}/{name}/refs")
    def refs(ns: HubText, name: HubText, include_prs: Annotated[bool, Query()] = False) -> Response:
        """``HfApi.list_repo_refs``: every tag as a (movable) branch, ``main`` as the branch it stands for, and every
        snapshot id as an (immutable) tag."""
        try:
            history = model_history(get_archive(), f"{ns}/{name}")
        except InvalidRefError:
            raise ModelNotFoundError(f"repository {ns[:80]}/{name[:80]} not found") from None
        tags = history.tags()
        if "main" not in tags and "latest" in tags:
            tags["main"] = tags["latest"]  # the default revision (docs/API.md): what `main` resolves to
        out: dict[str, Any] = {
            "branches": [_ref(t, f"refs/heads/{t}", tags[t]) for t in sorted(tags)],
            "converts": [],
            "tags": [_ref(sn.snapshot, f"refs/tags/{sn.snapshot}", sn.snapshot) for sn in history.snapshots],
        }
        if include_prs:
            out["pullRequests"] = []
        return JSONResponse(out)

    @router.get("/api/models/{ns}/{name}/commits/{revision}", responses=JSON_LIST)
    def commits(
        request: Request,
        *,
        ns: HubText,
        name: HubText,
        revision: HubText,
        expand: Annotated[
            list[Literal["formatted"]], Query(alias="expand[]", max_length=1, default_factory=list)
        ],
        limit: Annotated[int, Query(ge=1, le=1000, description="Commits per page.")] = 100,
        cursor: Cursor = None,
    ) -> Response:
        """``HfApi.list_repo_commits``: newest first; a tag's history is every snapshot it named."""
        rev = resolve_revision(get_archive(), f"{ns}/{name}", revision)
        offset = cursor_offset(cursor)
        rows = hub_repos.revision_commits(get_archive(), rev, limit=limit + 1, offset=offset)
        return _page(request, [_commit_json(c, formatted=bool(expand)) for c in rows], limit, offset)

    def tree(
        request: Request,
        repo: str,
        revision: str,
        path: str,
        recursive: bool,
        expand: bool,
        cursor: str | None,
    ) -> Response:
        folder = path.strip("/")
        if folder:
            refuse_unsafe_path(folder)
        rev, snapshot_tree = _tree_of(get_archive(), repo, revision)
        if not snapshot_tree.is_folder(folder):
            raise NotFoundError(f"no folder {folder[:80]!r} in {rev.model} at {revision[:80]!r}")
        size = TREE_PAGE_EXPANDED if expand else TREE_PAGE
        offset = cursor_offset(cursor)
        entries = snapshot_tree.listing(folder, recursive=recursive)[offset : offset + size + 1]
        return _page(request, _entries_json(get_archive(), rev, snapshot_tree, entries, expand), size, offset)

    @router.get("/api/models/{ns}/{name}/tree/{revision}", responses=JSON_LIST)
    def tree_root(
        request: Request,
        ns: HubText,
        name: HubText,
        revision: HubText,
        recursive: Flag = False,
        expand: Annotated[bool, Query(description="Add each entry's last commit (pages of 50).")] = False,
        cursor: Cursor = None,
    ) -> Response:
        """``HfApi.list_repo_tree``: the top folder's entries, or (``recursive``) every file and folder."""
        return tree(request, f"{ns}/{name}", revision, "", recursive, expand, cursor)

    @router.get("/api/models/{ns}/{name}/tree/{revision}/{path:anytext}", responses=JSON_LIST)
    def tree_folder(
        request: Request,
        ns: HubText,
        name: HubText,
        revision: HubText,
        path: FilePath,
        recursive: Flag = False,
        expand: Annotated[bool, Query(description="Add each entry's last commit (pages of 50).")] = False,
        cursor: Cursor = None,
    ) -> Response:
        """``HfApi.list_repo_tree(path_in_repo=...)``: a folder's entries; 404 EntryNotFound if it is no folder."""
        return tree(request, f"{ns}/{name}", revision, path, recursive, expand, cursor)

    @router.post(
        "/api/models/{ns}/{name}/paths-info/{revision}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": PATHS_BODY},
                    "application/json": {"schema": PATHS_BODY},
                },
            }
        },
        responses={**problem_responses(413), 200: {"description": "The paths that exist"}},
    )
    async def paths_info(request: Request, ns: HubText, name: HubText, revision: HubText) -> Response:
        """``HfApi.get_paths_info``: files and folders among ``paths`` (absent ones are left out), with their last
        commit when ``expand`` is true."""
        paths, expand = _paths_request(
            request.headers.get("content-type", ""), await read_body(request, MAX_PATHS_BODY)
        )
        for p in paths:
            refuse_unsafe_path(p)
        return await run_in_threadpool(_paths_info, get_archive(), f"{ns}/{name}", revision, paths, expand)

    return router


# ----------------------------------------------------------------------------------------------- repositories
# model_info without ``expand``: everything this archive can say (list_models says less, as the Hub does)
INFO_FIELDS = frozenset(
    {"author", "sha", "lastModified", "createdAt", "private", "gated", "disabled", "tags", "cardData", "config",
     "safetensors", "siblings", "modelarc_snapshot"}
)  # fmt: skip
LIST_FIELDS = frozenset({"private", "tags", "createdAt"})
FULL_FIELDS = frozenset({"author", "sha", "lastModified", "gated", "disabled", "siblings"})


def _list_fields(*, full: bool, config: bool, card_data: bool, expand: Sequence[str] | None) -> set[str]:
    if expand:
        if full or config or card_data:
            raise UsageError("expand cannot be combined with full, config or cardData")
        return set(expand)
    return (
        set(LIST_FIELDS)
        | (FULL_FIELDS if full else set())
        | ({"config"} if config else set())
        | ({"cardData"} if card_data else set())
    )


def _gates(archive: Archive, cards: Sequence[RepoCard]) -> dict[str, str | bool]:
    """The Hub's ``gated`` per repository: ``"manual"`` when its policy withholds the weights shown (a grant is
    given by hand), else False."""
    out: dict[str, str | bool] = {}
    for card in cards:
        snap = str(card.snapshot.digest) if card.snapshot is not None else None
        out[card.model] = "manual" if effective_policy(archive, card.model, snap).withholds else False
    return out


def _repo_json(card: RepoCard, fields: set[str] | frozenset[str], gated: str | bool = False) -> dict[str, Any]:
    """A repository as the Hub describes it, with the ``fields`` asked for that this archive has values for."""
    snap = card.snapshot
    files = card.files
    values: dict[str, Any] = {
        "author": card.author,
        "createdAt": _date(card.created_at),
        "private": False,
        "gated": gated,
        "disabled": bool(snap and snap.withdrawn),
        "tags": card.tags(),
    }
    if snap is not None:
        values.update(sha=card.sha, lastModified=_date(snap.created_at), modelarc_snapshot=snap.digest)
        values["cardData"] = card.card_data()
        arch = snap.architecture
        if arch.get("format") != "gguf" and ("architectures" in arch or "model_type" in arch):
            # the part of config.json the Hub shows; a GGUF file's own metadata is no config.json
            values["config"] = {k: arch[k] for k in ("architectures", "model_type") if k in arch}
    if files is not None:
        values["siblings"] = [_sibling(f.path, f.size, f.sha256) for f in files]
        kinds = {f.kind for f in files}
        if (
            snap is not None and "safetensors" in kinds and "gguf" not in kinds
        ):  # the parameters are theirs alone
            values["safetensors"] = {"parameters": dict(snap.dtypes), "total": snap.parameter_count}
    return {"id": card.model, "modelId": card.model, **{k: values[k] for k in sorted(fields) if k in values}}


def _sibling(path: str, size: int, sha256: str) -> dict[str, Any]:
    entry = file_entry(path, size, sha256)
    return {
        "rfilename": path,
        "size": size,
        "blobId": entry.oid,
        "lfs": {"sha256": sha256, "size": size, "pointerSize": entry.pointer_size},
    }


def _ref(name: str, ref: str, snapshot: str) -> dict[str, str]:
    return {"name": name, "ref": ref, "targetCommit": commit_id(snapshot)}


# ----------------------------------------------------------------------------------------------- commits, files
def _commit_json(c: Commit, *, formatted: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "title": c.title,
        "message": c.message,
        "authors": [{"user": a} for a in c.authors],
        "date": _date(c.date),
    }
    if formatted:  # the Hub renders these as HTML; ours are plain text, escaped
        out["formatted"] = {"title": html.escape(c.title), "message": html.escape(c.message)}
    return out


def _tree_of(archive: Archive, repo: str, revision: str) -> tuple[Revision, RepoTree]:
    rev = resolve_revision(archive, repo, revision)
    refuse_withdrawn(rev)
    return rev, hub_repos.snapshot_tree(archive, rev.snapshot)


def _entries_json(
    archive: Archive, rev: Revision, tree: RepoTree, entries: Sequence[TreeEntry], expand: bool
) -> list[dict[str, Any]]:
    last = hub_repos.last_commits(archive, rev, tree, [e.path for e in entries]) if expand else {}
    out = []
    for e in entries:
        item: dict[str, Any] = {
            "type": "directory" if e.is_dir else "file",
            "oid": e.oid,
            "size": e.size,
            "path": e.path,
        }
        if not e.is_dir:
            item["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
        if e.path in last:
            c = last[e.path]
            item["lastCommit"] = {"id": c.id, "title": c.title, "date": _date(c.date)}
        out.append(item)
    return out


def _paths_info(archive: Archive, repo: str, revision: str, paths: list[str], expand: bool) -> Response:
    rev, tree = _tree_of(archive, repo, revision)
    entries = [e for e in (tree.get(p) for p in dict.fromkeys(paths)) if e is not None]
    return JSONResponse(_entries_json(archive, rev, tree, entries, expand))


def _paths_request(content_type: str, body: bytes) -> tuple[list[str], bool]:
    """``paths`` and ``expand`` of a paths-info body: a form (as huggingface_hub sends it) or a JSON object."""
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/json":
            doc = json.loads(text)
            if not isinstance(doc, dict) or set(doc) - {"paths", "expand"}:
                raise ValueError
            paths, expand = doc.get("paths"), doc.get("expand", False)
        else:
            form = parse_qs(
                text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_PATHS + 1
            )
            if set(form) - {"paths", "expand"} or len(form.get("expand", [])) > 1:
                raise ValueError
            paths = form.get("paths")
            flag = form.get("expand", ["false"])[0].lower()
            if flag not in ("true", "false", "1", "0"):
                raise ValueError
            expand = flag in ("true", "1")
    # ValueError: also UnicodeDecodeError and json's JSONDecodeError; RecursionError: "[[[[..." nested too deeply
    except (ValueError, RecursionError):
        raise UsageError(
            "a paths-info body is paths (a list of file paths) and expand (true or false)"
        ) from None
    if (
        not isinstance(paths, list)
        or not isinstance(expand, bool)
        or len(paths) > MAX_PATHS
        or not all(isinstance(p, str) and len(p) <= 4096 for p in paths)
    ):
        raise UsageError(f"paths must be a list of at most {MAX_PATHS} file paths, expand true or false")
    return [p.strip("/") for p in paths if p.strip("/")], expand


# ----------------------------------------------------------------------------------------------- helpers
def _page(request: Request, rows: list[dict[str, Any]], size: int, offset: int) -> Response:
    """``rows`` holds up to size+1 items; the extra one only says that a next page exists (Link rel=next)."""
    headers = {}
    if len(rows) > size:
        rows = rows[:size]
        nxt = request.url.include_query_params(cursor=encode_cursor(offset + size))
        headers["Link"] = f'<{nxt}>; rel="next"'
    return JSONResponse(rows, headers=headers)


def _date(value: dt.datetime) -> str:
    """The Hub's date format: UTC, milliseconds, ``Z`` (the catalog keeps naive UTC)."""
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
