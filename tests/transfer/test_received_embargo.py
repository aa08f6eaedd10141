"""An embargo a pusher's offer brings lapses to the model's policy, never to public.

An offer's ``access: {level: restricted, until: D}`` is stricter than a gated model's policy, so it becomes the new
snapshot's override. An override an administrator sets lapses to public on its day (archive/access.py); this one
did too, so a push token could make a snapshot of a gated model public from a date it chose. Judged with the
server's own rules at a later ``now`` (read_decision), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from modelfactory import write_model
from transferkit import Server

from modelarc.archive.access import effective_policy, read_decision, set_policy
from modelarc.archive.records import read_records


def test_a_received_embargo_on_a_gated_model_lapses_to_the_models_policy(server: Server, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    tensors = {f"layers.{i}.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in range(2)}
    server.archive.push(write_model(tmp_path / "pub", tensors=tensors), "acme/pub:v1")
    server.archive.push(write_model(tmp_path / "gated", tensors=tensors | {"extra": tensors["layers.0.weight"]}),
                        "acme/gated:v1")  # fmt: skip
    set_policy(server.archive, "acme/gated", "gated", reason="the authors' licence")
    until = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    offer: dict[str, Any] = httpx.get(f"{server.url}/v1/transfer/snapshots/acme/pub/v1", timeout=30).json()
    offer.update(ref="acme/gated:v2", access={"level": "restricted", "until": until.isoformat(), "reason": "held"})
    answer = httpx.post(
        f"{server.url}/v1/transfer/commit",
        json=offer,
        headers={"Authorization": f"Bearer {server.push_token}"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    before = effective_policy(server.archive, "acme/gated", "v2")
    assert (before.level, before.source) == ("restricted", "snapshot")
    later = dt.datetime.combine(until + dt.timedelta(days=1), dt.time())
    decision = read_decision(server.archive, "acme/gated", "v2", None, now=later)
    assert (decision.policy.level, decision.policy.source, decision.allowed) == ("gated", "model", False)
    assert effective_policy(server.archive, "acme/gated", now=later).level == "gated"
    # what a rebuild replays says so too
    (record,) = [r for r in read_records(server.archive.store.backend) if r.kind == "access" and r.body["snapshot"]]
    assert record.body["received"] is True
    # an administrator's own override of a snapshot still lapses to public, as documented
    set_policy(server.archive, "acme/gated", "restricted", snapshot="v1", reason="review", until=until)
    assert read_decision(server.archive, "acme/gated", "v1", None, now=later).allowed
