"""Provenance text no catalog column can hold (a NUL: PostgreSQL refuses it; a lone surrogate: not UTF-8) is refused
where it enters an archive, naming the field, before any object is stored: through the Python API it reached the
database as a driver error (psycopg.DataError) after the push had written every object. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from modelfactory import write_model

from modelarc.archive.remote.offers import parse_provenance
from modelarc.archive.repository import Archive
from modelarc.errors import UsageError
from modelarc.registry.records import Provenance


@pytest.fixture
def archive(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Archive]:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    arc, _created = Archive.init(tmp_path / "home")
    with arc:
        yield arc


UNSTORABLE = {
    "NUL in the description": (Provenance(description="fine\x00tuned"), "description", "NUL"),
    "NUL in the license": (Provenance(license="mit\x00"), "license", "NUL"),
    "surrogate in the source": (
        Provenance(source_url="https://example.org/\udcff"),
        "source_url",
        "surrogate",
    ),
    "NUL in a parent": (Provenance(parents=(("acme/base:v1\x00", "finetune"),)), "parent", "NUL"),
}


@pytest.mark.parametrize(("provenance", "field", "said"), UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_a_push_stating_text_the_catalog_cannot_hold_is_refused_before_anything_is_stored(
    archive: Archive, tmp_path: Path, provenance: Provenance, field: str, said: str
) -> None:
    with pytest.raises(UsageError, match=f"push: {field}.*{said}"):
        archive.push(write_model(tmp_path / "m"), "acme/m:v1", provenance)
    stored = [p for p in (tmp_path / "home" / "store").rglob("*") if p.is_file() and "objects" in p.parts]
    assert stored == []  # refused before a byte was archived
    with pytest.raises(Exception, match="acme/m"):
        archive.show("acme/m:v1")  # nothing recorded


def test_an_offer_stating_a_nul_is_refused_as_it_is_parsed() -> None:
    with pytest.raises(UsageError, match="snapshot offer: provenance: description.*NUL"):
        parse_provenance({"description": "a\x00b"})


def test_ordinary_text_passes(archive: Archive, tmp_path: Path) -> None:
    provenance = Provenance(description="Fine-tuned 🙂 on «news»", license="apache-2.0")
    archive.push(write_model(tmp_path / "m"), "acme/m:v1", provenance)
    assert archive.show("acme/m:v1").description == provenance.description
