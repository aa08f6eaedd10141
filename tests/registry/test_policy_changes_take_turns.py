"""A push token's policy change on a served mirror (``apply_policies``: it may only tighten) is judged against the
policy that holds once any change in flight has committed: an administrator's ``access set restricted`` committed
while a sync's ``gated`` was being decided must not be overwritten by it (the newest row wins), which would hand
out what the administrator had just withheld. PostgreSQL, where two writers run at once (SQLite has one writer)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from modelfactory import write_model

from modelarc.archive.access import PolicyWanted, apply_policies, effective_policy
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token, token_principal
from modelarc.errors import PolicyLooseningError
from modelarc.registry import access as access_rows
from modelarc.registry import queries as q


def test_a_sync_waits_for_an_access_set_in_flight_and_is_judged_against_it(
    tmp_path: Path, postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELARC_DATABASE_URL", postgresql_url)
    arc, _created = Archive.init(tmp_path / "home")
    with arc:
        arc.push(write_model(tmp_path / "m"), "acme/m:v1")
        pusher = token_principal(arc, create_token(arc, "push", "mirror-sync").token)
        assert pusher is not None
        outcome: list[object] = []

        def sync() -> None:  # the mirror's PUT: gated, a tightening of the public policy it last saw
            try:
                outcome.append(
                    apply_policies(arc, "acme/m", [PolicyWanted(None, "gated", "licence")], pusher, actor="t")
                )
            except PolicyLooseningError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=sync)
        with arc.catalog.session() as s:  # an administrator's `access set restricted`, not yet committed
            found = q.require_model(s, "acme", "m")
            access_rows.lock_policies(s, found.row_id)
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            access_rows.add_policy(s, found.row_id, None, "restricted", None, "takedown", "admin", now)
            s.flush()
            worker.start()
            worker.join(timeout=1.5)
            assert (
                worker.is_alive()
            )  # waiting for the administrator's change, not deciding on what held before it
        worker.join(timeout=60)
        assert not worker.is_alive()
        (result,) = outcome
        assert isinstance(result, PolicyLooseningError)  # gated under restricted withholds less: refused
        assert effective_policy(arc, "acme/m").level == "restricted"
