"""A refusal the server sends an HTTP client names what that client sent, not a CLI option alone, and never
``None`` for a tag the refusal has no use for.

Found by probing the server (finding 9): a commit restating a held snapshot's provenance was refused with
``acme/pub:None: ... --license 'mit' (recorded: none)``: ``str(Ref(ns, name))`` printed a missing tag as ``:None``,
and the difference was named only by the push option the HTTP client never gave.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from modelfactory import write_model
from transferkit import Server

from modelarc.archive.access import parse_files
from modelarc.archive.remote.offers import offer_for
from modelarc.errors import UsageError


def test_a_commit_restating_provenance_names_the_model_and_the_field(server: Server, tmp_path: Path) -> None:
    server.archive.push(write_model(tmp_path / "pub"), "acme/pub:v1")
    offer, _manifest = offer_for(server.archive, "acme/pub:v1")
    doc = offer.to_json()
    doc.pop("access", None)
    doc["provenance"] = {"license": "mit", "source_url": "https://example.org/m"}
    r = httpx.post(
        f"{server.url}/v1/transfer/commit", json=doc, headers={"Authorization": f"Bearer {server.push_token}"}
    )
    assert r.status_code == 409 and r.headers["x-error-code"] == "ProvenanceConflict", r.text
    detail = r.json()["detail"]
    assert detail.startswith("acme/pub: these files are already archived as acme/pub@sha256:"), detail
    assert ":None" not in detail
    assert "license 'mit' (--license; recorded: none)" in detail
    assert "source_url 'https://example.org/m' (--source; recorded: none)" in detail


@pytest.mark.parametrize(
    "patterns", [[" "], ["x" * 501], [f"p{i}" for i in range(65)]], ids=["blank", "long", "many"]
)
def test_a_withheld_file_pattern_is_refused_by_its_option_and_its_offer_field(patterns: list[str]) -> None:
    with pytest.raises(UsageError, match=r"\(--withhold, access\.files\)"):
        parse_files(patterns)
