"""``modelarc access``: policies, embargoes, grants and requests from the command line, one ``error:`` line for bad
input, and every policy and grant back after ``rebuild-catalog`` (catalog records ``access`` and ``grant``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import finetune, tiny_tensors, write_model

ArchiveCli = Any  # tests/cli/conftest.py


@pytest.fixture
def models(arc: ArchiveCli, tmp_path: Path) -> ArchiveCli:
    base = tiny_tensors()
    arc("push", write_model(tmp_path / "a", base), "acme/llm:v1")
    arc("push", write_model(tmp_path / "b", finetune(base, ["lm_head.bias"])), "acme/llm:v2")
    arc("push", write_model(tmp_path / "c", tiny_tensors(seed=4)), "acme/other:v1")
    return arc


def _token(arc: ArchiveCli, name: str, scope: str = "read") -> dict[str, Any]:
    return arc.json("token", "create", "--scope", scope, "--name", name)


def test_set_grant_revoke_and_ls(models: ArchiveCli) -> None:
    arc = models
    alice = _token(arc, "alice")
    assert arc.json("access", "ls") == []
    assert "every model is public" in arc("access", "ls").stdout
    out = arc.json(
        "access", "set", "acme/llm", "gated", "--until", "2031-01-01", "--reason", "embargo until paper"
    )
    assert (out["level"], out["until"], out["source"], out["reason"]) == (
        "gated",
        "2031-01-01",
        "model",
        "embargo until paper",
    )
    arc("access", "set", "acme/llm", "restricted", "--snapshot", "v2", "--reason", "takedown request")
    arc("access", "grant", "acme/llm", "alice", "--reason", "co-author")
    arc("access", "grant", "acme/llm", f"token:{alice['id']}", "--reason", "the reviewer's own token")
    [row] = arc.json("access", "ls", "acme/llm")
    assert row["policy"]["level"] == "gated" and row["policy"]["until"] == "2031-01-01"
    assert [(o["level"], o["reason"]) for o in row["overrides"]] == [("restricted", "takedown request")]
    assert [(g["subject"], g["reason"]) for g in row["grants"]] == [
        ("alice", "co-author"),
        (f"token:{alice['id']}", "the reviewer's own token"),
    ]
    text = arc("access", "ls").stdout
    assert "gated until 2031-01-01: embargo until paper" in text and "alice: co-author" in text
    out = arc("access", "revoke", "acme/llm", "alice", "--reason", "left the project").stdout
    assert "revoked 1 grant(s) of alice" in out
    assert [g["subject"] for g in arc.json("access", "ls", "acme/llm")[0]["grants"]] == [
        f"token:{alice['id']}"
    ]
    history = arc.json("access", "ls", "acme/llm", "--history")[0]["grants"]
    assert history[0]["revoke_reason"] == "left the project"
    assert arc.json("access", "ls", "acme/other")[0]["policy"]["source"] == "default"
    actions = [e["action"] for e in arc.json("audit", "--limit", "5")]
    assert actions[:5] == ["access.revoke", "access.grant", "access.grant", "access.set", "access.set"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("set", "acme/nope", "gated", "--reason", "x"), "no model acme/nope"),
        (("set", "acme/llm", "gated"), "reason is required"),
        (("set", "acme/llm", "gated", "--reason", " "), "reason is required"),
        (("set", "acme/llm", "secret", "--reason", "x"), "unknown access level"),
        (("set", "acme/llm", "gated", "--until", "2001-01-01", "--reason", "x"), "not after today"),
        (("set", "acme/llm", "gated", "--until", "2031-02-30", "--reason", "x"), "invalid date"),
        # what date.fromisoformat takes besides YYYY-MM-DD: a basic-format date and an ISO week date (2098-12-29)
        (("set", "acme/llm", "gated", "--until", "20990101", "--reason", "x"), "expected YYYY-MM-DD"),
        (("set", "acme/llm", "gated", "--until", "2099-W01-1", "--reason", "x"), "expected YYYY-MM-DD"),
        (("set", "acme/llm", "gated", "--snapshot", "v9", "--reason", "x"), "no tag 'v9'"),
        (("set", "bad name", "gated", "--reason", "x"), "invalid model name"),
        (("grant", "acme/llm", "nobody", "--reason", "x"), "no live token is named 'nobody'"),
        (("grant", "acme/llm", "token:404", "--reason", "x"), "token 404 does not exist"),
        (("grant", "acme/llm", "token:x", "--reason", "x"), "token:<digits>"),
        (("grant", "acme/nope", "alice", "--reason", "x"), "no model acme/nope"),
        (("grant", "acme/llm", "alice"), "reason is required"),
        (("revoke", "acme/llm", "alice", "--reason", "x"), "holds no live grant"),
        (("decide", "1", "grant", "--reason", "x"), "no access request 1"),
        (("decide", "one", "grant", "--reason", "x"), "not a request id"),
        (("decide", "\u00b2", "grant", "--reason", "x"), "not a request id"),  # isdigit() alone says yes
        (("decide", "1", "maybe", "--reason", "x"), "grant or deny"),
        (("ls", "acme/nope"), "no model acme/nope"),
    ],
)
def test_bad_input_is_one_error_line(models: ArchiveCli, args: tuple[str, ...], message: str) -> None:
    _token(models, "alice")
    result = models.fail("access", *args)
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and message in line, line
    assert models.json("access", "ls") == []  # nothing was changed


def test_requests_are_listed_and_decided(models: ArchiveCli, monkeypatch: pytest.MonkeyPatch) -> None:
    arc = models
    made = _token(arc, "erin")
    arc("access", "set", "acme/llm", "gated", "--reason", "licence")
    arc("access", "set", "acme/other", "gated", "--reason", "licence")
    for key, value in arc.env.items():
        monkeypatch.setenv(key, value)
    from modelarc.archive.access import request_access
    from modelarc.archive.repository import Archive
    from modelarc.archive.tokens import token_principal

    with Archive.open() as archive:
        erin = token_principal(archive, made["token"])
        first = request_access(archive, "acme/llm", erin, "I study\nold models")
        second = request_access(archive, "acme/other", erin, "this one too")
    [pending, _] = arc.json("access", "requests")
    assert (pending["id"], pending["token_name"], pending["status"]) == (first.id, "erin", "pending")
    assert "I study\\x0aold models" in arc("access", "requests").stdout  # a justification cannot forge a line
    out = arc.json("access", "decide", str(first.id), "grant", "--reason", "academic")
    assert out["status"] == "granted" and out["grant_id"]
    arc("access", "decide", str(second.id), "deny", "--reason", "not a use the licence covers")
    assert arc.json("access", "requests") == []
    assert [r["status"] for r in arc.json("access", "requests", "--all")] == ["granted", "denied"]
    assert arc.json("access", "ls", "acme/llm")[0]["grants"][0]["subject"] == f"token:{made['id']}"
    assert "already granted" in arc.fail("access", "decide", str(first.id), "deny", "--reason", "x").stderr


def test_a_grant_on_a_model_that_is_not_gated_is_recorded_and_never_reported_granted(
    models: ArchiveCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc = models
    made = _token(arc, "carol")
    arc("access", "set", "acme/llm", "gated", "--reason", "licence")
    for key, value in arc.env.items():
        monkeypatch.setenv(key, value)
    from modelarc.archive.access import request_access
    from modelarc.archive.repository import Archive
    from modelarc.archive.tokens import token_principal
    from modelarc.errors import AccessNotRequestableError, http_error

    with Archive.open() as archive:
        carol = token_principal(archive, made["token"])
        asked = request_access(archive, "acme/llm", carol, "reviewing the paper")
        with pytest.raises(AccessNotRequestableError, match="acme/other is public") as refused:
            request_access(archive, "acme/other", carol, "and this")
    assert http_error(refused.value) == (409, "AccessNotRequestable") and refused.value.exit_code == 2
    arc("access", "set", "acme/llm", "restricted", "--reason", "admins only")
    out = arc("access", "grant", "acme/llm", "carol", "--reason", "ahead of gating").stdout
    assert out.startswith("grant of carol on acme/llm recorded; has no effect while acme/llm is restricted")
    assert "granted" not in out
    assert arc.json("access", "ls", "acme/llm")[0]["grants"][0]["subject"] == "carol"  # kept, for later
    out = arc("access", "decide", str(asked.id), "grant", "--reason", "ok").stdout
    assert "grant recorded; has no effect while acme/llm is restricted" in out and "granted" not in out
    arc("access", "set", "acme/llm", "gated", "--reason", "licence again")
    _token(arc, "dave")
    other = arc.json("access", "grant", "acme/llm", "dave", "--reason", "now it counts")
    assert (other["effective"], other["note"]) == (True, None)


def _records(arc: ArchiveCli) -> list[dict[str, Any]]:
    return [json.loads(p.read_bytes()) for p in sorted((arc.home / "store" / "records").glob("*.json"))]


def test_policies_embargoes_and_grants_come_back_after_a_rebuild(
    models: ArchiveCli, database_url: str
) -> None:
    arc = models
    alice = _token(arc, "alice")
    arc("access", "set", "acme/llm", "gated", "--until", "2031-01-01", "--reason", "embargo")
    arc(
        "access", "set", "acme/llm", "restricted", "--snapshot", "v2", "--reason", "takedown",
        "--withhold", "*.json", "--withhold", "notes/*",
    )  # fmt: skip
    arc("access", "set", "acme/other", "restricted", "--reason", "first thought")
    arc("access", "set", "acme/other", "gated", "--reason", "second thought")  # the newest wins on replay too
    arc("access", "grant", "acme/llm", "alice", "--reason", "co-author")
    arc("access", "grant", "acme/other", "alice", "--reason", "short-lived")
    arc("access", "revoke", "acme/other", "alice", "--reason", "ended")
    arc("access", "grant", "acme/llm", f"token:{alice['id']}", "--reason", "one token")
    kinds = [r["kind"] for r in _records(arc)]
    assert kinds.count("access") == 4 and kinds.count("grant") == 4
    before = arc.json("access", "ls", "--history")
    assert "notes/*" in json.dumps(before)  # the files the override names come back too (compared below)

    drop_catalog(database_url)
    report = arc.json("rebuild-catalog")
    assert report["ok"], report
    assert report["replayed"]["access"] == 4 and report["replayed"]["grant"] == 4
    after = arc.json("access", "ls", "--history")
    # API tokens are not rebuilt, and new ones are numbered from 1 again: the grant to a token id comes back
    # revoked, so that it cannot open the model to whoever gets that id next
    by_id = after[0]["grants"].pop()
    expected = before[0]["grants"].pop()
    assert (
        by_id["subject"] == expected["subject"] == f"token:{alice['id']}" and expected["revoked_at"] is None
    )
    assert by_id["revoked_at"] is not None and "do not survive rebuild-catalog" in by_id["revoke_reason"]
    assert any("token:" in note for note in report["notes"])
    for rows in (before, after):
        for row in rows:
            for g in row["grants"]:
                del g["id"]
    assert after == before
    audit = {e["action"] for e in arc.json("audit", "--limit", "100")}
    assert {"access.set", "access.grant", "access.revoke"} <= audit
    # and upgrade, which writes the records an older archive lacks, passes over these kinds
    assert arc.json("upgrade")["written"] == {}


def _without_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        for g in row["grants"]:
            del g["id"]
    return rows


def test_upgrade_writes_access_records_a_store_lacks(models: ArchiveCli, database_url: str) -> None:
    arc = models
    _token(arc, "alice")
    arc("access", "set", "acme/llm", "gated", "--until", "2031-01-01", "--reason", "embargo")
    arc(
        "access", "set", "acme/llm", "restricted", "--snapshot", "v2", "--reason", "takedown",
        "--withhold", "*.json", "--withhold", "notes/*",
    )  # fmt: skip
    arc("access", "grant", "acme/llm", "alice", "--reason", "co-author")
    arc("access", "revoke", "acme/llm", "alice", "--reason", "left")
    arc("access", "grant", "acme/llm", "alice", "--reason", "back")
    before = _without_ids(arc.json("access", "ls", "--history"))
    for p in (arc.home / "store" / "records").glob("*.json"):
        if json.loads(p.read_bytes())["kind"] in ("access", "grant"):
            p.unlink()  # as if made by a modelarc that kept them in the catalog only

    assert arc.json("upgrade")["written"] == {"access": 2, "grant": 3}
    assert arc.json("upgrade")["written"] == {}  # covered now
    drop_catalog(database_url)
    assert arc.json("rebuild-catalog")["ok"]
    assert _without_ids(arc.json("access", "ls", "--history")) == before


def _put_record(arc: ArchiveCli, body: dict[str, Any], stamp: str = "20300101T000000000000Z") -> Path:
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    path = arc.home / "store" / "records" / f"{stamp}-{hashlib.sha256(data).hexdigest()}.json"
    path.write_bytes(data)
    return path


def test_a_record_of_a_kind_this_modelarc_does_not_know_stops_the_rebuild(
    models: ArchiveCli, database_url: str
) -> None:
    arc = models
    head = {"format": "modelarc.record", "version": 1, "at": "2030-01-01T00:00:00.000000Z", "actor": "future"}
    path = _put_record(arc, {**head, "kind": "quarantine", "model": "acme/llm"})
    drop_catalog(database_url)
    err = models.fail("rebuild-catalog").stderr
    assert path.name in err and "newer modelarc" in err
    assert arc.json("ls") == []  # nothing was rebuilt without it


def test_a_forged_access_record_is_refused_and_reported(models: ArchiveCli, database_url: str) -> None:
    arc = models
    head = {"format": "modelarc.record", "version": 1, "at": "2030-01-01T00:00:00.000000Z", "actor": "forger"}
    common = {**head, "kind": "access", "snapshot": None, "until": None, "reason": "x"}
    # named now, after every record of the fixture (a name over an hour ahead of the clock is refused for that)
    now = dt.datetime.now(dt.UTC)
    bad_level = _put_record(
        arc, {**common, "model": "acme/llm", "level": "secret"}, f"{now:%Y%m%dT%H%M%S%fZ}"
    )
    later = now + dt.timedelta(microseconds=1)
    no_model = _put_record(
        arc, {**common, "model": "acme/gone", "level": "gated"}, f"{later:%Y%m%dT%H%M%S%fZ}"
    )
    drop_catalog(database_url)
    result = arc("rebuild-catalog", "--json", ok=False)
    assert result.exit_code == 5
    refused = json.loads(result.stdout)["refused"]
    assert "not one this modelarc knows" in refused[f"records/{bad_level.name}"]
    assert "acme/gone" in refused[f"records/{no_model.name}"]
    assert arc.json("access", "ls") == []
