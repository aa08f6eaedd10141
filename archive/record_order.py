"""The order ``rebuild-catalog`` replays catalog records in: by time, except that nothing replays before what it
names (docs/FORMAT.md "Catalog records", "Order and replay").

A live command writes a child's record after its parents' and a tag move, attachment, withdrawal, run or policy
after the snapshot it names, so time order is lineage order for the records it wrote. But a record's time is only
its name, and anyone who can write the store can name a record (docs/SECURITY.md): one planted long before the
snapshot it names, and the record ``upgrade`` writes to replay before such a planted one, would otherwise replay
before the snapshot's parents, which a rebuild would then report lost. So each record waits for the records that
create what it names: the first record (by time) of each parent, for the first record of a snapshot; the first
record of its snapshot (or, for a grant or a model's policy, of any snapshot of its model) for every other. Among
the records that may go, time decides (``CatalogRecord.order``). What no record of the store creates is not
waited for (the record is refused at replay, or its parent reported missing); records that wait for each other (a
cycle of parents, which no live command writes) replay at the end, by time.
"""

from __future__ import annotations

import heapq
from typing import Any

from modelarc.archive.records import CatalogRecord

Subject = tuple[str, ...]  # ("snapshot", model, digest), ("digest", digest) or ("model", model)


def replay_order(records: list[CatalogRecord]) -> list[CatalogRecord]:
    """``records`` (in time order, as ``read_records`` gives them) in the order a rebuild replays them."""
    firsts: dict[Subject, int] = {}  # each snapshot's first record: the one a rebuild creates it from
    for i, r in enumerate(records):
        for subject in _creates(r):
            firsts.setdefault(subject, i)
    out: list[CatalogRecord] = []
    emitted: set[int] = set()
    created: set[Subject] = set()
    waiting: dict[Subject, list[int]] = {}
    unmet: dict[int, int] = {}  # record -> how many of what it names are not created yet
    ready: list[int] = []

    def emit(i: int) -> None:
        out.append(records[i])
        emitted.add(i)
        for subject in _creates(records[i]):
            if subject in created:
                continue
            created.add(subject)
            for j in waiting.pop(subject, []):
                unmet[j] -= 1
                if unmet[j] == 0:
                    heapq.heappush(ready, j)

    for i, r in enumerate(records):
        needs = {n for n in _needs(r, i, firsts) if n in firsts and n not in created}
        if needs:
            unmet[i] = len(needs)
            for n in needs:
                waiting.setdefault(n, []).append(i)
            continue
        emit(i)
        while ready:  # what waited for it, oldest first (each may release more)
            emit(heapq.heappop(ready))
    out += [records[i] for i in sorted(set(unmet) - emitted)]  # waiting on each other: by time
    return out


def _creates(r: CatalogRecord) -> list[Subject]:
    if r.kind != "snapshot":
        return []
    try:
        model, digest = str(r.body["model"]), str(r.body["snapshot"])
    except (KeyError, TypeError):
        return []
    return [("snapshot", model, digest), ("digest", digest), ("model", model)]


def _needs(r: CatalogRecord, i: int, firsts: dict[Subject, int]) -> set[Subject]:
    """What must be created before ``r`` (the ``i``-th record) replays; none for a record too garbled to say (it
    is refused at replay anyway)."""
    b: dict[str, Any] = r.body
    try:
        if r.kind == "snapshot":
            own: Subject = ("snapshot", str(b["model"]), str(b["snapshot"]))
            if firsts.get(own) != i:  # a later record of a snapshot merges into it: after its first
                return {own}
            parents: set[Subject] = {("snapshot", str(p["model"]), str(p["snapshot"])) for p in b["parents"]}
            return parents - {own}
        if r.kind in ("tag", "data", "withdraw") or (r.kind == "access" and b.get("snapshot")):
            return {("snapshot", str(b["model"]), str(b["snapshot"]))}
        if r.kind == "run":
            return {("digest", str(b["snapshot"]))}
        if r.kind in ("access", "grant"):
            return {("model", str(b["model"]))}
    except (KeyError, TypeError, AttributeError):
        return set()
    return set()
