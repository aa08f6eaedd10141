"""schemathesis against the server's own OpenAPI document: generated requests to every operation, never a 5xx.

Requests carry an admin token, so the write routes (object upload, commit) are exercised past authentication too.
The archive holds real snapshots with lineage, a dataset and a withdrawn snapshot, so generated paths can hit data.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from modelfactory import finetune, tiny_tensors, write_model
from schemathesis.checks import not_a_server_error

from modelarc.api.app import create_app
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token
from modelarc.archive.tombstone import withdraw
from modelarc.registry.records import Provenance

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("fuzz")
    os.environ.pop("MODELARC_DATABASE_URL", None)
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
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(lambda: archive))


def operations() -> list[str]:
    """Operation labels, read from the app's OpenAPI document so a new route is fuzzed without editing this file."""
    app = create_app(lambda: None)  # type: ignore[arg-type,return-value]
    return [
        f"{method.upper()} {path}"
        for path, item in app.openapi()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head")
    ]


@pytest.mark.parametrize("label", operations())
def test_no_request_makes_the_server_fail(api_schema, label: str) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        response = case.call(headers={"Authorization": f"Bearer {TOKEN['admin']}"})
        case.validate_response(response, checks=[not_a_server_error])

    fuzz()
