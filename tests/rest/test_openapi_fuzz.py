"""schemathesis against the server's own OpenAPI document, with schemathesis' checks as the oracle.

"No 5xx" alone would pass a server that accepted anything. So every response must also be one the document declares
(status, content type, body schema), and in negative mode (requests that break the schema: a 5000-digit count, a
malformed id, a name outside the REF grammar) the server must refuse: 400, 401/403, 404, 405, 411 or 413, never a
2xx. The bounds that make negative data possible live in api/limits.py and are declared in the document.

Requests carry an admin token, so the write routes (object upload, commit) are exercised past authentication too.
The archive holds real snapshots with lineage, a dataset and a withdrawn snapshot, so generated paths can hit data.
Runs on SQLite and on PostgreSQL (``module_database_url``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from modelfactory import finetune, tiny_tensors, write_model
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from modelarc.api.app import create_app
from modelarc.archive.provenance.withdrawal import withdraw
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token
from modelarc.registry.records import Provenance

TOKEN: dict[str, str] = {}
HUGE = "9" * 5000
# the statuses this API uses to refuse a request (docs/API.md, "Errors"); 422 is not one: it means stored bytes
# failed a check, and 416 only answers a Range header, which the document cannot declare as a parameter
REFUSALS = ["400", "401", "403", "405", "411", "413"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
)
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as env:  # the archive keeps its settings; the env is restored at once
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    first = archive.push(write_model(base / "a"), "acme/base:v1", Provenance(license="mit"))
    archive.push(
        write_model(base / "b", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"])),
        "acme/tuned:v1",
        Provenance(parents=((f"acme/base@{first.snapshot}", "finetune"),)),
    )
    archive.push(write_model(base / "c", tiny_tensors(seed=9)), "acme/gone:v1")
    withdraw(archive, "acme/gone:v1", reason="license revoked")
    TOKEN["admin"] = create_token(archive, "admin", "fuzz").token
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(lambda: archive), config=CONFIG)
    archive.close()


def operations() -> list[tuple[str, bool]]:
    """Operation labels from the app's OpenAPI document (a new route is fuzzed without editing this file), each with
    whether it declares any input that negative generation could break."""
    app = create_app(lambda: None)  # type: ignore[arg-type,return-value]
    return [
        (f"{method.upper()} {path}", bool(op.get("parameters") or op.get("requestBody")))
        for path, item in app.openapi()["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "delete", "patch", "head")
    ]


def fuzz(api_schema: Any, label: str, mode: GenerationMode, checks: list[Any]) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {TOKEN['admin']}"})
        case.validate_response(response, checks=checks)

    run()


@pytest.mark.parametrize("label", [label for label, _has_input in operations()])
def test_valid_requests_get_documented_answers(api_schema, label: str) -> None:
    fuzz(api_schema, label, GenerationMode.POSITIVE, CONFORMANCE)


# Every operation with input declares its bounds, so negative generation always has something to break; a new route
# without declared bounds fails here as Unsatisfiable.
def negative_params() -> list[Any]:
    return [label for label, has_input in operations() if has_input]


@pytest.mark.parametrize("label", negative_params())
def test_requests_that_break_the_schema_are_refused(api_schema, label: str) -> None:
    fuzz(api_schema, label, GenerationMode.NEGATIVE, [*CONFORMANCE, negative_data_rejection])


# Requests that once made the server fail, hang or echo megabytes (issue 10), kept as fixed cases: each must get
# the status named here and an answer the document declares.
HOSTILE: list[tuple[str, dict[str, Any], int]] = [
    ("GET /v1/snapshots", {"query": {"min_params": "99999999999999999999"}}, 400),
    ("GET /v1/snapshots", {"query": {"max_params": str(2**63)}}, 400),
    ("GET /v1/snapshots", {"query": {"min_params": HUGE}}, 400),
    ("GET /v1/snapshots", {"query": {"name": "x" * 5000}}, 400),
    ("GET /v1/models", {"query": {"limit": HUGE}}, 400),
    ("GET /v1/objects/{object_id}", {"path_parameters": {"object_id": "a" * 64}}, 404),
    ("GET /v1/objects/{object_id}", {"path_parameters": {"object_id": "A" * 64}}, 400),
    ("POST /v1/objects/missing", {"body": {"ids": ["z" * 1_000_000]}}, 400),
    ("POST /v1/objects/missing", {"body": {"ids": ["a" * 64 + "\n"]}}, 400),
    ("POST /v1/objects/missing", {"body": {"ids": ["0" * 64] * 100_001}}, 413),
    (
        "GET /{ns}/{name}/resolve/{revision}/{path}",
        {
            "path_parameters": {"ns": "acme", "name": "base", "revision": "v1", "path": "config.json"},
            "headers": {"Range": f"bytes={HUGE}-"},
        },
        416,
    ),
    (
        "GET /{ns}/{name}/resolve/{revision}/{path}",
        {
            "path_parameters": {"ns": "acme", "name": "base", "revision": "v1", "path": "config.json"},
            "headers": {"Range": "bytes=0-1,5-6"},
        },
        200,
    ),
]


@pytest.mark.parametrize(
    "label, request_parts, status", HOSTILE, ids=[f"{label} {status}" for label, _r, status in HOSTILE]
)
def test_hostile_requests_get_their_documented_refusal(
    api_schema, label: str, request_parts: dict[str, Any], status: int
) -> None:
    method, path = label.split(" ", 1)
    case = api_schema[path][method].Case(**request_parts)
    response = case.call(headers={"Authorization": f"Bearer {TOKEN['admin']}"})
    assert response.status_code == status, response.text[:300]
    assert len(response.content) < 1000 or status == 200  # an error quotes at most a few dozen characters
    case.validate_response(response, checks=CONFORMANCE)
