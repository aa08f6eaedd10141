"""A pushed manifest whose JSON has the wrong types is a 422 on /v1/transfer/check and /v1/transfer/commit, not a 500.

Found by probing `modelarc serve` (finding 6): the manifest was parsed before the signature was checked, so a push token
and any uploaded object as the "signature" were enough to make the server log a traceback and answer 500 with a
manifest holding ``1e400``, ``Infinity`` or a list as the document. Both routes now read a manifest only once a bundle
by a trusted key signs it; a trusted key that signs such a document gets the same 422 from the manifest's checks.
SQLite and PostgreSQL (the ``server`` fixture).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hostilekit import HostilePusher
from transferkit import Server, make_home, trusted_by_server

from modelarc.archive.repository import Archive
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.bundles import sign_snapshot

HEX = "0" * 64
FILE = b'{"path":"a","size":%s,"sha256":"' + HEX.encode() + b'","kind":"blob","parts":[%s]}'
PART = b'{"kind":"blob","offset":%s,"length":1,"chunks":[{"id":"' + HEX.encode() + b'","length":%s}]}'


def _manifest(size: bytes = b"1", offset: bytes = b"0", chunk: bytes = b"1") -> bytes:
    part = PART % (offset, chunk)
    return b'{"format":"modelarc.manifest","version":1,"files":[' + (FILE % (size, part)) + b"]}"


HOSTILE = {
    "size 1e400": _manifest(size=b"1e400"),
    "offset Infinity": _manifest(offset=b"Infinity"),
    "chunk length NaN": _manifest(chunk=b"NaN"),
    "size true": _manifest(size=b"true"),
    "size 5.9": _manifest(size=b"5.9"),
    "a list": b"[1,2,3]",
    "chunk id a number": _manifest().replace(b'"id":"' + HEX.encode() + b'"', b'"id":123'),
    "tensor shape [1e999]": _manifest().replace(
        b'"kind":"blob","offset"', b'"kind":"tensor","shape":[1e999],"offset"'
    ),
}


def test_hostile_manifests_are_422_on_check_and_commit(server: Server, tmp_path: Path) -> None:
    alice = make_home(
        tmp_path, "alice"
    )  # her key is not trusted here: the manifest is read before the signature
    pusher = HostilePusher(Archive.open(alice.path), server.url, server.push_token)
    junk = pusher.put_bytes(b"not a bundle")
    before = {k: v for k, v in server.archive.stats().to_json().items() if k != "store_bytes_on_disk"}
    answers: dict[str, list[Any]] = {}
    for name, data in HOSTILE.items():
        offer = {
            "format": 1,
            "ref": "alice/bad:v1",
            "snapshot": "sha256:" + pusher.put_bytes(data),
            "signatures": [junk],
        }
        for route in ("/v1/transfer/check", "/v1/transfer/commit"):
            r = pusher.http.post(route, json=offer)
            answers[f"{name} {route}"] = [r.status_code, r.headers.get("content-type"), r.text[:200]]
    wrong = {k: v for k, v in answers.items() if v[:2] != [422, "application/problem+json"]}
    assert not wrong, wrong
    # both read a manifest only once a trusted bundle signs it (refused for that here)
    assert all("signature" in v[2] for v in answers.values()), answers
    after = {k: v for k, v in server.archive.stats().to_json().items() if k != "store_bytes_on_disk"}
    assert after == before


def test_hostile_manifests_signed_by_a_trusted_key_are_422_on_commit(server: Server, tmp_path: Path) -> None:
    """A key the server trusts signs each document: the commit parses it, and its checks answer 422, not 500."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    archive = Archive.open(alice.path)
    pusher = HostilePusher(archive, server.url, server.push_token)
    key = keyring.load_private_key(archive.settings.keys_path / "signing-key.pem")
    answers: dict[str, list[Any]] = {}
    for name, data in HOSTILE.items():
        manifest_id = pusher.put_bytes(data)
        bundle = pusher.put_bytes(sign_snapshot([], f"sha256:{manifest_id}", key, model_name="alice/bad"))
        offer = {"format": 1, "ref": "alice/bad:v1", "snapshot": "sha256:" + manifest_id, "signatures": [bundle]}
        r = pusher.commit(offer)
        answers[name] = [r.status_code, r.headers.get("content-type"), r.text[:200]]
    wrong = {k: v for k, v in answers.items() if v[:2] != [422, "application/problem+json"]}
    assert not wrong, wrong
    assert all("manifest" in v[2] for v in answers.values()), answers
    assert "alice/bad" not in pusher.http.get("/v1/models").text
