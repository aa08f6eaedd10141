"""Every integer a request carries (a page size, a page number, an offset or a row id inside a cursor) is refused
with a 400 when no row could answer it, before it reaches a query: on PostgreSQL a row id past 2**31-1 is "integer
out of range" and an offset past 2**63-1 cannot be sent at all (registry/bounds.py), a 500 rather than an answer.

No route takes a row id in its path: row ids reach the server only inside the opaque cursors, and page sizes and
page numbers as query parameters. A real server on 127.0.0.1, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import served_base_model

from modelarc.registry.bounds import CATALOG_INT_MAX, ROW_ID_MAX

# the routes that page with an offset cursor (api/v1.py cursor_offset), and those that take a limit
OFFSET_PAGED = [
    "/v1/models",
    "/v1/snapshots",
    "/v1/snapshots/acme/base/v1/tensors",
    "/api/models",
    "/api/models/acme/base/commits/v1",
    "/api/models/acme/base/tree/v1",
]
LIMITED = [
    "/v1/models",
    "/v1/snapshots",
    "/v1/snapshots/acme/base/v1/tensors",
    "/v1/datasets",
    "/api/models/acme/base/commits/v1",
]
LARGEST_OFFSET = 10**9  # api/v1.py: deeper than any real listing, and far inside every backend's OFFSET
BAD_OFFSETS = [-1, LARGEST_OFFSET + 1, ROW_ID_MAX + 1, CATALOG_INT_MAX + 1, True, 1.5]
BAD_ROW_IDS = [0, -1, ROW_ID_MAX + 1, CATALOG_INT_MAX, CATALOG_INT_MAX + 1, True]
BAD_LIMITS = [0, -1, 1001, ROW_ID_MAX + 1, CATALOG_INT_MAX + 1]
BAD_PAGES = [0, -1, ROW_ID_MAX + 1, CATALOG_INT_MAX + 1]


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_base_model(module_database_url, tmp_path_factory.mktemp("bounds")) as (_archive, url):
        yield url


def cursor(doc: dict[str, Any]) -> str:
    """A cursor as the server makes them (base64url JSON), holding whatever number a client puts in it."""
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def refused(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    return detail


@pytest.mark.parametrize("path", OFFSET_PAGED)
@pytest.mark.parametrize("offset", BAD_OFFSETS, ids=repr)
def test_an_offset_cursor_out_of_range_is_400(site: str, path: str, offset: object) -> None:
    response = httpx.get(site + path, params={"cursor": cursor({"o": offset})}, timeout=30)
    assert refused(response).startswith("invalid cursor")


@pytest.mark.parametrize("path", OFFSET_PAGED)
def test_the_largest_offset_is_an_empty_page(site: str, path: str) -> None:
    response = httpx.get(site + path, params={"cursor": cursor({"o": LARGEST_OFFSET})}, timeout=30)
    assert response.status_code == 200 and response.json() == [] and "link" not in response.headers


@pytest.mark.parametrize("row_id", BAD_ROW_IDS, ids=repr)
def test_a_dataset_cursor_naming_an_id_no_row_can_have_is_400(site: str, row_id: object) -> None:
    response = httpx.get(f"{site}/v1/datasets", params={"cursor": cursor({"a": row_id})}, timeout=30)
    assert refused(response).startswith("invalid dataset cursor")


def test_a_dataset_cursor_at_the_largest_row_id_reaches_the_catalog(site: str) -> None:
    """The bound is exact: ROW_ID_MAX itself is looked up (PostgreSQL's largest integer), and names no dataset."""
    response = httpx.get(f"{site}/v1/datasets", params={"cursor": cursor({"a": ROW_ID_MAX})}, timeout=30)
    assert "names no dataset" in refused(response)


@pytest.mark.parametrize("path", LIMITED)
@pytest.mark.parametrize("limit", BAD_LIMITS)
def test_a_limit_out_of_range_is_400(site: str, path: str, limit: int) -> None:
    assert "limit" in refused(httpx.get(site + path, params={"limit": str(limit)}, timeout=30))


@pytest.mark.parametrize("limit", [ROW_ID_MAX + 1, CATALOG_INT_MAX])
def test_list_models_serves_a_huge_limit_in_pages_of_the_largest_size(site: str, limit: int) -> None:
    """``HfApi.list_models(limit=...)`` sends the caller's total: any 64-bit count is taken, a page at a time."""
    response = httpx.get(f"{site}/api/models", params={"limit": str(limit)}, timeout=30)
    assert response.status_code == 200 and [m["id"] for m in response.json()] == ["acme/base"]


@pytest.mark.parametrize("limit", [0, -1, CATALOG_INT_MAX + 1])
def test_list_models_refuses_a_limit_out_of_range(site: str, limit: int) -> None:
    assert "limit" in refused(httpx.get(f"{site}/api/models", params={"limit": str(limit)}, timeout=30))


@pytest.mark.parametrize("page", BAD_PAGES)
def test_the_html_home_refuses_a_page_out_of_range(site: str, page: int) -> None:
    response = httpx.get(f"{site}/", params={"page": str(page)}, timeout=30)
    assert response.status_code == 400 and "page must be a number from 1 to" in response.text
