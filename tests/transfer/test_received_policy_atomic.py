"""A pushed snapshot is recorded with the access policy its offer declares, or not at all.

The policy used to be applied after the commit's transaction: an offer whose ``access`` only the policy code refused
(a blank file pattern, a lone surrogate in the reason), or any failure there, answered 500 with the snapshot already
recorded and public; a retried commit found it recorded (``new_snapshot`` false) and never applied the policy, so an
honest client retrying after a 500 published restricted weights. Now ``access`` is validated as the offer is parsed
(``check`` refuses it too), and the policy's row and catalog record are written in the snapshot's own transaction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from modelfactory import write_model
from sqlalchemy import text
from transferkit import Server

from modelarc.archive.access import effective_policy
from modelarc.archive.records import read_records
from modelarc.errors import NotFoundError

SECRET = "mallory/secret"


def _served_offer(server: Server, tmp_path: Path) -> dict[str, Any]:
    """The public offer of acme/pub:v1, pushed by the server's operator, to be committed under another name."""
    rng = np.random.default_rng(5)
    tensors = {f"layers.{i}.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in range(2)}
    server.archive.push(write_model(tmp_path / "pub", tensors=tensors), "acme/pub:v1")
    offer: dict[str, Any] = httpx.get(f"{server.url}/v1/transfer/snapshots/acme/pub/v1", timeout=30).json()
    offer["ref"] = f"{SECRET}:v1"
    return offer


def _post(server: Server, route: str, offer: dict[str, Any]) -> httpx.Response:
    # json.dumps escapes a lone surrogate as \\ud800, as any client would send it
    return httpx.post(
        f"{server.url}{route}",
        content=json.dumps(offer).encode(),
        headers={"Authorization": f"Bearer {server.push_token}", "content-type": "application/json"},
        timeout=60,
    )


def _weights_served_anonymously(server: Server) -> int:
    return httpx.get(f"{server.url}/{SECRET}/resolve/v1/model.safetensors", timeout=30).status_code


def _snapshot_records_of(server: Server, model: str) -> list[str]:
    return [r.key for r in read_records(server.archive.store.backend) if r.body.get("model") == model]


@pytest.mark.parametrize(
    "access, problem",
    [
        ({"level": "gated", "until": None, "reason": "x", "files": ["config.json", " "]}, "glob pattern"),
        ({"level": "restricted", "until": None, "reason": "embargoed \ud800"}, "surrogate"),
    ],
    ids=["blank-file-pattern", "lone-surrogate-reason"],
)
def test_an_offer_whose_access_cannot_be_recorded_is_refused_before_anything_is(
    server: Server, tmp_path: Path, access: dict[str, Any], problem: str
) -> None:
    offer = _served_offer(server, tmp_path)
    offer["access"] = access
    for route in ("/v1/transfer/check", "/v1/transfer/commit"):
        answer = _post(server, route, offer)
        assert answer.status_code == 400, (route, answer.text)
        assert problem in answer.json()["detail"]
    with pytest.raises(NotFoundError):
        server.archive.resolve(f"{SECRET}:v1")
    assert _snapshot_records_of(server, SECRET) == []
    # the honest client's retry, its access now well formed, is recorded with its policy
    offer["access"] = {"level": "restricted", "until": None, "reason": "embargoed"}
    answer = _post(server, "/v1/transfer/commit", offer)
    assert answer.status_code == 201, answer.text
    assert answer.json()["new_snapshot"] is True
    assert _weights_served_anonymously(server) == 403
    assert effective_policy(server.archive, SECRET, "v1").level == "restricted"


def _refuse_policy_rows(server: Server) -> None:
    """A catalog that refuses the policy's row: any failure there, after the snapshot's rows are in."""
    engine = server.archive.catalog.engine
    with engine.begin() as c:
        if engine.dialect.name == "sqlite":
            c.execute(
                text(
                    "CREATE TRIGGER refuse_policy BEFORE INSERT ON access_policies "
                    "BEGIN SELECT RAISE(ABORT, 'the catalog refused the policy'); END"
                )
            )
        else:
            c.execute(
                text(
                    "CREATE FUNCTION refuse_policy() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'the catalog refused the policy'; END $$ LANGUAGE plpgsql"
                )
            )
            c.execute(
                text(
                    "CREATE TRIGGER refuse_policy BEFORE INSERT ON access_policies "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_policy()"
                )
            )


def _allow_policy_rows(server: Server) -> None:
    with server.archive.catalog.engine.begin() as c:
        c.execute(text("DROP TRIGGER refuse_policy" + ("" if c.dialect.name == "sqlite" else " ON access_policies")))


def test_a_policy_that_fails_to_record_leaves_the_snapshot_unrecorded_and_a_retry_applies_it(
    server: Server, tmp_path: Path
) -> None:
    offer = _served_offer(server, tmp_path)
    offer["access"] = {"level": "restricted", "until": None, "reason": "embargoed"}
    _refuse_policy_rows(server)
    try:
        answer = _post(server, "/v1/transfer/commit", offer)
    finally:
        _allow_policy_rows(server)
    assert answer.status_code == 500, answer.text
    with pytest.raises(NotFoundError):
        server.archive.resolve(f"{SECRET}:v1")
    assert _weights_served_anonymously(server) == 404
    assert _snapshot_records_of(server, SECRET) == []  # a rebuild would not bring it back without its policy
    answer = _post(server, "/v1/transfer/commit", offer)
    assert answer.status_code == 201, answer.text
    assert answer.json()["new_snapshot"] is True
    assert _weights_served_anonymously(server) == 403
    kinds = sorted(
        r.kind for r in read_records(server.archive.store.backend) if r.body.get("model") == SECRET
    )
    assert kinds == ["access", "snapshot"]


def test_a_policy_record_that_fails_to_write_leaves_no_snapshot_record_a_rebuild_would_replay(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows roll back when a record write fails (a full disk), but records already written stay in the store:
    the snapshot's own record is written last, so what is left names a snapshot no record creates, and a rebuild
    cannot bring the snapshot back without its embargo."""
    import modelarc.archive.access as access_module

    real = access_module.write_record

    def failing(backend: Any, s: Any, kind: str, **fields: Any) -> str:
        if kind == "access":
            raise OSError(28, "No space left on device")
        return real(backend, s, kind, **fields)

    offer = _served_offer(server, tmp_path)
    offer["access"] = {"level": "restricted", "until": None, "reason": "embargoed"}
    monkeypatch.setattr(access_module, "write_record", failing)
    answer = _post(server, "/v1/transfer/commit", offer)
    monkeypatch.undo()
    assert answer.status_code >= 500, answer.text
    with pytest.raises(NotFoundError):
        server.archive.resolve(f"{SECRET}:v1")
    assert [r for r in read_records(server.archive.store.backend) if r.body.get("model") == SECRET] == []
