"""A fine-tune pushed to a remote that lacks its parent is recorded there without the edge, and the declaration is
kept: a later push that brings the parent (``--with-parents``) records exactly that edge, later pushes of the
fine-tune stay accepted, and a rebuilt catalog says the same. Another parent than the one declared is still a
provenance conflict."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from modelfactory import finetune, tiny_tensors, write_model
from transferkit import Home, Server, make_home, trusted_by_server

from modelarc.cli.main import cli
from modelarc.errors import ProvenanceConflictError
from modelarc.registry import queries as q
from modelarc.registry.refs import parse_ref
from modelarc.registry.snapshots import parents_of


def _pusher(server: Server, tmp_path: Path, name: str, base_seed: int) -> Home:
    """A home trusted by the server, with a base (its own, by seed) and acme/ft:v1 on it, and remote origin."""
    home = make_home(tmp_path, name)
    trusted_by_server(server, home)
    home("push", write_model(tmp_path / f"{name}-base", tiny_tensors(seed=base_seed)), f"acme/{name}-base:v1")
    ft = write_model(tmp_path / "ft", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"]))
    home("push", ft, "acme/ft:v1", "--parent", f"acme/{name}-base:v1", "--relation", "finetune")
    home("remote", "add", "origin", server.url, "--token", server.push_token)
    return home


def _server_parents(server: Server, ref: str) -> list[tuple[str, str]]:
    with server.archive.catalog.session() as s:
        snap = q.resolve_snapshot(s, parse_ref(ref))
        return [(p.model, p.relation) for p in parents_of(s, snap.row_id)]


def test_with_parents_after_a_push_without_records_the_declared_lineage(
    server: Server, tmp_path: Path
) -> None:
    alice = _pusher(server, tmp_path, "alice", base_seed=7)
    first = alice("push", "acme/ft:v1", "--remote", "origin").stdout
    assert "not recorded: the receiver does not have it" in first and "--with-parents" in first
    assert _server_parents(server, "acme/ft:v1") == []
    out = alice("push", "acme/ft:v1", "--remote", "origin", "--with-parents").stdout
    assert out.count("pushed ") == 2 and "not recorded" not in out
    assert _server_parents(server, "acme/ft:v1") == [("acme/alice-base", "finetune")]
    alice("tag", "acme/ft:v1", "v2")
    alice("push", "acme/ft:v2", "--remote", "origin")  # a later push of it is not refused

    # the store's records say the same: `upgrade` finds nothing to add, and a catalog rebuilt from them has the edge
    home = server.archive.settings.home
    live = {
        "MODELARC_HOME": str(home),
        "MODELARC_DATABASE_URL": server.archive.settings.database_url,
        "MODELARC_ACTOR": "tester",
    }
    records = sorted((home / "store" / "records").iterdir())
    runner = CliRunner()
    upgraded = runner.invoke(cli, ["upgrade"], env=live, catch_exceptions=False)
    assert upgraded.exit_code == 0 and "CONTRADICTED" not in upgraded.output, upgraded.output
    assert sorted((home / "store" / "records").iterdir()) == records, upgraded.output
    rebuilt = {**live, "MODELARC_DATABASE_URL": f"sqlite:///{tmp_path / 'rebuilt.db'}"}
    done = runner.invoke(cli, ["rebuild-catalog"], env=rebuilt, catch_exceptions=False)
    assert done.exit_code == 0 and "0 not replayed" in done.output, done.output
    tree = runner.invoke(cli, ["lineage", "acme/ft:v2"], env=rebuilt, catch_exceptions=False)
    assert tree.exit_code == 0 and "finetune: acme/alice-base@" in tree.output, tree.output


def test_a_parent_other_than_the_declared_one_is_still_refused(server: Server, tmp_path: Path) -> None:
    alice = _pusher(server, tmp_path / "a", "alice", base_seed=7)
    alice("push", "acme/ft:v1", "--remote", "origin")  # declared on acme/alice-base, which the server lacks
    bob = _pusher(server, tmp_path / "b", "bob", base_seed=8)  # the same fine-tune, declared on another base
    bob("push", "acme/bob-base:v1", "--remote", "origin")
    refused = bob("push", "acme/ft:v1", "--remote", "origin", ok=False)
    assert refused.exit_code == ProvenanceConflictError.exit_code
    assert "other provenance: parent acme/bob-base@" in refused.stderr
    assert _server_parents(server, "acme/ft:v1") == []
    alice("push", "acme/ft:v1", "--remote", "origin", "--with-parents")  # the declared one still records
    assert _server_parents(server, "acme/ft:v1") == [("acme/alice-base", "finetune")]


def test_with_parents_does_not_advise_itself_for_a_parent_it_cannot_send(server: Server, tmp_path: Path) -> None:
    """A parent withdrawn here is never sent (``ancestors_of``): the warning said to push again with
    --with-parents to a user who had just done so."""
    alice = _pusher(server, tmp_path, "alice", base_seed=7)
    alice("rm", "acme/alice-base:v1", "--reason", "retired")
    out = alice("push", "acme/ft:v1", "--remote", "origin", "--with-parents").stdout
    (line,) = [ln for ln in out.splitlines() if "not recorded" in ln]
    assert "push again" not in line and "could not send it: it is withdrawn or not archived here" in line, out
    plain = alice("push", "acme/ft:v1", "--remote", "origin").stdout
    assert "push again with --with-parents" in plain, plain
