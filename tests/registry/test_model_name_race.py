"""Two transactions creating `acme/x` and `Acme/x` at once: only one model may come of it.

The clash check and the insert are two statements, and the index on lower(namespace), lower(name) is not UNIQUE
(archives from before the rule may hold such a pair), so on PostgreSQL the second transaction, not seeing the first's
uncommitted row, created its lookalike too. Model creation in a namespace now takes an advisory lock held until the
transaction ends (SQLite has one writer at a time). The first transaction is held open here while the second tries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from catalogkit import open_catalog
from sqlalchemy import func, select

from modelarc.errors import ModelNameClashError
from modelarc.registry.db import Catalog
from modelarc.registry.models import Model
from modelarc.registry.queries import get_or_create_model


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    yield from open_catalog(database_url)


def test_a_lookalike_created_while_the_first_is_uncommitted_is_refused(catalog: Catalog) -> None:
    created = threading.Event()
    outcome: list[object] = []

    def second() -> None:
        created.wait(10)
        try:
            with catalog.session() as s:
                get_or_create_model(s, "Acme", "x")
            outcome.append("created")
        except ModelNameClashError as exc:
            outcome.append(exc)
        except Exception as exc:  # SQLite: the database is locked while the first writes (also no pair)
            outcome.append(exc)

    other = threading.Thread(target=second)
    other.start()
    with catalog.session() as s:
        get_or_create_model(s, "acme", "x")
        created.set()
        time.sleep(1.5)  # the second transaction runs its check now, and must wait for this one
    other.join(30)
    assert not other.is_alive()
    with catalog.session() as s:
        names = s.execute(select(Model.namespace, Model.name).where(func.lower(Model.name) == "x")).all()
    assert [tuple(n) for n in names] == [("acme", "x")], outcome
    assert outcome and isinstance(outcome[0], ModelNameClashError), outcome
