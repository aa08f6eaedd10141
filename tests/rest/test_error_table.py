"""One table from error class to HTTP status and X-Error-Code, used by every route and read back by the client."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from liveserver import serve
from modelfactory import write_model

from modelarc.archive.remote.client import RemoteArchive
from modelarc.archive.remote.config import Remote
from modelarc.archive.repository import Archive
from modelarc.errors import (
    HTTP_ERRORS,
    LineageCycleError,
    ModelNotFoundError,
    ProvenanceConflictError,
    TagNotFoundError,
    WithdrawnError,
    error_class,
    http_error,
)
from modelarc.registry.refs import Ref


def test_a_lineage_cycle_travels_as_a_provenance_conflict() -> None:
    """A code of its own reached clients older than the cycle rule as an unknown 409, which they read as
    MissingObjects ("a malformed list of missing objects", and an old mirror sync stopped there): a client of any
    version knows ProvenanceConflict, and the message names the cycle."""
    assert http_error(LineageCycleError("a cycle")) == (409, "ProvenanceConflict")
    assert error_class("ProvenanceConflict") is ProvenanceConflictError


def test_every_entry_round_trips_and_codes_are_unique() -> None:
    codes = [code for _cls, _status, code in HTTP_ERRORS]
    assert len(codes) == len(set(codes))
    for cls, status, code in HTTP_ERRORS:
        assert error_class(code) is cls
        if cls.__init__ is Exception.__init__:  # MissingObjectsError takes its own arguments
            assert http_error(cls("x")) == (status, code)


@pytest.fixture
def served(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    archive, _ = Archive.init(tmp_path / "home")
    monkeypatch.delenv("MODELARC_DATABASE_URL")
    archive.push(write_model(tmp_path / "m"), "acme/m:v1")
    from modelarc.archive.provenance.withdrawal import withdraw

    archive.push(write_model(tmp_path / "m2"), "acme/gone:v1")
    withdraw(archive, "acme/gone:v1", "license revoked")
    with serve(archive) as url:
        yield url
    archive.close()


def test_the_client_raises_the_class_the_server_raised(served: str) -> None:
    with RemoteArchive(Remote("origin", served, None)) as client:
        with pytest.raises(ModelNotFoundError):
            client.offer(Ref("acme", "nope", tag="v1"))
        with pytest.raises(TagNotFoundError):
            client.offer(Ref("acme", "m", tag="v9"))
        with pytest.raises(WithdrawnError):
            client.offer(Ref("acme", "gone", tag="v1"))


def test_withdrawn_is_410_with_its_code_on_every_route_family(served: str) -> None:
    for path in ("/v1/transfer/snapshots/acme/gone/v1", "/acme/gone/resolve/v1/config.json"):
        answer = httpx.get(served + path)
        assert (answer.status_code, answer.headers.get("X-Error-Code")) == (410, "Withdrawn"), path
    page = httpx.get(served + "/ui/snapshots/acme/nope/v1")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models?limit=0",  # a parameter outside its bound (FastAPI's validation)
        "/v1/models/acme/m%0A",  # a malformed name
        "/v1/models?q=%00",  # NUL, refused before any route
        "/?page=0",  # the HTML catalog
        "/?min_params=lots",
    ],
)
def test_every_malformed_request_is_400_bad_request_on_every_surface(served: str, path: str) -> None:
    """docs/API.md: 400 carries `BadRequest` "for /v1, the transfer routes, the Hub routes and the HTML pages
    alike"; FastAPI's own validation answers, the NUL refusal and the HTML pages sent no code."""
    answer = httpx.get(f"{served}{path}")
    assert answer.status_code == 400 and answer.headers.get("X-Error-Code") == "BadRequest", answer.headers


def test_a_405_allows_head_wherever_it_allows_get(served: str) -> None:
    """Every GET route answers HEAD too (api/app.py ArchiveApp); the 405's Allow said only GET."""
    answer = httpx.delete(f"{served}/v1/models")
    assert answer.status_code == 405
    assert [m.strip() for m in answer.headers["allow"].split(",")] == ["GET", "HEAD"]
    assert httpx.head(f"{served}/v1/models").status_code == 200
