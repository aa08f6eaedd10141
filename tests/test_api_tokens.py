"""Bearer tokens: stored hashed, scopes, revocation; anonymous reads can be turned off."""

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from liveserver import serve
from modelfactory import write_model

from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token, revoke_token
from modelarc.cli.main import cli


@pytest.fixture
def closed_server(tmp_path: Path, database_url: str, monkeypatch):
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    archive, _ = Archive.init(tmp_path / "home")
    archive.push(write_model(tmp_path / "m"), "acme/tiny:v1")
    with serve(archive, anonymous_read=False) as url:
        yield archive, url
    archive.close()


def test_reads_need_a_token_when_anonymous_read_is_off(closed_server) -> None:
    archive, url = closed_server
    anonymous = httpx.get(f"{url}/api/models/acme/tiny/revision/v1")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert httpx.get(f"{url}/docs").status_code == 200  # the API description stays public
    token = create_token(archive, "read", "ci").token
    from huggingface_hub import HfApi

    info = HfApi(endpoint=url, token=token).model_info("acme/tiny", revision="v1")
    assert {s.rfilename for s in info.siblings} == {"config.json", "model.safetensors", "tokenizer.json"}
    bad = httpx.get(f"{url}/v1/stats", headers={"Authorization": "Bearer marc_wrong"})
    assert bad.status_code == 401
    made = create_token(archive, "push", "pusher")
    assert httpx.get(f"{url}/v1/stats", headers={"Authorization": f"Bearer {made.token}"}).status_code == 200
    revoke_token(archive, made.id)
    assert httpx.get(f"{url}/v1/stats", headers={"Authorization": f"Bearer {made.token}"}).status_code == 401


def test_tokens_are_stored_hashed_and_managed_from_the_cli(tmp_path: Path, database_url: str) -> None:
    env = {"MODELARC_HOME": str(tmp_path / "home"), "MODELARC_DATABASE_URL": database_url}
    runner = CliRunner()
    assert runner.invoke(cli, ["init"], env=env).exit_code == 0
    made = runner.invoke(cli, ["token", "create", "--scope", "push", "--name", "ci", "--json"], env=env)
    assert made.exit_code == 0
    import json

    token = json.loads(made.stdout)["token"]
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash, scope FROM api_tokens")).all()
    engine.dispose()
    assert len(stored) == 1 and stored[0][1] == "push" and token not in stored[0][0]
    listed = json.loads(runner.invoke(cli, ["token", "ls", "--json"], env=env).stdout)
    assert listed[0]["scope"] == "push" and not listed[0]["revoked"]
    assert runner.invoke(cli, ["token", "revoke", str(listed[0]["id"])], env=env).exit_code == 0
    assert json.loads(runner.invoke(cli, ["token", "ls", "--json"], env=env).stdout)[0]["revoked"] is True
    # again: nothing changes, it says so, and the audit log does not get a second "revoked now"
    again = runner.invoke(cli, ["token", "revoke", str(listed[0]["id"])], env=env)
    assert again.exit_code == 0 and "was already revoked" in again.stdout and "nothing changed" in again.stdout
    again_json = json.loads(runner.invoke(cli, ["token", "revoke", str(listed[0]["id"]), "--json"], env=env).stdout)
    assert again_json["revoked"] is True and again_json["already_revoked_at"]
    audit = json.loads(runner.invoke(cli, ["audit", "--action", "token.revoke", "--json"], env=env).stdout)
    assert len(audit) == 1
    bad = runner.invoke(cli, ["token", "create", "--scope", "root"], env=env)
    assert bad.exit_code != 0 and "Traceback" not in bad.output


@pytest.mark.parametrize("name", ["", "   ", " ci", "ci ", "c\ni", "c\x1bi"])
def test_a_token_name_no_grant_could_name_is_refused(tmp_path: Path, database_url: str, name: str) -> None:
    """A grant names its token by the name stripped: a token named "" or " ci" was made, and could never be
    granted access by name."""
    import json

    env = {"MODELARC_HOME": str(tmp_path / "home"), "MODELARC_DATABASE_URL": database_url}
    runner = CliRunner()
    assert runner.invoke(cli, ["init"], env=env).exit_code == 0
    bad = runner.invoke(cli, ["token", "create", "--scope", "read", "--name", name], env=env)
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    [line] = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: token name ") and "is refused" in line, line
    assert json.loads(runner.invoke(cli, ["token", "ls", "--json"], env=env).stdout) == []
