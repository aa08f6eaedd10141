"""`remote add` trusts the remote's own signing key only (trust on first use): one key at most, as the remote marks
it, never one the user distrusted, and nothing at all when the remote's list of keys is judged bad."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hostilekit import RewritingProxy, serve_proxy
from transferkit import Home, Server, make_home, trusted_by_server


def _keys(home: Home) -> dict[str, bool]:
    return {k["fingerprint"]: k["trusted"] for k in home.json("keys", "list")}  # type: ignore[union-attr]


def _server_key(server: Server) -> str:
    return next(k.fingerprint for k in server.archive.list_keys() if k.local)


def _rewrite_keys(change: Any) -> Any:
    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if path.endswith("/v1/transfer/keys"):
            return status, headers, json.dumps(change(json.loads(body))).encode()
        return status, headers, body

    return rewrite


def test_remote_add_again_keeps_a_distrusted_key_distrusted(server: Server, tmp_path: Path) -> None:
    bob = make_home(tmp_path, "bob")
    first = bob.json("remote", "add", "origin", server.url)
    own = _server_key(server)
    assert first["trusted_keys"] == [own]  # type: ignore[index]
    bob("keys", "distrust", own[:16])
    again = bob("remote", "add", "origin", server.url, "--token", server.read_token)  # e.g. to set a token
    assert f"not trusting its signing key {own[:16]}…: you distrusted it" in again.stdout
    assert "trusting its signing key" not in again.stdout.replace("not trusting its signing key", "")
    assert _keys(bob)[own] is False


def test_remote_add_trusts_only_the_key_the_remote_calls_its_own(server: Server, tmp_path: Path) -> None:
    """The server also trusts alice's key; bob adds the remote and gets the server's key, not alice's."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    assert [fp for fp, trusted in _keys(bob).items() if trusted and fp != _bob_own(bob)] == [
        _server_key(server)
    ]


def _bob_own(bob: Home) -> str:
    return next(k["fingerprint"] for k in bob.json("keys", "list") if k["local"])  # type: ignore[union-attr,index]


def test_remote_add_refuses_a_remote_claiming_several_own_keys(server: Server, tmp_path: Path) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    bob = make_home(tmp_path, "bob")
    before = _keys(bob)
    proxy = RewritingProxy(
        server.url, rewrite=_rewrite_keys(lambda keys: [{**k, "local": True} for k in keys] * 5)
    )
    with serve_proxy(proxy) as url:
        result = bob("remote", "add", "evil", url, ok=False)
    assert "calls 10 keys its own signing keys" in result.stderr
    assert _keys(bob) == before  # nothing trusted, not even the first
    assert "evil" not in bob("remote", "ls").stdout


def test_remote_add_never_re_trusts_a_key_the_user_distrusted(server: Server, tmp_path: Path) -> None:
    """A hostile remote calls alice's key its own; bob had distrusted it: it stays distrusted."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice_key = next(k.fingerprint for k in server.archive.list_keys() if not k.local)
    bob = make_home(tmp_path, "bob")
    pem = tmp_path / "alice.pem"
    pem.write_text(alice("keys", "export").stdout)
    bob("keys", "import", pem, "--label", "alice")
    bob("keys", "distrust", alice_key[:16])
    proxy = RewritingProxy(
        server.url,
        rewrite=_rewrite_keys(lambda keys: [{**k, "local": k["fingerprint"] == alice_key} for k in keys]),
    )
    with serve_proxy(proxy) as url:
        result = bob("remote", "add", "evil", url)
    assert "you distrusted it" in result.stdout
    assert _keys(bob)[alice_key] is False
    assert _server_key(server) not in _keys(bob)  # not marked as the remote's own: not trusted either


def test_remote_add_refuses_a_key_whose_fingerprint_is_not_its_own(server: Server, tmp_path: Path) -> None:
    bob = make_home(tmp_path, "bob")
    before = _keys(bob)
    proxy = RewritingProxy(
        server.url, rewrite=_rewrite_keys(lambda keys: [{**k, "fingerprint": "ab" * 32} for k in keys])
    )
    with serve_proxy(proxy) as url:
        result = bob("remote", "add", "evil", url, ok=False)
    assert "but its fingerprint is" in result.stderr
    assert _keys(bob) == before


def test_upgrade_reports_nothing_of_the_key_records_remote_add_and_keys_commands_wrote(
    server: Server, tmp_path: Path
) -> None:
    """`upgrade` holds every key record to the key's trust history (docs/FORMAT.md "Older archives"): the records of
    `remote add`, `keys distrust` and `keys trust`, each at its audit entry's time, agree with it."""
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    own = _server_key(server)
    bob("keys", "distrust", own[:16])
    bob("remote", "add", "origin", server.url, "--token", server.read_token)  # keeps it distrusted: no record
    bob("keys", "trust", own[:16])
    bob("remote", "add", "origin", server.url)  # trusted already: no record
    bob("keys", "distrust", own[:16])
    for _ in range(2):
        upgraded = bob.json("upgrade")
        assert upgraded == {**upgraded, "written": {}, "contradicted": [], "not_in_catalog": []}, upgraded


def test_remote_add_says_a_key_already_trusted_is_so_and_offers_no_undo(server: Server, tmp_path: Path) -> None:
    """A remote calling this archive's own key its own (or a remote added again) does not get it reported as newly
    trusted with an undo that would distrust the archive's own key."""
    bob = make_home(tmp_path, "bob")
    own, pem = _bob_own(bob), bob("keys", "export").stdout

    def mine(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**k, "fingerprint": own, "public_pem": pem} for k in keys if k.get("local")]

    with serve_proxy(RewritingProxy(server.url, rewrite=_rewrite_keys(mine))) as url:
        added = bob("remote", "add", "evil", url)
        doc = bob.json("remote", "add", "evil", url)
    assert "distrust" not in added.stdout and f"{own[:16]}… is already trusted here" in added.stdout
    assert doc["trusted_keys"] == [] and doc["already_trusted_keys"] == [own]  # type: ignore[index]
    assert _keys(bob)[own] is True
    bob("remote", "add", "origin", server.url)
    again = bob("remote", "add", "origin", server.url)
    assert "distrust" not in again.stdout and "already trusted here" in again.stdout
