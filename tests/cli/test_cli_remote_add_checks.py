"""``remote add`` refuses, before contacting anything or writing remotes.json, a URL no request could go to (not
http(s), no host, a port outside 1-65535, an unclosed IPv6 bracket) and a token no HTTP header can carry; one
already stored with such a token is named in one line at its first use, without showing the token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ArchiveCli


@pytest.fixture
def arc(tmp_path: Path, sqlite_url: str) -> ArchiveCli:
    """SQLite only: nothing here reaches the catalog beyond opening it."""
    home = ArchiveCli(tmp_path / "home", sqlite_url)
    home("init")
    return home


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:0",
        "http://127.0.0.1:-1",
        "http://127.0.0.1:port",
        "http://:8470",
        "ftp://127.0.0.1:8470",
        "127.0.0.1:8470",
        "http://127.0.0.1 :8470",
    ],
)
@pytest.mark.parametrize("trust", ["--no-trust-keys", "--trust-keys"])
def test_a_url_no_request_could_go_to_is_refused(arc, url: str, trust: str) -> None:
    result = arc.fail("remote", "add", "r", url, trust)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: remote URL {url!r} must be http(s)://host[:port], with a port from 1 to 65535"
    )
    assert not (arc.home / "remotes.json").exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:1", "https://[::1]:65535/prefix/", "http://host.example"])
def test_a_url_with_a_host_and_a_port_in_range_is_kept(arc, url: str) -> None:
    arc("remote", "add", "r", url, "--no-trust-keys")
    assert [(r["name"], r["url"]) for r in arc.json("remote", "ls")] == [("r", url.rstrip("/"))]


@pytest.mark.parametrize("token", ["ma_ab\ncd", "ma_ab cd", "ma_ab\tcd", "ma_ab\x00cd", "ma_\x7f", "ma_é"])
def test_a_token_no_header_can_carry_is_refused_without_showing_it(arc, token: str) -> None:
    result = arc.fail("remote", "add", "r", "http://127.0.0.1:8470", "--no-trust-keys", "--token", token)
    assert result.exit_code == 2
    assert "the token of remote 'r' has a space, a line break" in result.stderr
    assert "ma_" not in result.output
    assert not (arc.home / "remotes.json").exists()


def test_a_stored_token_no_header_can_carry_is_named_at_its_first_use(arc) -> None:
    doc = {"format": 1, "remotes": {"r": {"url": "http://127.0.0.1:8470", "token": "ma_ab\ncd"}}}
    (arc.home / "remotes.json").write_text(json.dumps(doc))
    result = arc.fail("ls", "--remote", "r")
    assert result.exit_code == 2
    assert "the token of remote 'r' has a space, a line break" in result.stderr
    assert "ma_ab" not in result.output


@pytest.mark.parametrize("name", ["r\n", "r x", ".r", ""])
def test_a_remote_name_of_other_characters_is_refused(arc, name: str) -> None:
    """``^...$`` under ``re.match`` let "r\n" through (the ``$`` matches before a final newline)."""
    result = arc.fail("remote", "add", name, "http://127.0.0.1:8470", "--no-trust-keys")
    assert result.exit_code == 2 and "use letters, digits" in result.stderr
    assert not (arc.home / "remotes.json").exists()


def test_remote_ls_shows_name_and_url_without_escapes(arc) -> None:
    arc("remote", "add", "up", "http://127.0.0.1:9", "--no-trust-keys")
    assert arc("remote", "ls").stdout.strip() == "up  http://127.0.0.1:9"


@pytest.mark.parametrize("remotes", [None, {"r1": {"url": "ftp://127.0.0.1:1"}}], ids=["unknown", "unusable"])
def test_push_to_an_unknown_or_unusable_remote_is_refused_before_a_byte_is_archived(
    arc: ArchiveCli, tmp_path: Path, remotes: dict | None
) -> None:
    """`push SOURCE REF --remote NAME` archives locally, then sends: a mistyped NAME failed only after the local
    push, with the snapshot recorded and the tag moved (as `--mirror` with an unknown mirror never did)."""
    from modelfactory import tiny_tensors, write_model

    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "acme/x:v1")
    if remotes is not None:
        (arc.home / "remotes.json").write_text(json.dumps({"format": 1, "remotes": remotes}))
    before, log = arc.json("ls"), arc("log", "acme/x").stdout
    objects = sorted(p.name for p in (arc.home / "store" / "objects").rglob("*") if p.is_file())
    result = arc.fail("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "acme/x:v1", "--remote", "r1")
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and ("no remote named 'r1'" in line or "must be http(s)" in line), line
    assert arc.json("ls") == before and arc("log", "acme/x").stdout == log
    assert sorted(p.name for p in (arc.home / "store" / "objects").rglob("*") if p.is_file()) == objects
