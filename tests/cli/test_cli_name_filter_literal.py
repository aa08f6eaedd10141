"""``--name`` (and /v1's ``name`` and ``q``) match the text as it is, anywhere in "namespace/name", any case: the
LIKE wildcards ``%`` and ``_`` and the escape character are matched as themselves, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelfactory import write_model

from modelarc.archive.catalog.views import list_models
from modelarc.archive.repository import Archive

MODELS = ("ns/w3", "ns/a_b", "ns/axb")


@pytest.fixture
def named(arc, tmp_path: Path):
    source = write_model(tmp_path / "src")
    for model in MODELS:
        arc("push", source, f"{model}:v1")
    return arc


# text -> the models it finds
EXPECTED = {
    "%": [],
    "_": ["ns/a_b"],
    "a_b": ["ns/a_b"],
    "w%3": [],
    "a%": [],
    "s/w": ["ns/w3"],  # "/" is SQLAlchemy's escape character: matched as itself too
    "//": [],
    "\\": [],  # PostgreSQL's default escape character
    "a\\_b": [],
    "NS/W": ["ns/w3"],  # any case, as before
    "x": ["ns/axb"],
}


@pytest.mark.parametrize("command", ["ls", "timeline"])
def test_name_matches_its_text_literally(named, command: str) -> None:
    """One home for every text: pushing the three models is most of the test's time."""
    found = {text: sorted({row["model"] for row in named.json(command, "--name", text)}) for text in EXPECTED}
    assert found == EXPECTED


def test_the_model_listing_matches_its_text_literally(named, monkeypatch: pytest.MonkeyPatch) -> None:
    """/v1/models?q= (archive/catalog/views.py ``list_models``)."""
    monkeypatch.setenv("MODELARC_DATABASE_URL", named.env["MODELARC_DATABASE_URL"])
    with Archive.open(named.home) as archive:
        found = {text: [m.model for m in list_models(archive, name_contains=text)] for text in EXPECTED}
    assert found == EXPECTED
