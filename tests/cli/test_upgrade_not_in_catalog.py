"""`modelarc upgrade` names every record of a fact the catalog does not hold at all (NOT IN CATALOG, `not_in_catalog`
in `--json`): a rebuild would replay it and make the fact out of nothing (docs/FORMAT.md "Catalog records", "Older
archives"). It removes nothing and exits 0, as for CONTRADICTED records. The record of a change whose transaction
never committed (a crash between the record and the commit: archive/records.py) is named as such, without accusing
anyone; a move of a tag to where it already pointed, and a re-push, are facts the catalog holds. On SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from modelfactory import tiny_tensors, write_model
from recordkit import plant as _plant
from recordkit import records as _records

from modelarc.archive.records import catalog_time, write_record
from modelarc.archive.repository import Archive, apply_tag
from modelarc.registry.refs import parse_ref

ArchiveCli = Any  # tests/cli/conftest.py
_BODY_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
OTHER_DIGEST = "sha256:" + "0" * 64


def _later(genuine: dict[str, Any]) -> str:
    return (dt.datetime.strptime(genuine["at"], _BODY_TIME) + dt.timedelta(seconds=1)).strftime(_BODY_TIME)


def _other_key(tmp_path: Path) -> dict[str, Any]:
    from modelarc.archive.signing import keys as keyring

    pem = keyring.public_key_pem(keyring.generate_private_key())
    return {"fingerprint": keyring.key_fingerprint(pem), "public_pem": pem.decode(), "label": "planted"}


def _data(arc: ArchiveCli, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps(
            {"version": 1, "datasets": [{"name": "logs", "version": "2", "records": 10, "role": "finetune"}]}
        )
    )
    arc("data", "attach", "r/g:v1", data)


def _grant(arc: ArchiveCli, tmp_path: Path) -> None:
    arc("access", "set", "r/g", "gated", "--reason", "licence")
    arc("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "grant", "r/g", "alice", "--reason", "co-author")


# (what to do live, kind of its record, how to change a copy of it into a fact the catalog lacks, what is named)
CASES: dict[str, tuple[Callable[[ArchiveCli, Path], Any], str, Callable[..., dict[str, Any]], str]] = {
    "snapshot": (
        lambda a, p: None,
        "snapshot",
        lambda g, p: {"model": "evil/g", "tag": "v1"},
        "snapshot evil/g@",
    ),
    "tag": (
        lambda a, p: a("tag", "r/g:v1", "stable"),
        "tag",
        lambda g, p: {"tag": "prod"},
        "tag r/g:prod -> ",
    ),
    "data": (_data, "data", lambda g, p: {"at": _later(g)}, "data attachment "),
    "withdraw": (
        lambda a, p: a("rm", "r/g:v1", "--reason", "licence withdrawn"),
        "withdraw",
        lambda g, p: {"snapshot": OTHER_DIGEST},
        f"withdrawal of r/g@{OTHER_DIGEST}",
    ),
    "access": (
        lambda a, p: a("access", "set", "r/g", "restricted", "--reason", "takedown"),
        "access",
        lambda g, p: {"at": _later(g), "level": "public", "reason": "lifted"},
        "access policy 'public' of r/g",
    ),
    "grant": (_grant, "grant", lambda g, p: {"subject": "mallory"}, "grant of r/g to mallory"),
    "key": (lambda a, p: None, "key", lambda g, p: _other_key(p), "key "),
    # a copy of the snapshot's record that carries a key the catalog never had: a rebuild trusts a carried key
    # that signs the snapshot
    "carried key": (
        lambda a, p: None,
        "snapshot",
        lambda g, p: {"keys": [{k: v for k, v in _other_key(p).items() if k != "label"}]},
        "key ",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_record_of_a_fact_the_catalog_lacks_is_named_and_left_in_place(
    arc: ArchiveCli, tmp_path: Path, case: str
) -> None:
    make, kind, change, named = CASES[case]
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    make(arc, tmp_path)
    genuine = _records(arc, kind)[-1]
    planted = _plant(arc, genuine, **change(genuine, tmp_path))

    upgraded = arc.json("upgrade")
    assert upgraded["written"] == {} and upgraded["contradicted"] == [], upgraded
    [said] = upgraded["not_in_catalog"]
    assert said.startswith(f"{planted}: {named}") and "move it out of records/" in said, said
    shown = arc("upgrade")  # the same at the terminal, and no error: nothing is wrong with the catalog
    assert f"NOT IN CATALOG  {planted}" in shown.stdout
    assert arc.json("upgrade")["not_in_catalog"] == upgraded["not_in_catalog"]
    assert (arc.home / "store" / planted).is_file()  # named, never removed


def test_a_change_that_never_committed_is_named_without_accusing_anyone(
    arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    # `modelarc tag` stopped between writing its record and its commit (archive/repository.py ``tag``): the same
    # steps, in the same transaction, which then rolls back
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive:
        try:
            with archive.catalog.session() as s:
                at = catalog_time()
                moved = apply_tag(s, parse_ref("r/g:v1"), "stable", "tester", at)
                write_record(archive.store.backend, s, "tag", at=at, actor="tester", model="r/g", tag="stable",
                             snapshot=moved.snapshot, previous=moved.previous)  # fmt: skip
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
    assert (
        arc("show", "r/g:stable", ok=False).exit_code != 0
    )  # the catalog lacks the move; the store has its record
    [record] = [r for r in _records(arc, "tag") if r["tag"] == "stable"]

    upgraded = arc.json("upgrade")
    [said] = upgraded["not_in_catalog"]
    assert said.startswith(f"records/{record['name']}: tag r/g:stable -> ")
    assert "a change that never committed" in said and upgraded["contradicted"] == []


def test_moves_to_where_a_tag_pointed_and_repushes_are_facts_the_catalog_holds(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "m")
    arc("push", model, "r/g:v1")
    arc("tag", "r/g:v1", "v1")  # a record, and no history row: the tag pointed there already
    arc("push", model, "r/g:v1")  # a re-push to the same tag: the same
    arc("push", model, "r/g:v2")
    arc("push", write_model(tmp_path / "n", tiny_tensors(seed=5)), "r/g:v3")
    arc("rm", "r/g:v3", "--reason", "licence withdrawn")
    assert len(_records(arc, "tag")) == 1 and len(_records(arc, "snapshot")) == 4

    upgraded = arc.json("upgrade")
    assert upgraded == dict(upgraded, written={}, contradicted=[], not_in_catalog=[]), upgraded


def test_a_revocation_of_a_token_grant_is_no_lacking_fact_after_a_rebuild(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    """A rebuild revokes a grant to token:<id> at once, at the grant's time (token ids are not recovered), so the
    genuine revocation's own time is in no catalog row after it: it is not a fact the catalog lacks."""
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("access", "set", "r/g", "gated", "--reason", "licence")
    arc("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "grant", "r/g", "token:1", "--reason", "by id")
    arc("access", "revoke", "r/g", "token:1", "--reason", "left")
    arc("access", "grant", "r/g", "token:1", "--reason", "back")
    drop_catalog(database_url)
    rebuilt = json.loads(arc("rebuild-catalog", "--json", ok=False).stdout)
    assert "r/g" in json.dumps(rebuilt), rebuilt

    upgraded = arc.json("upgrade")
    assert upgraded["not_in_catalog"] == [] and upgraded["contradicted"] == [], upgraded


def test_a_grant_decided_on_a_request_is_not_contradicted_after_a_rebuild(
    arc: ArchiveCli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`access decide` records its grant with the request it decides; a rebuild brings the grant back (revoked: it
    was to token:<id>) but not the request (requests are catalog-only), and keeps the request's number in the
    grant's audit entry. So the catalog still says which request the grant decided, and upgrade agrees with the
    genuine record; a copy naming another request is still CONTRADICTED."""
    from modelarc.archive.access import request_access
    from modelarc.archive.tokens import token_principal

    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("access", "set", "r/g", "gated", "--reason", "licence")
    made = arc.json("token", "create", "--scope", "read", "--name", "erin")
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
        with Archive.open(arc.home) as archive:
            asked = request_access(archive, "r/g", token_principal(archive, made["token"]), "I study old models")
    arc("access", "decide", str(asked.id), "grant", "--reason", "academic")
    [genuine] = [r for r in _records(arc, "grant") if r["action"] == "grant"]
    assert genuine["request"] == asked.id, genuine
    assert arc.json("upgrade")["contradicted"] == []

    drop_catalog(database_url)
    rebuilt = json.loads(arc("rebuild-catalog", "--json", ok=False).stdout)
    assert rebuilt["replayed"].get("grant") == 1, rebuilt
    upgraded = arc.json("upgrade")
    assert upgraded["contradicted"] == [] and upgraded["not_in_catalog"] == [], upgraded

    planted = _plant(arc, genuine, request=asked.id + 1)
    upgraded = arc.json("upgrade")
    assert len(upgraded["contradicted"]) == 1 and upgraded["contradicted"][0].startswith(planted), upgraded
