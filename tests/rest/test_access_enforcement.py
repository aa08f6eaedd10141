"""Gated and restricted weights over HTTP, on SQLite and PostgreSQL, with the real huggingface_hub client.

No route hands out a gated byte: not /v1/objects (ids guessed from the public manifest), not the Hub resolve route
(GET, HEAD, Range), not the HTML page's download links, not a remote pull. Everything else about the snapshot
stays public: the catalog entry, the manifest, the tree listing with sizes and hashes, config and tokenizer files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hostilekit import batch_frames
from liveserver import serve
from modelfactory import finetune, tiny_tensors, write_model
from transferkit import make_home

from modelarc.archive.access import decide_request, grant, set_policy
from modelarc.archive.remote import batch
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token
from modelarc.registry.queries import audit_events
from modelarc.storage import ObjectId

REASON = "licence requires acceptance of the authors' terms"


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("access")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    tensors = tiny_tensors()
    src = {
        "open": write_model(base / "open", tensors),
        # shares every tensor but one with acme/open: those objects are public through it
        "closed": write_model(base / "closed", finetune(tensors, ["model.layers.1.mlp.weight"], seed=3)),
        "secret": write_model(base / "secret", finetune(tensors, ["model.layers.0.mlp.weight"], seed=4)),
    }
    src["named"] = write_model(base / "named", finetune(tensors, ["model.layers.0.mlp.weight"], seed=5))
    (src["named"] / "notes").mkdir()
    (src["named"] / "notes" / "interviews.txt").write_text("what the annotators said\n" * 40)
    for name, folder in src.items():
        archive.push(folder, f"acme/{name}:v1")
    set_policy(archive, "acme/closed", "gated", reason=REASON)
    set_policy(archive, "acme/named", "gated", reason="personal data", files=["notes/*"])
    set_policy(archive, "acme/secret", "restricted", reason="kept for research under agreement")
    tokens = {
        "admin": create_token(archive, "admin", "root").token,
        "alice": create_token(archive, "read", "alice").token,
        "bob": create_token(archive, "read", "bob").token,
    }
    grant(archive, "acme/closed", "alice", reason="accepted the licence")
    grant(archive, "acme/secret", "alice", reason="a grant that restricted ignores")
    with serve(archive) as url:
        yield {"url": url, "archive": archive, "tokens": tokens, "src": src, "base": base}
    archive.close()


def _auth(site: dict[str, Any], who: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {site['tokens'][who]}"} if who else {}


def _objects(archive: Archive, ref: str) -> tuple[str, set[str], set[str]]:
    """The manifest id, the object ids of weight files only used by this snapshot, and those of other files."""
    _ref, snap = archive.resolve(ref)
    manifest = archive.manifest(snap)
    weights = {c.id for f in manifest.files if f.path.endswith(".safetensors") for p in f.parts for c in p.chunks}
    others = {c.id for f in manifest.files if not f.path.endswith(".safetensors") for p in f.parts for c in p.chunks}
    _o, open_snap = archive.resolve("acme/open:v1")
    shared = {c.id for f in archive.manifest(open_snap).files for p in f.parts for c in p.chunks}
    return snap.digest.hex, weights - shared - others, others


def _chunks(archive: Archive, ref: str) -> set[str]:
    """Every chunk of the snapshot's weight files."""
    _ref, snap = archive.resolve(ref)
    files = archive.manifest(snap).files
    return {c.id for f in files if f.path.endswith(".safetensors") for p in f.parts for c in p.chunks}


@pytest.mark.parametrize("who", [None, "bob"])
def test_guessed_object_ids_of_gated_weights_are_refused(site: dict[str, Any], who: str | None) -> None:
    manifest_id, gated, public = _objects(site["archive"], "acme/closed:v1")
    assert gated and public
    with httpx.Client(base_url=site["url"], headers=_auth(site, who)) as web:
        for oid in sorted(gated):
            answer = web.get(f"/v1/objects/{oid}")
            assert answer.status_code == 403 and answer.headers["X-Error-Code"] == "GatedRepo"
            assert web.head(f"/v1/objects/{oid}").status_code in (403, 405)
            assert REASON in answer.json()["detail"] or "gated" in answer.json()["detail"]
            assert site["archive"].store.get_stored(ObjectId(oid))[:4] not in answer.content
        for oid in sorted(public | {manifest_id}):  # the manifest and the config stay public
            assert web.get(f"/v1/objects/{oid}").status_code == 200
        shared_open = _chunks(site["archive"], "acme/closed:v1") & _chunks(site["archive"], "acme/open:v1")
        assert len(shared_open) >= 3  # every tensor of the gated model but one is acme/open's too
        for oid in sorted(shared_open)[:3]:  # shared with a public snapshot: public
            assert web.get(f"/v1/objects/{oid}").status_code == 200
        restricted = _objects(site["archive"], "acme/secret:v1")[1]
        assert {web.get(f"/v1/objects/{oid}").status_code for oid in restricted} == {403}


@pytest.mark.parametrize("who", [None, "bob", "alice", "admin"])
def test_a_batch_download_judges_each_object_as_its_own_download_would(site: dict[str, Any], who: str | None) -> None:
    manifest_id, gated, public = _objects(site["archive"], "acme/closed:v1")
    _m, restricted, _p = _objects(site["archive"], "acme/secret:v1")
    absent = "d" * 64
    ids = [*sorted(gated)[:3], *sorted(public | {manifest_id}), *sorted(restricted)[:2], absent]
    with httpx.Client(base_url=site["url"], headers=_auth(site, who)) as web:
        answer = web.post("/v1/objects/batch", json={"ids": ids})
        singles = {oid: web.get(f"/v1/objects/{oid}").status_code for oid in ids}
    assert answer.status_code == 200 and answer.headers["content-type"] == batch.MEDIA_TYPE
    frames = batch_frames(answer.content)
    assert [oid for oid, _kind, _payload in frames] == ids
    kinds = {200: batch.OBJECT, 403: batch.REFUSED, 404: batch.MISSING}
    assert {oid: kind for oid, kind, _payload in frames} == {oid: kinds[status] for oid, status in singles.items()}
    for oid, kind, payload in frames:
        if kind == batch.OBJECT:
            assert payload == site["archive"].store.get_stored(ObjectId(oid))
        elif oid != absent:
            assert site["archive"].store.get_stored(ObjectId(oid))[:16] not in payload
    refused = {oid for oid, kind, _payload in frames if kind == batch.REFUSED}
    asked_gated, asked_restricted = set(ids) & gated, set(ids) & restricted
    assert asked_gated and asked_restricted
    assert refused == {
        None: asked_gated | asked_restricted,
        "bob": asked_gated | asked_restricted,
        "alice": asked_restricted,  # her grant opens the gated model, not the restricted one
        "admin": set(),
    }[who]


def test_a_batch_asks_for_a_bounded_number_of_valid_ids(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as web:
        too_many = web.post("/v1/objects/batch", json={"ids": ["d" * 64] * (batch.MAX_BATCH_IDS + 1)})
        bad = web.post("/v1/objects/batch", json={"ids": ["d" * 64, "D" * 64]})
    assert too_many.status_code == 413
    assert bad.status_code == 400 and "ids[1]" in bad.json()["detail"]


def test_granted_and_admin_tokens_read_gated_objects_and_restricted_is_admin_only(site: dict[str, Any]) -> None:
    _m, gated, _p = _objects(site["archive"], "acme/closed:v1")
    _m, restricted, _p = _objects(site["archive"], "acme/secret:v1")
    for who, ids, status in [
        ("alice", gated, 200),
        ("admin", gated, 200),
        ("alice", restricted, 403),  # a grant does not open a restricted model
        ("admin", restricted, 200),
    ]:
        with httpx.Client(base_url=site["url"], headers=_auth(site, who)) as web:
            got = {oid: web.get(f"/v1/objects/{oid}") for oid in ids}
        assert {a.status_code for a in got.values()} == {status}, who
        if status == 200:
            for oid, answer in got.items():
                assert answer.content == site["archive"].store.get_stored(ObjectId(oid))


def test_bytes_read_with_a_token_or_withheld_never_reach_a_shared_cache(site: dict[str, Any]) -> None:
    """Withheld bytes (and anything read with a token) are ``private`` with ``Vary: Authorization`` on every route
    that sends file or object bytes; public bytes read anonymously get a bounded shared lifetime, never a year of
    ``immutable``, so a later gating or withdrawal reaches every cache within the hour."""
    weights = "/acme/closed/resolve/v1/model.safetensors"
    _m, gated, _p = _objects(site["archive"], "acme/closed:v1")
    _ref, snap = site["archive"].resolve("acme/open:v1")
    shared_open = {c.id for f in site["archive"].manifest(snap).files for p in f.parts for c in p.chunks}
    with httpx.Client(base_url=site["url"]) as web:
        alice, admin = _auth(site, "alice"), _auth(site, "admin")
        private = [
            web.get(weights, headers=alice),
            web.head(weights, headers=alice),
            web.get(weights, headers={**alice, "Range": "bytes=0-7"}),
            web.get("/acme/open/resolve/v1/model.safetensors", headers=admin),  # public bytes, but a token
            web.get(f"/v1/objects/{sorted(gated)[0]}", headers=alice),
            web.get(f"/v1/objects/{sorted(shared_open)[0]}", headers=alice),
        ]
        tag = private[0].headers["etag"]
        private.append(web.get(weights, headers={**alice, "If-None-Match": tag}))
        public_file = web.get("/acme/open/resolve/v1/model.safetensors")
        public_config = web.get("/acme/closed/resolve/v1/config.json")  # a gated model's config is public
        public_object = web.get(f"/v1/objects/{sorted(shared_open)[0]}")
        public_oid, gated_oid = sorted(shared_open)[0], sorted(gated)[0]
        revalidated = web.get(f"/v1/objects/{public_oid}", headers={"If-None-Match": f'"{public_oid}"'})
        # the access check comes first: an ETag names no one's permission
        sneaked = web.get(f"/v1/objects/{gated_oid}", headers={"If-None-Match": f'"{gated_oid}"'})
    assert [a.status_code for a in private] == [200, 200, 206, 200, 200, 200, 304]
    for answer in private:
        assert answer.headers["cache-control"] == "private, no-cache", answer.request.url
        assert answer.headers["vary"].lower() == "authorization"
    for answer in (public_file, public_config):  # a tag may move: revalidated (a 304) on every use
        assert answer.status_code == 200 and answer.headers["cache-control"] == "public, no-cache"
        assert answer.headers["vary"].lower() == "authorization"
    assert public_object.status_code == 200
    assert public_object.headers["cache-control"] == "public, max-age=3600"
    assert public_object.headers["vary"].lower() == "authorization"
    assert revalidated.status_code == 304 and revalidated.content == b""
    assert revalidated.headers["cache-control"] == "public, max-age=3600"
    assert sneaked.status_code == 403
    # a refusal varies by token too: a cache must not hand the 403 to a granted token, nor a 200 to anyone
    assert sneaked.headers["vary"].lower() == "authorization"
    with httpx.Client(base_url=site["url"]) as web:
        assert web.get(weights).headers["vary"].lower() == "authorization"  # the Hub route's 403


def test_hub_resolve_refuses_gated_bytes_on_every_method_and_range(site: dict[str, Any]) -> None:
    path = "/acme/closed/resolve/v1/model.safetensors"
    weights = (site["src"]["closed"] / "model.safetensors").read_bytes()
    with httpx.Client(base_url=site["url"]) as web:
        for headers in ({}, {"Range": "bytes=0-7"}, {"Range": "bytes=-100"}, _auth(site, "bob")):
            for method in ("GET", "HEAD"):
                answer = web.request(method, path, headers=headers)
                assert answer.status_code == 403, (method, headers)
                assert answer.headers["X-Error-Code"] == "GatedRepo"
                assert weights[:8] not in answer.content
        assert web.get("/acme/closed/resolve/v1/config.json").status_code == 200  # configs stay public
        tree = web.get("/api/models/acme/closed/tree/v1").json()
        listed = {e["path"]: e for e in tree}
        assert listed["model.safetensors"]["size"] == len(weights)  # names, sizes and hashes stay public
        assert listed["model.safetensors"]["lfs"]["oid"] == hashlib.sha256(weights).hexdigest()
        ranged = web.get(path, headers={"Range": "bytes=0-7", **_auth(site, "alice")})
        assert ranged.status_code == 206 and ranged.content == weights[:8]
        assert web.get(path, headers=_auth(site, "alice")).content == weights
        assert web.get("/v1/snapshots/acme/closed/v1").status_code == 200  # the catalog entry is public
        policy = web.get("/v1/access/acme/closed").json()
        assert (policy["level"], policy["reason"]) == ("gated", REASON)


def test_unmodified_huggingface_hub_raises_gated_repo_error_and_downloads_with_a_grant(
    site: dict[str, Any], tmp_path: Path
) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError

    url = site["url"]
    assert HfApi(endpoint=url).model_info("acme/closed", revision="v1").gated == "manual"
    assert HfApi(endpoint=url).model_info("acme/open", revision="v1").gated is False
    for token in (None, site["tokens"]["bob"]):
        with pytest.raises(GatedRepoError):
            hf_hub_download(
                "acme/closed", "model.safetensors", revision="v1", endpoint=url, token=token or False, cache_dir=tmp_path / "c"
            )
    config = hf_hub_download("acme/closed", "config.json", revision="v1", endpoint=url, token=False, cache_dir=tmp_path / "c")
    assert Path(config).read_bytes() == (site["src"]["closed"] / "config.json").read_bytes()
    got = hf_hub_download(
        "acme/closed", "model.safetensors", revision="v1", endpoint=url, token=site["tokens"]["alice"], cache_dir=tmp_path / "d"
    )
    assert Path(got).read_bytes() == (site["src"]["closed"] / "model.safetensors").read_bytes()


def test_snapshot_page_shows_the_policy_and_its_download_links_are_enforced(site: dict[str, Any]) -> None:
    with httpx.Client(base_url=site["url"]) as web:
        page = web.get("/ui/snapshots/acme/closed/v1").text
        assert 'id="access"' in page and "gated" in page and REASON.replace("'", "&#39;") in page
        links = [part.split('"')[0] for part in page.split('class="download" href="')[1:]]
        assert any(link.endswith("/model.safetensors") for link in links)
        for link in links:
            expected = 403 if link.endswith(".safetensors") else 200
            assert web.get(link).status_code == expected, link
        assert "/v1/access/acme/closed/requests" in page  # a gated model takes requests
        restricted = web.get("/ui/snapshots/acme/secret/v1").text
        assert "restricted" in restricted
        assert "/v1/access/acme/secret/requests" not in restricted  # it would answer 409: nothing to request


def test_access_requests_are_made_with_a_token_and_the_requester_sees_the_decision(site: dict[str, Any]) -> None:
    archive = site["archive"]
    with httpx.Client(base_url=site["url"]) as web:
        anonymous = web.post("/v1/access/acme/closed/requests", json={"justification": "research"})
        assert anonymous.status_code == 401
        bob = _auth(site, "bob")
        assert web.post("/v1/access/acme/closed/requests", json={}, headers=bob).status_code == 400
        made = web.post(
            "/v1/access/acme/closed/requests", json={"justification": "studying 2021 models"}, headers=bob
        )
        assert made.status_code == 201 and made.json()["status"] == "pending"
        again = web.post("/v1/access/acme/closed/requests", json={"justification": "again"}, headers=bob)
        assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
        assert web.get("/acme/closed/resolve/v1/model.safetensors", headers=bob).status_code == 403
        decide_request(archive, made.json()["id"], "grant", reason="research use accepted")
        mine = web.get("/v1/access/requests", headers=bob).json()
        assert [(r["status"], r["decision_reason"]) for r in mine] == [("granted", "research use accepted")]
        assert web.get("/acme/closed/resolve/v1/model.safetensors", headers=bob).status_code == 200
    with archive.catalog.session() as s:
        actions = [(e.action, e.details.get("reason")) for e in audit_events(s) if e.action.startswith("access")]
    assert ("access.set", REASON) in actions and ("access.decide", "research use accepted") in actions


@pytest.mark.parametrize("model, level", [("acme/secret", "restricted"), ("acme/open", "public")])
def test_a_model_that_is_not_gated_refuses_access_requests(site: dict[str, Any], model: str, level: str) -> None:
    """A grant opens gated weights only: a request for anything else could only be granted and still refused."""
    with httpx.Client(base_url=site["url"]) as web:
        bob = _auth(site, "bob")
        asked = web.post(f"/v1/access/{model}/requests", json={"justification": "please"}, headers=bob)
        assert asked.status_code == 409 and asked.headers["x-error-code"] == "AccessNotRequestable"
        assert f"{model} is {level}" in asked.json()["detail"]
        assert [r["model"] for r in web.get("/v1/access/requests", headers=bob).json()] in ([], ["acme/closed"])


def test_remote_pull_of_gated_weights_needs_a_grant_and_carries_the_policy(
    site: dict[str, Any], tmp_path: Path
) -> None:
    carol = make_home(tmp_path, "carol")
    carol("remote", "add", "origin", site["url"])  # anonymous; trusts the server's keys
    refused = carol("pull", "acme/secret:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert refused.exit_code == 15 and "withholds the weights of acme/secret@sha256:" in refused.stderr
    assert "restricted" in refused.stderr and "kept for research under agreement" in refused.stderr
    token = create_token(site["archive"], "admin", "carol-admin").token
    carol("remote", "add", "trusted", site["url"], "--token", token)
    carol("pull", "acme/secret:v1", tmp_path / "out2", "--remote", "trusted")
    assert not (tmp_path / "out" / "model.safetensors").exists()  # the refused pull wrote no weight file
    assert (tmp_path / "out2" / "model.safetensors").read_bytes() == (
        site["src"]["secret"] / "model.safetensors"
    ).read_bytes()
    # what carol's archive would serve, it withholds as the server does
    listed = json.loads(carol("access", "ls", "acme/secret", "--json").stdout)
    assert "restricted" in json.dumps(listed)


def test_files_a_policy_names_are_withheld_with_the_weights(site: dict[str, Any]) -> None:
    archive = site["archive"]
    _ref, snap = archive.resolve("acme/named:v1")
    notes = next(f for f in archive.manifest(snap).files if f.path == "notes/interviews.txt")
    note_ids = {c.id for p in notes.parts for c in p.chunks}
    with httpx.Client(base_url=site["url"]) as web:
        for who in (None, "alice", "bob"):  # alice's grant is for acme/closed, not this model
            headers = _auth(site, who)
            answer = web.get("/acme/named/resolve/v1/notes/interviews.txt", headers=headers)
            assert answer.status_code == 403 and "notes/*" in answer.json()["error"]
            assert {web.get(f"/v1/objects/{oid}", headers=headers).status_code for oid in note_ids} == {403}
            assert web.get("/acme/named/resolve/v1/config.json", headers=headers).status_code == 200
        admin = _auth(site, "admin")
        assert web.get("/acme/named/resolve/v1/notes/interviews.txt", headers=admin).text.startswith("what the")
        page = web.get("/ui/snapshots/acme/named/v1").text
        assert page.count('<span class="tag gated">') == 2  # the weights and the notes
        listed = {e["path"] for e in web.get("/api/models/acme/named/tree/v1", params={"recursive": "1"}).json()}
        assert "notes/interviews.txt" in listed or "notes" in listed  # the name stays public


@pytest.mark.parametrize("until", ["20990101", "2099-W01-1", "2099-1-1"])
def test_a_policy_until_that_is_not_yyyy_mm_dd_is_400(site: dict[str, Any], until: str) -> None:
    """`until` is YYYY-MM-DD (docs/API.md); date.fromisoformat also took a basic-format date and an ISO week date
    (2099-W01-1 read as 2098-12-29). Refused before anything is judged or changed."""
    before = httpx.get(f"{site['url']}/v1/access/acme/open").json()
    answer = httpx.put(
        f"{site['url']}/v1/access/acme/open",
        json={"policies": [{"level": "gated", "reason": "x", "until": until}]},
        headers=_auth(site, "admin"),
    )
    assert answer.status_code == 400 and "expected YYYY-MM-DD" in answer.json()["detail"], answer.text
    assert httpx.get(f"{site['url']}/v1/access/acme/open").json() == before
