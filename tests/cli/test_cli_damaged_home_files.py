"""Files modelarc writes in its home and store and reads back, damaged: a one-line error naming the file and what to
do, or (for a cache) the file treated as absent and rebuilt; never a traceback.

The damage includes "[" nested deeper than the JSON parser's stack (a RecursionError, which no ``except ValueError``
catches), bytes that are not UTF-8, and JSON of the wrong shape. These files do not depend on the catalog's backend,
so the home here uses SQLite only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modelfactory import tiny_llama, write_model

import modelarc
from modelarc.archive import push_index
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.models import load_model
from modelarc.errors import UsageError

DAMAGE = {
    "deeply-nested": b"[" * 100_000,
    "not-utf8": b"\xff\xfe\x00garbage",
    "wrong-shape": b"[1, 2, 3]",
}
ArchiveCli = Any  # tests/cli/conftest.py


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only (the conftest's runs every test on PostgreSQL too): nothing here is the catalog's."""
    return sqlite_url


@pytest.fixture
def home(arc: ArchiveCli) -> ArchiveCli:
    return arc


def one_error_line(arc: ArchiveCli, *args: str) -> str:
    refused = arc.fail(*args)
    assert "Traceback" not in refused.output
    [line] = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    return line


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_home_config_is_one_error_naming_it(home: ArchiveCli, damage: bytes) -> None:
    (home.home / "config.json").write_bytes(damage)
    for command in (["ls"], ["init"]):  # init reads it too: the message must not send the user there
        line = one_error_line(home, *command)
        assert str(home.home / "config.json") in line and "fix it by hand" in line


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_remotes_file_is_one_error_naming_it(home: ArchiveCli, damage: bytes) -> None:
    (home.home / "remotes.json").write_bytes(damage)
    line = one_error_line(home, "remote", "ls")
    assert str(home.home / "remotes.json") in line and "fix or remove it" in line


@pytest.mark.parametrize("entry", [{"url": 5}, {"url": "http://127.0.0.1:1", "token": 5}, {"url": None}])
def test_a_remote_whose_url_or_token_is_not_text_is_one_error_naming_the_file(
    home: ArchiveCli, entry: dict[str, Any]
) -> None:
    """Valid JSON of the right shape with a number where the URL or the token belongs: every `--remote` command
    raised deep inside urllib or the token check (a traceback)."""
    (home.home / "remotes.json").write_text(json.dumps({"format": 1, "remotes": {"r1": entry}}))
    for command in (["ls", "--remote", "r1"], ["remote", "ls"], ["pull", "acme/x:v1", "--remote", "r1"]):
        line = one_error_line(home, *command)
        assert str(home.home / "remotes.json") in line and "not text" in line, line


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@127.0.0.1:1", "http://user:***@127.0.0.1:1"),
        ("http://user:s3/cret@127.0.0.1:1/x", "http://user:***@127.0.0.1:1/x"),  # "/" ends urlsplit's authority
        ("http://user:s3cret@[::1]:1/a@b", "http://user:***@[::1]:1/a@b"),
    ],
)
def test_a_remote_url_with_a_password_is_refused_and_never_shown(home: ArchiveCli, url: str, shown: str) -> None:
    """The client sends a token, never a URL's user part; a password in the URL went into every error message
    (`remote add` says the remote is unreachable, naming it) and `remote ls`."""
    line = one_error_line(home, "remote", "add", "r1", url)
    assert "s3" not in line and "cret" not in line and shown in line, line
    # one written by hand (or by an older modelarc) is refused when used, and listed without its password
    (home.home / "remotes.json").write_text(json.dumps({"format": 1, "remotes": {"r1": {"url": url}}}))
    line = one_error_line(home, "ls", "--remote", "r1")
    assert "s3" not in line and "cret" not in line and shown in line, line
    listed = home("remote", "ls").stdout
    assert shown in listed and "cret" not in listed
    removed = home.json("remote", "rm", "r1")
    assert removed["url"] == shown


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_store_id_is_one_error_and_init_writes_it_back(home: ArchiveCli, damage: bytes) -> None:
    store_id = home.home / "store" / "store-id"
    original = store_id.read_bytes()
    store_id.write_bytes(damage)
    line = one_error_line(home, "ls")
    assert "store-id file is unreadable" in line and "modelarc init" in line
    store_id.unlink()  # what the message says to do
    home("init")
    assert store_id.read_bytes() == original
    home("ls")


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_push_index_is_an_empty_one_and_is_rewritten(
    home: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes
) -> None:
    monkeypatch.setattr(push_index, "SETTLE_SECONDS", 0.0)  # the files were just written (the rule: 2 s)
    source = write_model(tmp_path / "src")
    home("push", source, "acme/base:v1")
    index = home.home / "push-index.json"
    index.write_bytes(damage)
    again = home("push", source, "acme/base:v2")
    assert (
        "unchanged since an earlier push" not in again.output
    )  # the files were read again: the index was empty
    assert len(json.loads(index.read_bytes())["files"]) == 3  # and written whole again
    assert "unchanged since an earlier push" in home("push", source, "acme/base:v3").output


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_load_cache_entry_is_absent_and_rebuilt(
    home: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes
) -> None:
    home("push", tiny_llama(tmp_path / "m"), "acme/m:v1", "--no-progress")
    monkeypatch.setenv("MODELARC_DATABASE_URL", home.env["MODELARC_DATABASE_URL"])
    with Archive.open(home.home) as archive:
        load_model(archive, "acme/m:v1", device="cpu", cache=True)
    [entry_json] = (home.home / "cache" / "entries").glob("*/entry.json")
    entry_json.write_bytes(damage)
    assert home.json("cache", "ls")["entries"] == []
    with Archive.open(home.home) as archive:
        load_model(archive, "acme/m:v1", device="cpu", cache=True)
    assert [e["model"] for e in home.json("cache", "ls")["entries"]] == ["acme/m"]


# A lockfile is written by `modelarc lock` and read back only by the Python API (load_model's ``lock``).
@pytest.mark.parametrize(
    "damage",
    [*DAMAGE.values(), b'{"format": "modelarc.lock", "version": 1, "refs": []}'],
    ids=[*DAMAGE.keys(), "refs-not-an-object"],
)
def test_a_damaged_lockfile_is_one_usage_error_naming_it(
    home: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes
) -> None:
    lock = tmp_path / "modelarc.lock"
    lock.write_bytes(damage)
    monkeypatch.setenv("MODELARC_HOME", str(home.home))
    monkeypatch.setenv("MODELARC_DATABASE_URL", home.env["MODELARC_DATABASE_URL"])
    with pytest.raises(UsageError) as refused:
        modelarc.load_model("acme/m:v1", device="cpu", lock=lock)
    assert str(lock) in str(refused.value) and "modelarc lock" in str(refused.value)


def test_a_home_that_is_a_loop_of_links_is_one_error_without_a_fix_by_hand(home: ArchiveCli, tmp_path: Path) -> None:
    """The message told the user to fix a config.json by hand, when there is none: the home itself loops."""
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    looped = type(home)(tmp_path / "l1", home.env["MODELARC_DATABASE_URL"])
    line = one_error_line(looped, "ls")
    assert "cannot read" in line and "symbolic links" in line and "fix it by hand" not in line, line


def test_a_home_that_is_a_file_names_where_it_was_set(home: ArchiveCli, tmp_path: Path) -> None:
    """From MODELARC_HOME the refusal blamed --home, which was never given."""
    (tmp_path / "afile").write_text("")
    from_env = type(home)(tmp_path / "afile", home.env["MODELARC_DATABASE_URL"])
    assert one_error_line(from_env, "ls").startswith(f"error: MODELARC_HOME={tmp_path / 'afile'}: ")
    assert "invalid value for '--home'" in one_error_line(home, "--home", str(tmp_path / "afile"), "ls")
