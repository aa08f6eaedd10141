"""The web catalog: server-rendered HTML (Jinja2, autoescaped, no JavaScript) over the same archive calls as /v1.

Pages: ``/`` (search with the ``modelarc ls`` filters), ``/ui/models/{ns}/{name}`` (versions, tags, tag history),
``/ui/snapshots/{ns}/{name}/{rev}`` (architecture, parameters, dtypes, cutoff, datasets, lineage SVG, files,
signature status checked now, a snippet to load it), ``/ui/timeline`` (by training cutoff), ``/ui/datasets`` and
``/ui/datasets/{name}``, and ``/docs``, the API reference (api/api_reference.py). Errors render as HTML pages with the right status, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import QueryParams

from modelarc import __version__
from modelarc.api.api_reference import reference
from modelarc.api.limits import MAX_PAGE, MAX_TEXT, PathText
from modelarc.api.lineage_svg import lineage_svg
from modelarc.api.problems import bounded_detail, clip, status_for
from modelarc.archive.access import effective_policy, is_withheld_file
from modelarc.archive.catalog import units
from modelarc.archive.catalog import views as views
from modelarc.archive.catalog.filters import SEARCH_FILTERS
from modelarc.archive.catalog.search import build_filters, search
from modelarc.archive.provenance.lineage import lineage_tree
from modelarc.archive.repository import Archive
from modelarc.errors import ModelarcError, UsageError, http_error
from modelarc.registry.refs import SnapshotId, revision_ref

PAGE_ROWS = 50
# The pages run no script and load nothing from elsewhere: their one stylesheet is inline (base.html), the lineage
# graph is inline SVG (its arrowhead a fragment, url(#arrow)), the one form is a GET to "/". So everything else is
# refused by construction, should a value ever slip past the autoescaping; no page may be framed (clickjacking).
# /docs, the API reference, is one of these pages too (api/api_reference.py).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
FILTERS = tuple((f.key, f.label, f.example) for f in SEARCH_FILTERS)  # the web form: one field per ls filter


def search_form(query: QueryParams) -> tuple[dict[str, str], int]:
    """The home form's filters and page, bounded as /v1's parameters are (api/limits.py): UsageError otherwise.

    Empty fields mean "no filter" and no page means the first, as a browser submits the form.
    """
    values = {}
    for key, label, _placeholder in FILTERS:
        text = (query.get(key) or "").strip()
        if len(text) > MAX_TEXT:
            raise UsageError(f"{label} may be at most {MAX_TEXT} characters")
        values[key] = text
    page_text = query.get("page") or "1"
    if not (page_text.isascii() and page_text.isdigit() and len(page_text) <= len(str(MAX_PAGE))):
        raise UsageError(f"page must be a number from 1 to {MAX_PAGE}, not {clip(page_text)}")
    page = int(page_text)
    if not 1 <= page <= MAX_PAGE:
        raise UsageError(f"page must be a number from 1 to {MAX_PAGE}, not {page}")
    return values, page


def snapshot_url(model: str, digest: str) -> str:
    return f"/ui/snapshots/{quote(model)}/{quote(digest)}"


def human_bytes(n: int | None) -> str:
    return units.human_bytes(n, missing="")


def human_count(n: int | None) -> str:
    return units.human_count(n or 0)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("modelarc.api", "pages"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=human_bytes, count=human_count, short=lambda d: SnapshotId(d).hex[:12])
    env.globals.update(snapshot_url=snapshot_url, quote=quote, version=__version__)
    return env


def html_router(get_archive: Callable[[], Archive]) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    env = _environment()

    def render(template: str, status: int = 200, *, failed: ModelarcError | None = None, **context: Any) -> HTMLResponse:
        headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}
        if failed is not None:  # the code of the one table, as /v1 sends it (docs/API.md "Errors")
            headers["X-Error-Code"] = http_error(failed)[1]
        return HTMLResponse(env.get_template(template).render(**context), status_code=status, headers=headers)

    def failure(exc: ModelarcError) -> HTMLResponse:
        status = status_for(exc)
        return render(
            "error.html",
            status,
            failed=exc,
            title=HTTPStatus(status).phrase,
            message=bounded_detail(exc),
        )

    @router.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        archive = get_archive()
        try:
            values, page = search_form(request.query_params)
            filters = build_filters(
                archive,
                **{k: v or None for k, v in values.items()},
                limit=PAGE_ROWS + 1,
                offset=(page - 1) * PAGE_ROWS,
            )
            rows = search(archive, filters)
        except ModelarcError as exc:
            shown = {key: (request.query_params.get(key) or "")[:MAX_TEXT] for key, _l, _p in FILTERS}
            return render(
                "home.html",
                400,
                failed=exc,
                filters=FILTERS,
                values=shown,
                rows=[],
                error=bounded_detail(exc),
                stats=None,
            )
        query = {k: v for k, v in values.items() if v}
        return render(
            "home.html",
            filters=FILTERS,
            values=values,
            rows=rows[:PAGE_ROWS],
            error=None,
            stats=archive.stats(),
            searching=any(values.values()),
            page=page,
            prev_url=f"/?{urlencode({**query, 'page': page - 1})}" if page > 1 else None,
            next_url=f"/?{urlencode({**query, 'page': page + 1})}" if len(rows) > PAGE_ROWS else None,
        )

    @router.get("/ui/models/{ns}/{name}", response_class=HTMLResponse)
    def model(ns: str, name: str) -> HTMLResponse:
        try:
            log = get_archive().log(f"{ns}/{name}")
        except ModelarcError as exc:
            return failure(exc)
        return render("model.html", log=log)

    @router.get("/ui/snapshots/{ns}/{name}/{rev}", response_class=HTMLResponse)
    def snapshot(ns: str, name: str, rev: str) -> HTMLResponse:
        archive = get_archive()
        try:
            ref = revision_ref(ns, name, rev)
            view = archive.show(ref)
            tree = lineage_tree(archive, ref)
            signature = views.signature_status(archive, ref)
            policy = effective_policy(archive, view.model, str(view.snapshot))
        except ModelarcError as exc:
            return failure(exc)
        graph = Markup(lineage_svg(tree, snapshot_url)) if tree.ancestors or tree.descendants else None
        # every file links to the Hub download route, which enforces the policy; withheld ones say so beside it
        withheld = {
            f.path for f in view.files if policy.withholds and is_withheld_file(f.path, f.kind, policy.files)
        }
        tag = view.tags[0] if view.tags else None
        load_ref = f"{view.model}:{tag}" if tag else f"{view.model}@{view.snapshot}"
        return render(
            "snapshot.html",
            s=view,
            graph=graph,
            signature=signature,
            load_ref=load_ref,
            revision=tag or view.snapshot.hex[:40],
            policy=policy,
            withheld=withheld,
            pin=view.snapshot.hex[:40],
        )

    @router.get("/docs", response_class=HTMLResponse)
    def api_reference(request: Request) -> HTMLResponse:
        return render("api.html", ref=reference(request.app.openapi()))

    @router.get("/ui/timeline", response_class=HTMLResponse)
    def timeline() -> HTMLResponse:
        archive = get_archive()
        rows = search(archive, build_filters(archive, limit=1000), order="cutoff")
        years: dict[str, list[Any]] = {}
        for row in rows:
            years.setdefault(row.cutoff[:4] if row.cutoff else "unknown cutoff", []).append(row)
        return render("timeline.html", years=years)

    @router.get("/ui/datasets", response_class=HTMLResponse)
    def datasets() -> HTMLResponse:
        return render("datasets.html", rows=views.list_datasets(get_archive(), limit=1000).rows)

    @router.get("/ui/datasets/{name:anytext}", response_class=HTMLResponse)
    def dataset(name: PathText) -> HTMLResponse:
        """A name may hold slashes (``allenai/c4``); the pages link to it percent-encoded whole."""
        try:
            versions = views.dataset(get_archive(), name)
        except ModelarcError as exc:
            return failure(exc)
        return render("dataset.html", name=name, versions=versions)

    return router
