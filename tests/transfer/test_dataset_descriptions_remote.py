"""What a push may record about datasets on a served archive, and what a pull records: each its own description.

Datasets are not namespaced: every model of an archive that names a dataset version shares its row. A review found
that a namespace-limited push token, through ``push --data``, chose the name, licence and notes every *other*
model's snapshot stating the same sha256 was shown with and found under (``/v1/snapshots?trained_on=``,
``/v1/datasets``): the first description recorded for a hash won. Refusing any differing description (409) also
refused honest pushes, and pulls of signed snapshots from archives that describe the same data in other words. Now a
row is one whole description: the squatter's labels reach only the squatter's snapshots, and nothing is refused.
Real server, on SQLite and PostgreSQL (tests/transfer/conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from modelfactory import tiny_tensors, write_model
from transferkit import Home, Server, make_home, trusted_by_server

from modelarc.archive.tokens import create_token

PILE_SHA = "ab" * 32  # a public dataset's published file digest: anyone may state it


def _home(server: Server, tmp_path: Path, name: str, token: str) -> Home:
    home = make_home(tmp_path, name)
    trusted_by_server(server, home)
    home("remote", "add", "origin", server.url, "--token", token)
    return home


def _limited(server: Server, tmp_path: Path, name: str) -> Home:
    """A home whose push token may write only the namespace ``name``."""
    return _home(server, tmp_path, name, create_token(server.archive, "push", name, namespaces=[name]).token)


def _push(home: Home, tmp_path: Path, ref: str, seed: int, data: Path) -> None:
    """``push FOLDER REF --data DATA --remote origin`` of a new tiny model."""
    home(
        "push",
        write_model(tmp_path / f"model-{seed}", tiny_tensors(seed=seed)),
        ref,
        "--data",
        data,
        "--remote",
        "origin",
    )


def _pile(tmp_path: Path, name: str = "the-pile", license: str = "mixed") -> Path:
    path = tmp_path / f"{name}-{license}.yaml"
    entry = f"{{name: {name}, version: '1.0', license: {license}, sha256: {PILE_SHA}, role: pretrain}}"
    path.write_text(f"version: 1\ndatasets:\n  - {entry}\n")
    return path


def _get(server: Server, path: str) -> Any:
    answer = httpx.get(server.url + path, headers={"Authorization": f"Bearer {server.read_token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _trained_on(server: Server, name: str) -> list[str]:
    rows = _get(server, f"/v1/snapshots?trained_on={name}")
    rows = rows["snapshots"] if isinstance(rows, dict) else rows
    return sorted(r["model"] for r in rows)


def _datasets(server: Server) -> list[tuple[str, str | None, int]]:
    rows = _get(server, "/v1/datasets")
    rows = rows["datasets"] if isinstance(rows, dict) else rows
    return sorted((r["name"], r["license"], r["snapshots"]) for r in rows)


def _shown(server: Server, model: str) -> list[tuple[str, str | None]]:
    """The datasets ``GET /v1/snapshots/MODEL/v1`` shows the snapshot with."""
    return [(d["name"], d["license"]) for d in _get(server, f"/v1/snapshots/{model}/v1")["datasets"]]


def test_a_limited_token_stating_a_public_sha256_first_labels_only_its_own_snapshot(
    server: Server, tmp_path: Path
) -> None:
    mallory = _limited(server, tmp_path, "mallory")
    _push(mallory, tmp_path, "mallory/m:v1", 1, _pile(tmp_path, "junk-data", "do-not-use"))
    alice = _home(server, tmp_path, "alice", server.push_token)
    _push(alice, tmp_path, "acme/base:v1", 2, _pile(tmp_path))  # honest: accepted

    assert _shown(server, "acme/base") == [("the-pile", "mixed")]
    assert _shown(server, "mallory/m") == [("junk-data", "do-not-use")]
    assert _trained_on(server, "the-pile") == ["acme/base"]
    assert _trained_on(server, "junk-data") == ["mallory/m"]
    assert _datasets(server) == [("junk-data", "do-not-use", 1), ("the-pile", "mixed", 1)]
    detail = _get(server, "/v1/datasets/the-pile")
    [version] = detail["versions"] if isinstance(detail, dict) else detail
    assert version["content_hash"] == PILE_SHA and [u["model"] for u in version["used_by"]] == ["acme/base"]
    assert [o["name"] for o in version["described_otherwise"]] == ["junk-data"]
    page = httpx.get(
        server.url + "/ui/datasets/the-pile", headers={"Authorization": f"Bearer {server.read_token}"}
    )
    assert (
        page.status_code == 200
        and 'href="/ui/datasets/junk-data">junk-data</a> 1.0, license do-not-use' in page.text
    )


def test_a_limited_token_relabelling_a_recorded_sha256_leaves_the_honest_model_alone(
    server: Server, tmp_path: Path
) -> None:
    alice = _home(server, tmp_path, "alice", server.push_token)
    _push(alice, tmp_path, "acme/base:v1", 2, _pile(tmp_path))
    mallory = _limited(server, tmp_path, "mallory")
    _push(mallory, tmp_path, "mallory/m:v1", 1, _pile(tmp_path, "junk-data", "do-not-use"))
    _push(alice, tmp_path, "acme/next:v1", 3, _pile(tmp_path))  # a later honest model: the honest row again

    assert _shown(server, "acme/base") == [("the-pile", "mixed")]
    assert _shown(server, "acme/next") == [("the-pile", "mixed")]
    assert _trained_on(server, "the-pile") == ["acme/base", "acme/next"]
    assert _trained_on(server, "junk-data") == ["mallory/m"]
    assert _datasets(server) == [("junk-data", "do-not-use", 1), ("the-pile", "mixed", 2)]


def test_honest_pushes_share_one_row_and_repeat_a_manifest(server: Server, tmp_path: Path) -> None:
    """Two models trained on one dataset, one manifest pushed twice, by a limited token and an unlimited one."""
    pile = _pile(tmp_path)
    alice = _limited(server, tmp_path, "acme")
    _push(alice, tmp_path, "acme/a:v1", 1, pile)
    _push(alice, tmp_path, "acme/b:v1", 2, pile)
    alice("push", "acme/a:v1", "--remote", "origin")  # the same manifest again: nothing new, nothing refused
    bob = _home(server, tmp_path, "bob", server.push_token)
    _push(bob, tmp_path, "lab/c:v1", 3, pile)
    assert _trained_on(server, "the-pile") == ["acme/a", "acme/b", "lab/c"]
    assert _datasets(server) == [("the-pile", "mixed", 3)]
    detail = _get(server, "/v1/datasets/the-pile")
    [version] = detail["versions"] if isinstance(detail, dict) else detail
    assert version["content_hash"] == PILE_SHA and version["described_otherwise"] == []


def test_a_pull_records_the_description_its_signed_manifest_gives_beside_a_local_one(
    server: Server, tmp_path: Path
) -> None:
    """Bob's archive knows the sha256 under his own words; the pulled snapshot's manifest says others. The pull
    is not refused, and neither description overwrites the other."""
    alice = _home(server, tmp_path, "alice", server.push_token)
    _push(alice, tmp_path, "acme/base:v1", 2, _pile(tmp_path))
    bob = make_home(tmp_path, "bob")
    _push_local = write_model(tmp_path / "bob-model", tiny_tensors(seed=7))
    bob("push", _push_local, "bob/own:v1", "--data", _pile(tmp_path, "pile-dedup", "MIT"))
    bob("remote", "add", "origin", server.url)
    with alice.archive() as a:
        (tmp_path / "alice.pem").write_bytes(a.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob("pull", "acme/base:v1", "--remote", "origin")

    def shown(ref: str) -> list[tuple[str, str | None, str]]:
        return [(d["name"], d["license"], d["content_hash"]) for d in bob.json("show", ref)["datasets"]]  # type: ignore[index]

    assert shown("acme/base:v1") == [("the-pile", "mixed", PILE_SHA)]
    assert shown("bob/own:v1") == [("pile-dedup", "MIT", PILE_SHA)]
    assert sorted(r["model"] for r in bob.json("ls", "--trained-on", "the-pile")) == ["acme/base"]  # type: ignore[attr-defined]
    [version] = bob.json("data", "show", "pile-dedup")  # type: ignore[misc]
    assert [o["name"] for o in version["described_otherwise"]] == ["the-pile"]


def test_a_push_adds_training_data_to_a_snapshot_the_model_holds_only_from_its_pusher_or_an_admin(
    server: Server, tmp_path: Path
) -> None:
    """A re-commit of a snapshot the model already holds (a tag "move" to the same snapshot) could attach the
    pusher's training-data claims to a snapshot someone else pushed: refused (409) unless the token is that
    snapshot's pusher or an admin's, and nothing changes. One already attached is no addition: that push goes on."""
    folder = write_model(tmp_path / "model", tiny_tensors(seed=11))
    alice = _home(server, tmp_path, "alice", create_token(server.archive, "push", "alice").token)
    mallory = _home(server, tmp_path, "mallory", create_token(server.archive, "push", "mallory").token)
    alice("push", folder, "acme/pub:v1", "--remote", "origin")
    stolen = _pile(tmp_path, "stolen-books", "none")
    refused = mallory("push", folder, "acme/pub:v1", "--data", stolen, "--remote", "origin", ok=False)
    assert "training-data" in refused.stderr and "pushed by token:" in refused.stderr, refused.stderr
    assert _shown(server, "acme/pub") == []
    pile = _pile(tmp_path)
    alice("push", folder, "acme/pub:v1", "--data", pile, "--remote", "origin")  # its own pusher may
    assert _shown(server, "acme/pub") == [("the-pile", "mixed")]
    # mallory's own archive still lists the stolen books with the snapshot: her every push of it is refused
    assert "training-data" in mallory("push", "acme/pub:v1", "--remote", "origin", ok=False).stderr
    carol = _home(server, tmp_path, "carol", create_token(server.archive, "push", "carol").token)
    carol("push", folder, "acme/pub:v1", "--data", pile, "--remote", "origin")  # nothing new: goes through
    admin = _home(server, tmp_path, "root", create_token(server.archive, "admin", "root").token)
    admin("push", folder, "acme/pub:v1", "--data", _pile(tmp_path, "c4", "odc-by"), "--remote", "origin")
    assert sorted(_shown(server, "acme/pub")) == [("c4", "odc-by"), ("the-pile", "mixed")]
