"""A snapshot's provenance is its pusher's word, never signed (the bundles sign the files). A pull takes it from the
remote's offer, which anything between the two archives can rewrite: the puller records it as the remote's word,
by name and URL, and never as the local user's, nor next to a signature as if that covered it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hostilekit import RewritingProxy, rewriting_offer, serve_proxy
from liveserver import serve
from modelfactory import write_model
from transferkit import Home, Server, copy_into, make_home, trusted_by_server

from modelarc.archive.provenance.statement import MAX_PUSHED_BY, provenance_source, remote_identity
from modelarc.archive.records import read_records
from modelarc.cli.main import cli


@pytest.fixture(scope="module")
def pushed(module_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice/, a pusher the server trusts, who pushed m1/ as acme/m:v1 with a cutoff and license of her own."""
    made = tmp_path_factory.mktemp("pushed")
    home = make_home(made, "alice")
    trusted_by_server(module_server, home)
    home("remote", "add", "origin", module_server.url, "--token", module_server.push_token)
    home(
        "push", write_model(made / "m1"), "acme/m:v1", "--remote", "origin",
        "--cutoff", "2024-03", "--license", "mit", "--description", "alice's own words",
    )  # fmt: skip
    return made


@pytest.fixture
def alice(pushed: Path, tmp_path: Path) -> Home:
    copy_into(pushed, tmp_path)
    return Home(tmp_path / "alice", CliRunner())


def _bob(tmp_path: Path, alice: Home) -> Home:
    """A puller who trusts alice's key (her bundle signs the files)."""
    bob = make_home(tmp_path, "bob")
    pem = tmp_path / "alice.pem"
    pem.write_text(alice("keys", "export").stdout)
    bob("keys", "import", pem, "--label", "alice")
    return bob


# the hostile remote's rewrite: the offer's provenance says what alice never said
_RESTATED = {
    "cutoff": "2019-01-01", "cutoff_precision": "day", "license": "apache-2.0",
    "description": "Official release, verified by the signer", "release_date": "2019-02-01",
    "source_url": None,
}  # fmt: skip
_restate = rewriting_offer(lambda doc: doc.update(provenance=_RESTATED))


def test_a_pulled_snapshots_provenance_is_recorded_as_the_remotes_word(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    with serve_proxy(RewritingProxy(module_server.url, rewrite=_restate)) as url:
        bob = _bob(tmp_path, alice)
        bob("remote", "add", "evil", f"{url}/")
        bob("pull", "acme/m:v1", "--remote", "evil")
    stated = f"remote:evil:{url}"
    shown = bob.json("show", "acme/m:v1")
    assert isinstance(shown, dict)
    assert shown["license"] == "apache-2.0"  # recorded as received: the remote's word, and said to be
    assert shown["pushed_by"] == stated
    assert shown["provenance_stated_by"] == {"kind": "remote", "name": "evil", "url": url}
    text = bob("show", "acme/m:v1").stdout
    assert f"by remote evil ({url})" in text
    assert f"provenance:   stated by remote evil ({url}), not signed" in text
    signature = next(ln for ln in text.splitlines() if ln.startswith("signature:"))
    assert "trusted=yes" in signature and "signs the files only" in signature
    assert "bob" not in text  # the local user is not credited with the remote's description
    # the audit entry names the remote as whose word it recorded, and bob as who asked for it
    entries = [e for e in bob.json("audit", "--action", "transfer.commit") if isinstance(e, dict)]  # type: ignore[union-attr]
    assert [(e["actor"], e["details"].get("pulled_by")) for e in entries] == [(stated, "bob")]
    # the store's record says the same, so a rebuilt catalog does too
    with bob.archive() as a:
        snap_records = [r for r in read_records(a.store.backend) if r.kind == "snapshot"]
    assert [(r.actor, r.body["pushed_by"]) for r in snap_records] == [(stated, stated)]
    # upgrade finds the records say what the catalog says; a catalog rebuilt from them says it too
    assert bob.json("upgrade")["written"] == {}  # type: ignore[index]
    rebuilt = {**bob.env, "MODELARC_DATABASE_URL": f"sqlite:///{tmp_path / 'rebuilt.db'}"}
    assert bob.runner.invoke(cli, ["rebuild-catalog"], env=rebuilt).exit_code == 0
    again = json.loads(bob.runner.invoke(cli, ["show", "acme/m:v1", "--json"], env=rebuilt).stdout)
    assert (again["pushed_by"], again["license"]) == (stated, "apache-2.0")
    # so does the web page, and the signature there says what it covers
    with bob.archive() as a, serve(a) as served:
        page = httpx.get(f"{served}/ui/snapshots/acme/m/v1").text
    said = page.split('id="provenance-stated-by">', 1)[1].split("</dd>", 1)[0]
    assert said.startswith(f"stated by remote <code>evil</code> ({url})") and "not signed" in said
    assert "not the provenance" in page.split('id="signature">', 1)[1].split("</dd>", 1)[0]
    # the exports say whose word it is
    bom = json.loads(bob("export", "acme/m:v1", "--format", "cyclonedx").stdout)
    props = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
    assert props["modelarc:provenance_stated_by"] == f"remote evil ({url})"


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("http://someone:secret@host:8470/", "remote:origin:http://host:8470"),
        ("https://host/archive/?token=secret#x", "remote:origin:https://host/archive"),
        ("http://[::1]:8470", "remote:origin:http://[::1]:8470"),
    ],
)
def test_a_remote_is_recorded_by_name_and_url_without_credentials(url: str, recorded: str) -> None:
    assert remote_identity("origin", url) == recorded
    source = provenance_source(recorded)
    assert source is not None and (source.kind, source.name) == ("remote", "origin")


def test_a_remote_url_too_long_for_the_catalog_is_cut() -> None:
    recorded = remote_identity("origin", "http://host/" + "a" * 300)
    assert len(recorded) == MAX_PUSHED_BY and recorded.endswith("…")


def test_a_pushed_snapshot_is_its_pushers_word(module_server: Server, alice: Home) -> None:
    text = alice("show", "acme/m:v1").stdout
    assert "provenance:   stated by alice, not signed: the pusher's word" in text
