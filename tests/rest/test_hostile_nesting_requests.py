"""Request bodies nested deeper than Python's JSON parser can follow ("[[[[..." 10,000 deep, within every body
limit): each is a 400 naming what the body should be, never a 500 from a RecursionError.

A real uvicorn server on 127.0.0.1 (tests/liveserver.py), driven with httpx, with a push token where the route needs
one so the body is read at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import served_base_model

from modelarc.archive.tokens import create_token

DEEP = b"[" * 10_000  # under the smallest body limit (16 KB), ten times what the parser follows


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """acme/base:v1 served, and a push token (module-scoped: no test here changes the archive)."""
    with served_base_model(module_database_url, tmp_path_factory.mktemp("nesting")) as (archive, url):
        token = create_token(archive, "push", "nesting").token
        yield {"url": url, "headers": {"Authorization": f"Bearer {token}"}}


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/transfer/check", "application/json"),
        ("/v1/transfer/commit", "application/json"),
        ("/v1/access/acme/base/requests", "application/json"),
        ("/api/models/acme/base/paths-info/main", "application/json"),
        ("/v1/objects/missing", "application/json"),
    ],
)
def test_a_body_nested_too_deeply_is_a_400(site: dict[str, Any], path: str, content_type: str) -> None:
    response = httpx.post(
        site["url"] + path,
        content=DEEP,
        headers={**site["headers"], "Content-Type": content_type},
        timeout=30,
    )
    assert response.status_code == 400, response.text[:500]
    assert "Traceback" not in response.text
