"""``/docs``: the API reference the server renders from its own OpenAPI document (api/api_reference.py).

It must describe every operation ``/openapi.json`` has, with every bound a parameter must keep, load nothing from
elsewhere (no CDN, no script: it must work on a server without internet), stay readable when anonymous reads are
off, and FastAPI's CDN pages (Swagger UI, ReDoc) must be gone.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from liveserver import serve

from modelarc.api.api_reference import schema_kind
from modelarc.archive.repository import Archive

BOUNDS = ("minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "pattern")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An open server and one with anonymous reads off, over one empty archive: the page needs no data."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _ = Archive.init(tmp_path_factory.mktemp("reference") / "home")
    with serve(archive) as open_url, serve(archive, anonymous_read=False) as closed_url:
        yield open_url, closed_url
    archive.close()


def sections(page: str) -> dict[str, str]:
    """Each operation's section of the page by its heading, ``METHOD /path``."""
    found = {}
    for block in page.split('<section class="operation"')[1:]:
        heading = re.search(r"<h2><code>([A-Z]+ [^<]+)</code>", block)
        assert heading is not None, block[:200]
        found[html.unescape(heading.group(1))] = block.split("</section>")[0]
    return found


def test_every_operation_is_described_with_its_bounds(servers: tuple[str, str]) -> None:
    url, _ = servers
    doc = httpx.get(f"{url}/openapi.json").json()
    page = httpx.get(f"{url}/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    shown = sections(page.text)
    wanted = {
        f"{method.upper()} {path}": op for path, item in doc["paths"].items() for method, op in item.items()
    }
    assert len(wanted) > 30 and set(shown) == set(wanted)
    for name, op in wanted.items():
        section = html.unescape(shown[name])
        assert op["summary"] in section, name
        for parameter in op.get("parameters", []):
            row = next(r for r in section.split("<tr>") if f"<code>{parameter['name']}</code>" in r)
            assert parameter["in"] in row
            assert ("required" in row) == parameter.get("required", False), (name, parameter["name"])
            schemas = parameter["schema"].get("anyOf", [parameter["schema"]])
            for schema in schemas:
                for key in BOUNDS:
                    if key in schema:  # the page must not promise less than the server checks
                        assert str(schema[key]) in row, (name, parameter["name"], key)
        for status in op["responses"]:
            assert f"<td>{status}</td>" in section, (name, status)
    # the docstrings' text comes through escaped once: the browser shows "<hex", the source has "&lt;hex"
    assert "sha256:&lt;hex" in page.text and "sha256:<hex" in html.unescape(page.text)


def test_schema_kind_names_types_and_bounds() -> None:
    assert schema_kind({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}) == (
        "integer (min 1; max 1000; default 100)"
    )
    assert schema_kind({"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}]}) == (
        "string (max length 10) or null"
    )
    assert schema_kind({"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}) == (
        "array of string (pattern ^[0-9a-f]{64}$)"
    )
    assert (
        schema_kind({"type": "string", "enum": ["newest", "cutoff"]}) == 'string (one of "newest", "cutoff")'
    )
    assert schema_kind({"$ref": "#/components/schemas/HTTPValidationError"}) == "HTTPValidationError"


def test_the_page_loads_nothing_from_elsewhere(servers: tuple[str, str]) -> None:
    url, _ = servers
    page = httpx.get(f"{url}/docs")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "<script" not in page.text.lower()
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert links and all(link.startswith(("/", "#")) and not link.startswith("//") for link in links), links
    anchors = set(re.findall(r'id="([^"]+)"', page.text))
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors, link  # every link within the page has its target


def test_the_reference_stays_public_and_the_cdn_pages_are_gone(servers: tuple[str, str]) -> None:
    open_url, closed_url = servers
    for url in (open_url, closed_url):
        assert httpx.get(f"{url}/docs").status_code == 200
        assert httpx.get(f"{url}/openapi.json").status_code == 200
    for path in ("/redoc", "/docs/oauth2-redirect"):
        assert httpx.get(f"{open_url}{path}").status_code == 404, path
        assert httpx.get(f"{closed_url}{path}").status_code == 401, path  # no longer an open path


def test_a_browser_renders_it_offline(servers: tuple[str, str], tmp_path: Path) -> None:
    """Chromium with every request that is not to the server refused, as on a machine without internet: the page
    renders whole, asks for nothing elsewhere and breaks no rule of its Content-Security-Policy."""
    from playwright.sync_api import sync_playwright
    from test_web_catalog import CHROMIUM_FLAGS, chromium_path

    url, _ = servers
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        try:
            page: Any = browser.new_page()
            elsewhere: list[str] = []
            problems: list[str] = []

            def route(r: Any) -> None:
                if r.request.url.startswith(url + "/"):
                    r.continue_()
                else:
                    elsewhere.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on(
                "console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None
            )
            answer = page.goto(f"{url}/docs")
            assert answer is not None and answer.status == 200
            operations = page.locator("section.operation").count()
            assert operations == len(sections(answer.text()))
            page.click("a[href='#op-snapshots_v1_snapshots_get']")
            assert page.locator("#op-snapshots_v1_snapshots_get").is_visible()
            assert page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") != (
                "rgba(0, 0, 0, 0)"
            )
            assert elsewhere == [] and problems == []
        finally:
            browser.close()
