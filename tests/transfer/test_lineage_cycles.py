"""Lineage stays acyclic whatever order pushes arrive in: a snapshot declaring a parent that already descends from
it is refused (one line), an edge a later recording would add to close a cycle is left out and reported, and an
edge recorded later than its child is not shown ``--as-of`` a day before it was recorded."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
from click.testing import CliRunner
from modelfactory import tiny_tensors, write_model
from transferkit import Home, Server, make_home, trusted_by_server

from modelarc.cli.main import cli
from modelarc.errors import LineageCycleError
from modelarc.registry import queries as q
from modelarc.registry.models import Lineage, Snapshot
from modelarc.registry.refs import parse_ref
from modelarc.registry.snapshots import parents_of


def _home(server: Server, tmp_path: Path, name: str, *, parent: str | None, child: str | None) -> Home:
    """A home holding evil/a and evil/b (the same bytes in every home), ``child`` declared on ``parent``."""
    home = make_home(tmp_path, name)
    trusted_by_server(server, home)
    files = {m: write_model(tmp_path / f"{name}-{m}", tiny_tensors(seed=s)) for m, s in (("a", 1), ("b", 2))}
    order = [parent, child] if parent else ["a", "b"]
    for m in order:
        lineage = ["--parent", f"evil/{parent}:v1", "--relation", "finetune"] if m == child else []
        home("push", files[m], f"evil/{m}:v1", *lineage)
    home("remote", "add", "origin", server.url, "--token", server.push_token)
    return home


def _parents(server: Server, ref: str) -> list[str]:
    with server.archive.catalog.session() as s:
        return [p.model for p in parents_of(s, q.resolve_snapshot(s, parse_ref(ref)).row_id)]


def _server_cli(server: Server, *args: str) -> object:
    env = {
        "MODELARC_HOME": str(server.archive.settings.home),
        "MODELARC_DATABASE_URL": server.archive.settings.database_url,
        "MODELARC_ACTOR": "tester",
    }
    done = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def test_a_push_declaring_the_reverse_of_a_declared_parent_is_refused(server: Server, tmp_path: Path) -> None:
    """a declares b in one home, b declares a in another: the second claim would close a -> b -> a."""
    one = _home(server, tmp_path / "1", "one", parent="b", child="a")
    two = _home(server, tmp_path / "2", "two", parent="a", child="b")
    one("push", "evil/a:v1", "--remote", "origin")  # the server lacks b: a's parent is kept as declared
    refused = two("push", "evil/b:v1", "--remote", "origin", "--with-parents", ok=False)
    assert refused.exit_code == LineageCycleError.exit_code
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: remote origin: evil/b@sha256:") and "cannot be its own ancestor" in line, (
        line
    )
    assert "declares parent evil/a@sha256:" in line
    one("push", "evil/a:v1", "--remote", "origin", "--with-parents")  # the first claim records
    assert _parents(server, "evil/a:v1") == ["evil/b"] and _parents(server, "evil/b:v1") == []
    assert _server_cli(server, "ls", "--descendant-of", "evil/a:v1") == []


def test_an_edge_that_would_close_a_cycle_in_an_older_catalog_is_left_out_and_reported(
    server: Server, tmp_path: Path
) -> None:
    """An older modelarc recorded b -> a while a still declared b, unrecorded: the push that brings b records no
    a -> b edge, says so (a warning line, and ``lineage_refused`` in --json), and is not an error."""
    one = _home(server, tmp_path / "1", "one", parent="b", child="a")
    three = _home(server, tmp_path / "3", "three", parent=None, child=None)
    one("push", "evil/a:v1", "--remote", "origin")
    three("push", "evil/b:v1", "--remote", "origin")
    with (
        server.archive.catalog.session() as s
    ):  # what an older modelarc accepted from a home declaring b on a
        a = q.resolve_snapshot(s, parse_ref("evil/a:v1")).row_id
        b = q.resolve_snapshot(s, parse_ref("evil/b:v1")).row_id
        s.add(Lineage(child_id=b, parent_id=a, relation="finetune"))
    out = one("push", "evil/a:v1", "--remote", "origin", "--with-parents")
    assert "warning: lineage to evil/b@sha256:" in out.stderr
    assert "the parent already descends from it, so the edge would close a cycle" in out.stderr
    answer = json.loads(one("push", "evil/a:v1", "--remote", "origin", "--json").stdout)
    assert [p.split("@")[0] for p in answer["lineage_refused"]] == ["evil/b"]
    assert _parents(server, "evil/a:v1") == [] and _parents(server, "evil/b:v1") == ["evil/a"]
    assert [r["model"] for r in _server_cli(server, "ls", "--descendant-of", "evil/a:v1")] == ["evil/b"]  # type: ignore[index]
    assert _server_cli(server, "ls", "--descendant-of", "evil/b:v1") == []


def test_as_of_leaves_out_an_edge_recorded_after_the_day(server: Server, tmp_path: Path) -> None:
    """a was recorded in 2020 without its edge to b (the server lacked b); the edge came with b, later: as of 2021,
    b had no descendants, on the CLI and on /v1/snapshots alike."""
    one = _home(server, tmp_path / "1", "one", parent="b", child="a")
    one("push", "evil/a:v1", "--remote", "origin")
    with server.archive.catalog.session() as s:
        s.query(Snapshot).update({"created_at": dt.datetime(2020, 1, 1)})
    one("push", "evil/a:v1", "--remote", "origin", "--with-parents")  # brings b, and the a -> b edge, now
    with server.archive.catalog.session() as s:
        s.query(Snapshot).update({"created_at": dt.datetime(2020, 1, 1)})  # b too: only the edge is recent
        (edge,) = s.query(Lineage).all()
        assert edge.created_at.year >= 2026
    assert _server_cli(server, "ls", "--as-of", "2021-01-01", "--descendant-of", "evil/b:v1") == []
    now = _server_cli(server, "ls", "--descendant-of", "evil/b:v1")
    assert [r["model"] for r in now] == ["evil/a"]  # type: ignore[union-attr, index]
    auth = {"Authorization": f"Bearer {server.read_token}"}
    then = httpx.get(
        f"{server.url}/v1/snapshots",
        params={"descendant_of": "evil/b:v1", "as_of": "2021-01-01"},
        headers=auth,
    )
    assert then.status_code == 200 and then.json() == [], then.text
    later = httpx.get(f"{server.url}/v1/snapshots", params={"descendant_of": "evil/b:v1"}, headers=auth)
    assert [r["model"] for r in later.json()] == ["evil/a"], later.text


def test_a_rebuilt_catalog_dates_an_edge_by_the_record_that_added_it(server: Server, tmp_path: Path) -> None:
    one = _home(server, tmp_path / "1", "one", parent="b", child="a")
    one("push", "evil/a:v1", "--remote", "origin")
    one("push", "evil/a:v1", "--remote", "origin", "--with-parents")  # the edge comes with this later record
    with server.archive.catalog.session() as s:
        (live,) = s.query(Lineage).all()
        edge_at, child_at = live.created_at, live.child.created_at
    assert edge_at > child_at
    rebuilt_url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    env = {"MODELARC_HOME": str(server.archive.settings.home), "MODELARC_DATABASE_URL": rebuilt_url}
    done = CliRunner().invoke(cli, ["rebuild-catalog"], env=env, catch_exceptions=False)
    assert done.exit_code == 0 and "0 not replayed" in done.output, done.output
    from modelarc.registry.db import Catalog

    catalog = Catalog(rebuilt_url)
    try:
        with catalog.session() as s:
            (edge,) = s.query(Lineage).all()
            assert (edge.created_at, edge.child.created_at) == (edge_at, child_at)
    finally:
        catalog.dispose()
