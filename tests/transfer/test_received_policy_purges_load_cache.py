"""A policy made stricter by another archive's word removes the snapshot's decoded copies from the load cache, as
`access set` does (archive/access.py ``purge_tightened``).

Only `access set` used to: a copy filled while the weights were public stayed, 0444 in a possibly shared folder,
after a pull brought the remote's stricter policy for a snapshot this archive already held, or after `mirror sync`
tightened a served mirror's policy through ``PUT /v1/access``. A push never changes the policy of a snapshot the
model already holds (tests/transfer/test_pusher_may_reuse.py), so it has no copy of its own to remove.

The server's catalog runs on SQLite and PostgreSQL (``database_url``); the homes are embedded SQLite.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from modelfactory import tiny_tensors, write_model
from transferkit import Home, Server, make_home, trusted_by_server

from modelarc.archive import access as access_module
from modelarc.archive.access import effective_policy, set_policy
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.cache import CachePurge
from modelarc.archive.runtime.loading import load_state_dict


def _cached(archive: Archive, ref: str) -> Path:
    """Load ``ref`` with the load cache; its entry folder in the home's cache, filled."""
    load_state_dict(archive, ref, device="cpu", cache=True)
    _ref, snap = archive.resolve(ref)
    entry = archive.settings.home / "cache" / "entries" / snap.digest.hex
    assert any(entry.rglob("*.safetensors"))
    return entry


def _pulled_and_cached(server: Server, tmp_path: Path) -> tuple[Home, Path]:
    """A public snapshot of the server's, pulled by a new home and loaded there with the load cache: the home and
    the cache entry."""
    server.archive.push(write_model(tmp_path / "pub"), "acme/pub:v1")
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url, "--token", server.read_token)
    bob("pull", "acme/pub:v1", "--remote", "origin")
    with bob.archive() as archive:
        return bob, _cached(archive, "acme/pub:v1")


def test_a_pull_bringing_a_stricter_policy_for_a_held_snapshot_removes_its_cached_copy(
    server: Server, tmp_path: Path
) -> None:
    bob, entry = _pulled_and_cached(server, tmp_path)
    set_policy(server.archive, "acme/pub", "restricted", reason="licence withdrawn")
    bob("pull", "acme/pub:v1", "--remote", "origin")  # held already: only the remote's policy is new
    with bob.archive() as archive:
        policy = effective_policy(archive, "acme/pub", "v1")
        assert (policy.level, policy.source) == ("restricted", "snapshot")
        assert not entry.exists()
        assert _cached(archive, "acme/pub:v1") == entry  # a later load fills it again, private
    # a pull that brings no stricter policy keeps the copy
    bob("pull", "acme/pub:v1", "--remote", "origin")
    assert entry.is_dir()


def test_a_mirror_sync_tightening_a_served_mirrors_policy_removes_its_cached_copy(
    server: Server, tmp_path: Path
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "later"), "acme/later:v1")
    alice("push", write_model(tmp_path / "other", tiny_tensors(seed=3)), "acme/other:v1")
    alice("remote", "add", "m2", server.url, "--token", server.push_token, "--no-trust-keys")
    alice("mirror", "add", "served", "remote:m2")
    assert alice.json("mirror", "sync")[0]["ok"]
    entry = _cached(server.archive, "acme/later:v1")
    other = _cached(server.archive, "acme/other:v1")

    alice("access", "set", "acme/later", "gated", "--reason", "accept the licence first")
    [report] = alice.json("mirror", "sync")  # PUT /v1/access/acme/later on the served mirror
    assert report["ok"] and report["policies_changed"][0]["after"]["level"] == "gated"
    assert not entry.exists() and other.is_dir()  # another model's copy stays

    # a snapshot's override that tightens reaches its copy too; one that changes only the reason keeps it
    again = _cached(server.archive, "acme/later:v1")
    alice("access", "set", "acme/later", "restricted", "--snapshot", "v1", "--reason", "review")
    assert alice.json("mirror", "sync")[0]["ok"]
    assert not again.exists()
    kept = _cached(server.archive, "acme/later:v1")
    alice("access", "set", "acme/later", "restricted", "--snapshot", "v1", "--reason", "still in review")
    [same] = alice.json("mirror", "sync")
    assert same["ok"] and len(same["policies_changed"]) == 1 and kept.is_dir()


def test_a_cached_copy_that_cannot_be_removed_after_the_commit_is_said_and_the_pull_succeeds(
    server: Server, tmp_path: Path
) -> None:
    """The stricter policy is committed before the purge: a purge that fails (here the cache's own tmp/ is a file,
    so the entry cannot be moved out) used to fail the pull after the fact, and a re-run, finding the policy already
    strict, never purged. Now the copy is named as left, and the pull reports success: what it recorded holds."""
    bob, entry = _pulled_and_cached(server, tmp_path)
    scratch = bob.path / "cache" / "tmp"
    for leftover in scratch.iterdir() if scratch.is_dir() else ():
        leftover.unlink()
    if scratch.is_dir():
        scratch.rmdir()
    scratch.write_bytes(b"not a folder")
    set_policy(server.archive, "acme/pub", "restricted", reason="licence withdrawn")
    done = bob("pull", "acme/pub:v1", "--remote", "origin")
    assert "Traceback" not in done.output
    assert f"a load-cache copy of weights now withheld here was left: {bob.path / 'cache'}" in done.output
    with bob.archive() as archive:
        assert effective_policy(archive, "acme/pub", "v1").level == "restricted"
    # run again, nothing is tightened, but the copy still open to others is tried again, and said again while it
    # cannot be removed
    [said] = bob.json("pull", "acme/pub:v1", "--remote", "origin")["cache_left"]
    assert said.startswith(str(bob.path / "cache")) and entry.is_dir()
    scratch.unlink()  # mended: the next run removes it
    assert bob.json("pull", "acme/pub:v1", "--remote", "origin")["cache_left"] == []
    assert not entry.exists()


def _no_purge(*_args: object, **_kwargs: object) -> CachePurge:
    """A command's purge after its commit that does nothing: as if it were killed right after the commit
    (archive/access.py ``purge_after_policy``)."""
    return CachePurge((), 0, ())


def test_the_same_pull_run_again_finishes_one_killed_before_its_purge(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between its commit and its purge, a pull that brought a stricter policy left the copy filled while the
    weights were public; run again it tightens nothing, and used to remove nothing."""
    bob, entry = _pulled_and_cached(server, tmp_path)
    set_policy(server.archive, "acme/pub", "restricted", reason="licence withdrawn")
    with monkeypatch.context() as m:
        m.setattr(access_module, "purge_after_policy", _no_purge)
        bob("pull", "acme/pub:v1", "--remote", "origin")
    assert entry.is_dir()
    bob("pull", "acme/pub:v1", "--remote", "origin")
    assert not entry.exists()
    with bob.archive() as archive:
        private = _cached(archive, "acme/pub:v1")  # filled under the policy: closed to others, and kept
    bob("pull", "acme/pub:v1", "--remote", "origin")
    assert private.is_dir()


def test_the_same_mirror_sync_run_again_finishes_one_killed_before_its_purge(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As for a pull: a PUT /v1/access that tightened a served mirror's policy, its server killed between the
    commit and the purge, left the copy; the same PUT again changes nothing, and used to remove nothing."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "later"), "acme/later:v1")
    alice("remote", "add", "m2", server.url, "--token", server.push_token, "--no-trust-keys")
    alice("mirror", "add", "served", "remote:m2")
    assert alice.json("mirror", "sync")[0]["ok"]
    entry = _cached(server.archive, "acme/later:v1")
    alice("access", "set", "acme/later", "gated", "--reason", "accept the licence first")
    with monkeypatch.context() as m:  # the server's purge (it runs in this process)
        m.setattr(access_module, "purge_after_policy", _no_purge)
        assert alice.json("mirror", "sync")[0]["policies_changed"]
    assert entry.is_dir()
    # `mirror sync` sends nothing once the states agree; the same PUT made again (an admin's, or a sync that died
    # with the server) changes nothing and finishes the purge
    answer = httpx.put(
        f"{server.url}/v1/access/acme/later",
        json={"policies": [{"level": "gated", "reason": "accept the licence first"}]},
        headers={"Authorization": f"Bearer {server.push_token}"},
    )
    assert answer.status_code == 200 and answer.json()["changed"] == [], answer.text
    assert not entry.exists()
