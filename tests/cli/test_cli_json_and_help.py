"""What README promises of every command: `--json` (but for the three that print a format of their own), a
description, and help for each option; and the JSON of the commands that had none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from conftest import ArchiveCli

from modelarc.cli.main import cli

# each prints a format of its own (a PEM key, a lockfile, a server's log), as README says
OWN_FORMAT = {"keys export", "lock", "serve"}


def _commands(cmd: click.Command = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


def test_every_command_takes_json_but_those_with_their_own_format() -> None:
    """token revoke, remote rm and mirror rm had no --json, though README said every command took it."""
    lacking = {name for name, cmd in _commands() if not any("--json" in p.opts for p in cmd.params)}
    assert lacking == OWN_FORMAT


def test_every_command_and_option_has_help() -> None:
    """token revoke had no description, pull's --progress/--no-progress and a few options no help."""
    missing = [
        f"{name} {param.opts[0]}" if isinstance(param, click.Option) else name
        for name, cmd in _commands()
        for param in [None, *cmd.params]
        if (param is None and not cmd.help) or (isinstance(param, click.Option) and not param.help)
    ]
    assert missing == []


def test_pull_jobs_help_names_no_hub_download(arc: ArchiveCli) -> None:
    """pull refuses hf://, yet its --jobs help said it downloaded from a Hub endpoint."""
    assert "hf://" not in arc("pull", "--help").stdout
    assert "hf://" in arc("push", "--help").stdout


def test_token_revoke_json(arc: ArchiveCli) -> None:
    made = arc.json("token", "create", "--scope", "read")
    revoked = arc.json("token", "revoke", str(made["id"]))
    assert revoked == {"id": made["id"], "revoked": True, "already_revoked_at": None}
    assert [t["revoked"] for t in arc.json("token", "ls")] == [True]


def test_remote_rm_json(arc: ArchiveCli) -> None:
    arc("remote", "add", "up", "http://127.0.0.1:9", "--no-trust-keys")
    assert arc.json("remote", "rm", "up") == {"name": "up", "url": "http://127.0.0.1:9", "removed": True}
    assert arc.json("remote", "ls") == []


def test_mirror_rm_json(arc: ArchiveCli, tmp_path: Path) -> None:
    added = arc.json("mirror", "add", "backup", tmp_path / "m")
    assert arc.json("mirror", "rm", "backup") == {"name": "backup", "target": added["target"], "removed": True}
    assert arc.json("mirror", "ls") == []


@pytest.mark.parametrize("args", [("token", "revoke", "7"), ("remote", "rm", "nope"), ("mirror", "rm", "nope")])
def test_a_refused_removal_with_json_is_one_error_line(arc: ArchiveCli, args: tuple[str, ...]) -> None:
    result = arc.fail(*args, "--json")
    assert result.stdout == ""
