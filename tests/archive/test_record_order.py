"""The order rebuild-catalog replays records in (archive/record_order.py): by time, except that nothing replays
before the record that creates what it names."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelarc.archive.record_order import replay_order
from modelarc.archive.records import CatalogRecord

T0 = dt.datetime(2026, 1, 1)


def _rec(n: int, kind: str, **body: Any) -> CatalogRecord:
    at = T0 + dt.timedelta(seconds=n)
    return CatalogRecord(f"records/{n:02d}-{kind}", at, kind, at, "tester", {"kind": kind, **body})


def _snap(n: int, model: str, digest: str, *parents: tuple[str, str]) -> CatalogRecord:
    links = [{"model": m, "snapshot": d, "relation": "finetune"} for m, d in parents]
    return _rec(n, "snapshot", model=model, snapshot=digest, parents=links)


def _keys(records: list[CatalogRecord]) -> list[str]:
    return [r.key for r in replay_order(records)]


def test_records_in_lineage_order_keep_their_time_order() -> None:
    records = [_rec(0, "key", fingerprint="f"), _snap(1, "a/p", "P"), _snap(2, "a/c", "C", ("a/p", "P")),
               _rec(3, "tag", model="a/c", snapshot="C", tag="v1")]  # fmt: skip
    assert _keys(records) == [r.key for r in records]


def test_a_child_named_first_waits_for_its_parent_and_what_names_it_waits_with_it() -> None:
    child = _snap(1, "a/c", "C", ("a/p", "P"))
    again = _snap(2, "a/c", "C")  # a second record of the child: it merges into the first, so comes after it
    tag = _rec(3, "tag", model="a/c", snapshot="C", tag="v1")
    run = _rec(4, "run", snapshot="C")
    grant = _rec(5, "grant", model="a/c", subject="alice", action="grant")
    other = _snap(6, "b/x", "X")
    parent = _snap(7, "a/p", "P")
    later = _rec(8, "tag", model="b/x", snapshot="X", tag="v1")
    assert _keys([child, again, tag, run, grant, other, parent, later]) == [
        r.key for r in (other, parent, child, again, tag, run, grant, later)
    ]


def test_what_no_record_creates_is_not_waited_for_and_cycles_end_by_time() -> None:
    orphan = _snap(1, "a/c", "C", ("a/gone", "G"))  # its parent has no record: reported missing at replay
    a = _snap(2, "a/a", "A", ("a/b", "B"))
    b = _snap(3, "a/b", "B", ("a/a", "A"))  # no live command writes a cycle; both still replay, by time
    garbled = _rec(4, "snapshot", model="a/z")  # no snapshot, no parents: refused at replay, never waits
    tag = _rec(5, "tag", model="a/a", snapshot="A", tag="v1")
    assert _keys([orphan, a, b, garbled, tag]) == [r.key for r in (orphan, garbled, a, b, tag)]
