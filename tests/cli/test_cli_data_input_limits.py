"""A training-data manifest or public key the user names is checked whole, and read bounded, before anything is
archived: a value the catalog cannot hold, a deep nest, a FIFO, /dev/zero or a huge file gets one error line, and
the archive (refs, objects, datasets, audit) is exactly as it was."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model

from modelarc.cli.main import cli

# reading input does not touch the catalog: one backend is enough
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def seeded(arc: Any, tmp_path: Path) -> tuple[Any, Path]:
    folder = write_model(tmp_path / "m")
    arc("push", folder, "acme/tiny:v1")
    return arc, folder


def _state(arc: Any) -> tuple[Any, ...]:
    """What a refused push or attach must leave as it was, down to the files in the store."""
    files = sorted(str(p.relative_to(arc.home)) for p in (arc.home / "store").rglob("*") if p.is_file())
    return arc.json("ls"), arc.json("stats"), arc.json("data", "ls"), arc.json("audit"), files


def _manifest(tmp_path: Path, entry_json: str) -> Path:
    path = tmp_path / "data.json"
    path.write_text('{"version": 1, "datasets": [' + entry_json + "]}")
    return path


def _one_error_line(result: Any) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


UNSTORABLE = {
    # the catalog's counts are 64-bit signed (BIGINT): SQLite raised OverflowError after the snapshot was recorded
    "records beyond 2**63-1": (
        '{"name": "a", "role": "pretrain", "records": 999999999999999999999999999999999}',
        "datasets[0].records",
    ),
    "tokens of 2**63": (f'{{"name": "a", "role": "pretrain", "tokens": {2**63}}}', "datasets[0].tokens"),
    # a JSON escape of half a UTF-16 pair is no character: UTF-8 (canonical_json, the catalog) cannot encode it
    "lone surrogate": ('{"name": "a\\udcff", "role": "pretrain"}', "surrogate"),
    # PostgreSQL's text cannot hold NUL
    "NUL": ('{"name": "a", "role": "pretrain", "notes": "x\\u0000y"}', "NUL"),
}


@pytest.mark.parametrize("case", UNSTORABLE, ids=list(UNSTORABLE))
def test_push_with_an_unstorable_manifest_archives_nothing(seeded: Any, tmp_path: Path, case: str) -> None:
    arc, folder = seeded
    entry, names = UNSTORABLE[case]
    before = _state(arc)
    result = arc.fail("push", folder, "acme/dd:v1", "--data", _manifest(tmp_path, entry))
    assert names in _one_error_line(result)
    assert _state(arc) == before


@pytest.mark.parametrize("case", UNSTORABLE, ids=list(UNSTORABLE))
def test_data_attach_of_an_unstorable_manifest_changes_nothing(
    seeded: Any, tmp_path: Path, case: str
) -> None:
    arc, _ = seeded
    entry, names = UNSTORABLE[case]
    before = _state(arc)
    result = arc.fail("data", "attach", "acme/tiny:v1", _manifest(tmp_path, entry))
    assert names in _one_error_line(result)
    assert _state(arc) == before


def test_the_largest_count_the_catalog_holds_is_accepted(seeded: Any, tmp_path: Path) -> None:
    arc, _ = seeded
    big = 2**63 - 1
    arc(
        "data",
        "attach",
        "acme/tiny:v1",
        _manifest(tmp_path, f'{{"name": "a", "role": "pretrain", "records": {big}}}'),
    )
    assert [d["records"] for d in arc.json("data", "ls")] == [big]


def test_an_escaped_surrogate_pair_is_the_character_it_encodes(seeded: Any, tmp_path: Path) -> None:
    """json.dumps writes any character beyond the BMP as an escaped pair: such a manifest attaches."""
    arc, _ = seeded
    manifest = tmp_path / "emoji.json"
    manifest.write_text(
        json.dumps({"version": 1, "datasets": [{"name": "corpus \U0001f600", "role": "eval"}]})
    )
    arc("data", "attach", "acme/tiny:v1", manifest)
    assert [d["name"] for d in arc.json("data", "ls")] == ["corpus \U0001f600"]


def test_a_schema_error_quotes_at_most_a_few_hundred_characters_of_the_value(seeded: Any, tmp_path: Path) -> None:
    """jsonschema's message quotes the offending value whole: a 3 MB `notes` made a 3 MB "one line"."""
    arc, folder = seeded
    manifest = _manifest(tmp_path, '{"name": "a", "role": "pretrain", "notes": "' + "x" * 3_000_000 + '"}')
    before = _state(arc)
    for result in (
        arc.fail("data", "attach", "acme/tiny:v1", manifest),
        arc.fail("push", folder, "acme/dd:v1", "--data", manifest),
    ):
        line = _one_error_line(result)
        assert "datasets[0].notes" in line and "characters)" in line and len(line) < 1000, line[:2000]
    assert _state(arc) == before


@pytest.mark.parametrize("text", ["[" * 100_000, "- " * 100_000 + "x\n"], ids=["json", "yaml"])
def test_a_deeply_nested_manifest_is_one_error_line(seeded: Any, tmp_path: Path, text: str) -> None:
    arc, folder = seeded
    manifest = tmp_path / "deep.yaml"
    manifest.write_text(text)
    before = _state(arc)
    assert "nested more than" in _one_error_line(arc.fail("data", "attach", "acme/tiny:v1", manifest))
    assert "nested more than" in _one_error_line(arc.fail("push", folder, "acme/dd:v1", "--data", manifest))
    assert _state(arc) == before


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "version: 1\nversion: 2\ndatasets: [{name: a, role: eval}]\n",
            "line 2: key 'version' is duplicated",
        ),
        ("version: 1\ndatasets: [{name: a, role: eval, name: b}]\n", "key 'name' is duplicated"),
        (
            "version: 2020-01-01\ndatasets: [{name: a, role: eval}]\n",
            "version: 1 was expected, 2020-01-01 given",
        ),
        (
            "version: 1\ndatasets: [{name: a, role: eval, version: 2020-01-01}]\n",
            "datasets[0].version: 2020-01-01 is not of type 'string'",
        ),
        (
            "version: 1\ndatasets: [{name: a, role: eval, time_range: {start: '2020', end: '2010'}}]\n",
            "datasets[0].time_range: end 2010 is before start 2020",
        ),
    ],
    ids=[
        "duplicated version",
        "duplicated name",
        "date as version",
        "date as dataset version",
        "end before start",
    ],
)
def test_a_wrong_manifest_is_named_as_written(seeded: Any, tmp_path: Path, text: str, message: str) -> None:
    arc, _ = seeded
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(text)
    before = _state(arc)
    assert message in _one_error_line(arc.fail("data", "attach", "acme/tiny:v1", manifest))
    assert _state(arc) == before


def test_a_time_range_ending_in_the_year_it_starts_is_accepted(seeded: Any, tmp_path: Path) -> None:
    """An end of ``2020`` runs to the end of 2020, so it is not before a start of 2020-06."""
    arc, _ = seeded
    manifest = tmp_path / "range.yaml"
    manifest.write_text(
        "version: 1\ndatasets: [{name: a, role: eval, time_range: {start: 2020-06, end: '2020'}}]\n"
    )
    arc("data", "attach", "acme/tiny:v1", manifest)


# ------------------------------------------------------------------------------ reading the named file


# An address-space cap for the process: a command that reads a huge input (or /dev/zero) whole fails under it
# within a second or two instead of taking the machine's memory.
MEMORY_CAP = 3 << 30


def _modelarc(arc: Any, *args: object) -> subprocess.CompletedProcess[str]:
    """``modelarc ARGS`` in a process of its own, which a FIFO cannot block past the timeout."""
    return subprocess.run(
        [sys.executable, "-m", "modelarc.cli.main", *map(str, args)],
        env={**os.environ, **arc.env},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP)),
    )


def _commands(folder: Path, path: Path | str) -> dict[str, list[object]]:
    return {
        "push --data": ["push", folder, "acme/q:v9", "--data", path],
        "data attach": ["data", "attach", "acme/tiny:v1", path],
        "keys import": ["keys", "import", path],
    }


COMMANDS = ["push --data", "data attach", "keys import"]


def _refused_and_unchanged(arc: Any, args: Any, message: str) -> None:
    """The command exits 2 with one error line holding ``message`` and leaves the archive as it was."""
    before = _state(arc)
    done = _modelarc(arc, *args)
    assert done.returncode == 2, done.stderr
    assert message in _one_error_line(done)
    assert _state(arc) == before


@SQLITE_ONLY
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_is_refused_unread(seeded: Any, tmp_path: Path, command: str, special: str) -> None:
    arc, folder = seeded
    path: Path | str = special
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    _refused_and_unchanged(arc, _commands(folder, path)[command], "not a regular file")


@SQLITE_ONLY
@pytest.mark.parametrize("command", COMMANDS)
def test_a_huge_file_is_refused_without_reading_it_whole(seeded: Any, tmp_path: Path, command: str) -> None:
    arc, folder = seeded
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(2 * MEMORY_CAP)  # sparse: zeros, more than the process may map
    _refused_and_unchanged(arc, _commands(folder, huge)[command], "may have at most")


@SQLITE_ONLY
def test_keys_import_from_stdin_is_bounded_too(seeded: Any) -> None:
    arc, _ = seeded
    pem = arc("keys", "export").stdout
    imported = arc.runner.invoke(cli, ["keys", "import", "-"], input=pem, env=arc.env)
    assert imported.exit_code == 0, imported.output
    refused = arc.runner.invoke(cli, ["keys", "import", "-"], input=b"x" * (1 << 20), env=arc.env)
    assert refused.exit_code == 2
    assert "stdin: more than 65,536 bytes" in _one_error_line(refused)
