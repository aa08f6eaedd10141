"""Which snapshots of the store's catalog records the catalog lacks, and whether their weights are still needed
(archive/unreplayed.py): what gc keeps and repair fetches for a later rebuild."""

from __future__ import annotations

import datetime as dt
from typing import Any

from modelarc.archive.records import CatalogRecord
from modelarc.archive.unreplayed import unreplayed_snapshots

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
T0 = dt.datetime(2026, 1, 1)


def _record(n: int, kind: str, **body: Any) -> CatalogRecord:
    written = T0 + dt.timedelta(seconds=n)
    return CatalogRecord(f"records/{n}", written, kind, written, "tester", {"kind": kind, **body})


def _snapshot(n: int, model: str, digest: str, bundle: str = "c" * 64) -> CatalogRecord:
    return _record(n, "snapshot", model=model, snapshot=digest, signatures=[{"object": bundle, "key": "k"}])


def test_a_snapshot_the_catalog_holds_is_left_out_and_one_it_lacks_keeps_every_bundle_listed() -> None:
    found = unreplayed_snapshots(
        [_snapshot(1, "acme/m", A), _snapshot(2, "acme/n", B), _snapshot(3, "acme/n", B, "d" * 64)], {A}
    )
    assert [(s.label, s.bundles, s.withdrawn) for s in found] == [
        (f"acme/n@{B}", frozenset({"c" * 64, "d" * 64}), False)
    ]


def test_a_withdraw_record_of_the_same_model_withdraws_it_whatever_its_name() -> None:
    withdraw = _record(2, "withdraw", model="acme/m", snapshot=A, ref="acme/m:v1", reason="leak")
    assert unreplayed_snapshots([_snapshot(1, "acme/m", A), withdraw], set())[0].withdrawn
    # named first, it still replays after the snapshot's first record (archive/record_order.py)
    assert unreplayed_snapshots([withdraw, _snapshot(3, "acme/m", A)], set())[0].withdrawn
    other = _record(2, "withdraw", model="acme/other", snapshot=A, ref="acme/other:v1", reason="leak")
    assert not unreplayed_snapshots([_snapshot(1, "acme/m", A), other], set())[0].withdrawn


def test_a_garbled_snapshot_record_protects_nothing() -> None:
    assert unreplayed_snapshots([_record(1, "snapshot", model="acme/m", snapshot="not an id")], set()) == []
