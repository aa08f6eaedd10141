"""Bad input gets one clear line and a non-zero exit, and leaves the catalog exactly as it was."""

import json
import struct
from pathlib import Path

import pytest
from modelfactory import write_model


@pytest.fixture
def seeded(arc, tmp_path: Path):
    arc("push", write_model(tmp_path / "good"), "acme/tiny:v1")
    return arc


def _unchanged(arc, before) -> None:
    assert (arc.json("ls"), arc.json("stats")["objects"]) == before


@pytest.mark.parametrize(
    "ref", ["nope", "acme/", "acme/tiny:", "acme/tiny@sha256:xyz", "a/b/c:v1", "acme/tiny:bad tag", ""]
)
def test_malformed_ref_is_refused(seeded, tmp_path: Path, ref: str) -> None:
    before = (seeded.json("ls"), seeded.json("stats")["objects"])
    result = seeded.fail("push", write_model(tmp_path / "m2"), ref)
    assert "invalid REF" in result.stderr
    seeded.fail("pull", ref, tmp_path / "out")
    _unchanged(seeded, before)


@pytest.mark.parametrize(
    "ref, message",
    [
        ("acme/none:v1", "no model acme/none"),
        ("acme/tiny:v9", "no tag 'v9'"),
        ("acme/tiny@sha256:0000", "no snapshot"),
    ],
)
def test_unknown_ref_is_refused(seeded, tmp_path: Path, ref: str, message: str) -> None:
    for cmd in (["pull", ref, tmp_path / "out"], ["show", ref], ["verify", ref], ["tag", ref, "x"]):
        assert message in seeded.fail(*cmd).stderr
    assert not (tmp_path / "out").exists()


def test_a_final_newline_is_no_part_of_a_tag_or_ref(seeded, tmp_path: Path) -> None:
    """``^...$`` under ``re.match`` let "v2\n" through: ``tag`` recorded a tag no REF can name (a REF "...:v2\n"
    parsed as tag v2)."""
    before = (seeded.json("ls"), seeded.json("stats")["objects"])
    assert "invalid tag 'v2\\n'" in seeded.fail("tag", "acme/tiny:v1", "v2\n").stderr
    assert seeded.json("show", "acme/tiny:v1")["tags"] == ["v1"]
    pushes = ["push", write_model(tmp_path / "m2"), "acme/tiny:v2\n"]
    for cmd in (pushes, ["pull", "acme/tiny:v1\n", tmp_path / "o"]):
        assert "invalid REF" in seeded.fail(*cmd).stderr
    _unchanged(seeded, before)
    assert not (tmp_path / "o").exists()


def test_missing_folder_is_refused(seeded, tmp_path: Path) -> None:
    before = (seeded.json("ls"), seeded.json("stats")["objects"])
    result = seeded.fail("push", tmp_path / "does-not-exist", "acme/tiny:v2")
    assert "no such file or folder" in result.stderr
    _unchanged(seeded, before)


def test_truncated_safetensors_is_refused(seeded, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m", config={"model_type": "x"})
    blob = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(blob[: len(blob) - 100])
    before = (seeded.json("ls"), seeded.json("stats")["objects"])
    result = seeded.fail("push", src, "acme/tiny:v2")
    assert "model.safetensors" in result.stderr
    _unchanged(seeded, before)


def test_lying_safetensors_is_refused(seeded, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    header = json.dumps({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}).encode()
    (src / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 40)
    before = (seeded.json("ls"), seeded.json("stats")["objects"])
    result = seeded.fail("push", src, "acme/tiny:v2")
    assert "'w'" in result.stderr and "model.safetensors" in result.stderr
    _unchanged(seeded, before)


def test_unknown_relation_and_parent_are_refused(seeded, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m2")
    assert (
        "unknown relation"
        in seeded.fail("push", src, "acme/x:v1", "--parent", "acme/tiny:v1", "--relation", "stolen").stderr
    )
    assert (
        "no model acme/ghost"
        in seeded.fail("push", src, "acme/x:v1", "--parent", "acme/ghost:v1", "--relation", "finetune").stderr
    )
    assert "invalid date" in seeded.fail("push", src, "acme/x:v1", "--cutoff", "2023-13").stderr
    assert "--relation needs --parent" in seeded.fail("push", src, "acme/x:v1", "--relation", "finetune").stderr


def test_push_to_digest_ref_is_refused(seeded, tmp_path: Path) -> None:
    assert "needs a tag" in seeded.fail("push", write_model(tmp_path / "m2"), "acme/tiny@sha256:abcd").stderr


def test_uninitialised_home_says_run_init(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from modelarc.cli.main import cli

    result = CliRunner().invoke(cli, ["ls"], env={"MODELARC_HOME": str(tmp_path / "nowhere")})
    assert result.exit_code != 0
    assert "modelarc init" in result.stderr


@pytest.mark.parametrize("dest", ["a-file", "a-file/under"])
def test_pull_into_a_file_is_refused_in_one_line(seeded, tmp_path: Path, dest: str) -> None:
    (tmp_path / "a-file").write_text("mine")
    result = seeded.fail("pull", "acme/tiny:v1", tmp_path / dest)
    assert result.exit_code == 7
    assert f"{tmp_path / 'a-file'} exists and is not a folder" in result.stderr
    assert (tmp_path / "a-file").read_text() == "mine"


@pytest.mark.parametrize("where", ["a-file/bundle.sig", "."])
def test_a_signature_path_that_cannot_be_written_is_refused_before_the_files(
    seeded, tmp_path: Path, where: str
) -> None:
    (tmp_path / "a-file").write_text("mine")
    result = seeded.fail("pull", "acme/tiny:v1", tmp_path / "out", "--signature", tmp_path / where)
    assert result.exit_code == 7
    assert not (tmp_path / "out").exists()


def test_an_os_error_no_command_names_is_still_one_line() -> None:
    """The last net: whatever the system refuses that the core did not turn into its own error (a permission, a
    path that is a file) is one ``error:`` line and exit 1, not a traceback; ``--debug`` still shows where."""
    import click
    from click.testing import CliRunner

    from modelarc.cli.main import ArchiveGroup

    @click.group(cls=ArchiveGroup)
    @click.option("--debug", is_flag=True)
    @click.pass_context
    def group(ctx: click.Context, debug: bool) -> None:
        ctx.obj = {"debug": debug}

    @group.command()
    def refused() -> None:
        raise PermissionError(13, "Permission denied", "/srv/models/x")

    result = CliRunner().invoke(group, ["refused"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: permission denied: /srv/models/x"
    debug = CliRunner().invoke(group, ["--debug", "refused"])
    assert "Traceback" in debug.output and debug.exit_code == 1


def test_an_empty_source_or_destination_is_refused_not_taken_for_the_current_folder(
    seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``modelarc push "$DIR" REF`` with DIR unset used to archive whatever folder the script ran in."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "private.txt").write_text("not for the archive")
    monkeypatch.chdir(cwd)
    before = (seeded.json("ls"), seeded.json("stats")["objects"])
    assert "'SOURCE': is empty" in seeded.fail("push", "", "acme/cwd:v1").stderr
    assert "DEST]': is empty" in seeded.fail("pull", "acme/tiny:v1", "").stderr
    _unchanged(seeded, before)
    assert sorted(p.name for p in cwd.iterdir()) == ["private.txt"]


@pytest.mark.parametrize(
    "raised, message",
    [
        (lambda: "\udcff".encode("utf-8"), "text that is not valid UTF-8 (bytes ff)"),
        # a lone surrogate that stands for no byte (a JSON "\ud800" escape): the net itself must not fail on it
        (lambda: "a\ud800".encode("utf-8"), "text that is not valid UTF-8 (\\ud800)"),
        (lambda: int(2**70).to_bytes(8, "little"), "a number is too large"),
    ],
)
def test_text_that_is_not_utf8_and_numbers_too_large_are_one_line_where_no_check_caught_them(
    raised, message: str
) -> None:
    """The nets under the checks at the places that read arguments and files (lone surrogates from bytes that are
    not UTF-8, integers beyond the catalog's or torch's range)."""
    import click
    from click.testing import CliRunner

    from modelarc.cli.main import ArchiveGroup

    @click.group(cls=ArchiveGroup)
    @click.pass_context
    def group(ctx: click.Context) -> None:
        ctx.obj = {}

    @group.command()
    def boom() -> None:
        raised()

    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {message}") and result.output.count("\n") == 1


def test_a_home_that_is_not_printable_utf8_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from modelarc.cli.main import cli

    for home in (tmp_path / "h\udcff", tmp_path / "h\nx"):
        result = CliRunner().invoke(cli, ["--home", str(home), "init"])
        assert result.exit_code == 2 and "is not a printable UTF-8 path" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite+pysqlite:///?cache=shared"])
def test_an_in_memory_catalog_is_refused(tmp_path: Path, url: str) -> None:
    """Each command would open a new, empty catalog: a push recorded nowhere, then advice to run init."""
    from click.testing import CliRunner

    from modelarc.cli.main import cli

    env = {"MODELARC_HOME": str(tmp_path / "home"), "MODELARC_DATABASE_URL": url}
    for args in (["init"], ["ls"]):
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 2 and "in-memory SQLite database" in result.output
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["push"], "error: missing argument 'SOURCE' (see 'modelarc push --help')"),
        (["--no-such-option"], "error: no such option '--no-such-option' (see 'modelarc --help')"),
        (["pushh"], "error: no such command 'pushh'"),
        (["ls", "--limit", "x"], "error: invalid value for '--limit': 'x' is not a valid integer range"),
        (["mirror", "add"], "error: missing argument 'NAME' (see 'modelarc mirror add --help')"),
        (["mirror", "nope"], "error: no such command 'nope' (see 'modelarc mirror --help')"),
    ],
)
def test_a_command_line_click_cannot_parse_is_one_error_line(arc, args: list[str], message: str) -> None:
    """Not click's usage block (Usage:, Try ..., a blank line, Error: ...): one line like every other error, naming
    the help to read, exit code 2."""
    result = arc(*args, ok=False)
    # in process the program is named after the click function (`cli`); installed, it is `modelarc`
    lines = [ln.replace("(see 'cli", "(see 'modelarc") for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Usage:" not in result.output and "Traceback" not in result.output


def test_a_group_named_without_a_command_still_shows_its_help(arc) -> None:
    result = arc("keys", ok=False)
    assert "keys [OPTIONS] COMMAND" in result.output and "Commands:" in result.output
