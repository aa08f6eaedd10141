"""Resolving a REF: the snapshot it names, its model read from the rows in hand; SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from modelarc.errors import ModelNotFoundError, TagNotFoundError
from modelarc.registry.db import Catalog
from modelarc.registry.models import Model, Snapshot, Tag
from modelarc.registry.queries import resolve_snapshot
from modelarc.registry.refs import parse_ref

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    catalog = Catalog(database_url)
    with catalog.session() as s:
        model = Model(namespace="acme", name="tiny")
        snap = Snapshot(
            model=model,
            digest=DIGEST,
            logical_bytes=10,
            file_count=1,
            tensor_count=1,
            parameter_count=2,
        )
        s.add_all([model, snap, Tag(model=model, name="v1", snapshot=snap)])
    try:
        yield catalog
    finally:
        catalog.dispose()


def _selects(catalog: Catalog, ref: str) -> tuple[str, int]:
    """(the resolved snapshot's model, how many statements resolving it took)."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(catalog.engine, "before_cursor_execute", count)
    try:
        with catalog.session() as s:
            record = resolve_snapshot(s, parse_ref(ref))
    finally:
        event.remove(catalog.engine, "before_cursor_execute", count)
    assert record.digest == DIGEST
    return record.model, len(statements)


@pytest.mark.parametrize("ref", ["acme/tiny:v1", f"acme/tiny@{DIGEST[:19]}"])
def test_resolving_a_ref_reads_the_model_and_the_snapshot_once_each(catalog: Catalog, ref: str) -> None:
    """Every process compiles each statement afresh (issue 12): a tag's snapshot comes in the tag's query, and the
    snapshot's model is the row the resolution started from, not a second select."""
    assert _selects(catalog, ref) == ("acme/tiny", 2)


def test_resolving_an_unknown_model_or_tag_names_it(catalog: Catalog) -> None:
    with catalog.session() as s:
        with pytest.raises(ModelNotFoundError, match="no model acme/other"):
            resolve_snapshot(s, parse_ref("acme/other:v1"))
        with pytest.raises(TagNotFoundError, match="no tag 'v2' on acme/tiny"):
            resolve_snapshot(s, parse_ref("acme/tiny:v2"))
