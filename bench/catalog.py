"""Catalog scale: every provenance query at 1k and at 100k snapshots; target t(100k) <= 2 x t(1k).

Fills a fresh SQLite catalog (migrated by Alembic like any archive) with bulk inserts: 1,000 models with versions,
lineage edges to earlier snapshots (chains and merges), 500 datasets linked to snapshots, tags and tag history,
cutoffs spread over 2018-2026. Then times each query (median of several runs) with the page size the CLI uses.

    python bench/catalog.py [--sizes 1000,100000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import insert, select

from modelarc.registry import lineage_queries as lq
from modelarc.registry import queries as q
from modelarc.registry.datasets import list_datasets
from modelarc.registry.db import Catalog
from modelarc.registry.model_heads import ModelOrder, card_facts, list_model_heads
from modelarc.registry.models import (
    DataAttachment,
    Dataset,
    Lineage,
    Model,
    Snapshot,
    SnapshotDataset,
    Tag,
    TagHistory,
)
from modelarc.registry.refs import parse_ref
from modelarc.registry.snapshot_search import SnapshotFilters, search
from modelarc.registry.snapshots import snapshot_record

# Scale the shape, not just the count: every model has ~100 versions and every dataset ~400 users at both sizes,
# so a query's answer (a lineage chain, a page of users) is the same size and only the catalog around it grows.
VERSIONS = 100
MODELS = 1
DATASETS = 2
USERS_PER_DATASET = 400
ARCHS = ["llama", "gpt2", "bert", "mistral", "qwen2", "gemma", "phi3", "t5"]
LICENSES = ["apache-2.0", "mit", "llama2", "cc-by-4.0", "other"]


def fill(catalog: Catalog, n: int, seed: int = 0) -> dict[str, object]:
    rng = random.Random(seed)
    global MODELS, DATASETS
    MODELS = max(1, n // VERSIONS)
    DATASETS = max(2, 2 * n // USERS_PER_DATASET)
    base_time = dt.datetime(2018, 1, 1)
    with catalog.session() as s:
        s.execute(
            insert(Model),
            [
                {"id": i + 1, "namespace": f"org{i % 97}", "name": f"model{i}", "created_at": base_time}
                for i in range(MODELS)
            ],
        )
        s.execute(
            insert(Dataset),
            [
                {"id": i + 1, "content_hash": f"{i:064x}", "name": f"dataset-{i}", "version": "1"}
                for i in range(DATASETS)
            ],
        )
        snaps, tags, history, lineage, atts, links = [], [], [], [], [], []
        for i in range(n):
            sid = i + 1
            model_id = i % MODELS + 1
            created = base_time + dt.timedelta(minutes=i * (4_000_000 // n))
            cutoff = dt.date(2018, 1, 1) + dt.timedelta(days=rng.randrange(0, 3000))
            precision = rng.choice(["year", "month", "day"])
            if precision == "year":
                cutoff = dt.date(cutoff.year, 1, 1)
            elif precision == "month":
                cutoff = dt.date(cutoff.year, cutoff.month, 1)
            arch = ARCHS[model_id % len(ARCHS)]
            snaps.append(
                {
                    "id": sid,
                    "model_id": model_id,
                    "digest": f"sha256:{rng.getrandbits(256):064x}",
                    "created_at": created,
                    "logical_bytes": 10**9,
                    "stored_bytes_added": 10**8,
                    "file_count": 5,
                    "tensor_count": 100,
                    "parameter_count": rng.choice([10**8, 10**9, 7 * 10**9, 7 * 10**10]),
                    "dtypes": {"BF16": 10**9},
                    "architecture": {"model_type": arch},
                    "model_type": arch,
                    "cutoff": cutoff,
                    "cutoff_precision": precision,
                    "license": rng.choice(LICENSES),
                }
            )
            version = i // MODELS
            if version == 0:
                tags.append(
                    {"model_id": model_id, "name": "latest", "snapshot_id": sid, "updated_at": created}
                )
            history.append(
                {
                    "model_id": model_id,
                    "tag": "latest",
                    "old_snapshot_id": sid - MODELS if version else None,
                    "new_snapshot_id": sid,
                    "moved_at": created,
                    "actor": "bench",
                }
            )
            if version:
                lineage.append({"child_id": sid, "parent_id": sid - MODELS, "relation": "continued-pretrain"})
                if rng.random() < 0.1:
                    other = rng.randrange(1, sid - MODELS + 1)
                    if other != sid - MODELS:
                        lineage.append({"child_id": sid, "parent_id": other, "relation": "merge"})
            atts.append({"id": sid, "snapshot_id": sid, "actor": "bench", "attached_at": created})
            for d in rng.sample(range(1, DATASETS + 1), 2):
                links.append({"snapshot_id": sid, "dataset_id": d, "attachment_id": sid, "role": "pretrain"})
        for table, rows in (
            (Snapshot, snaps),
            (TagHistory, history),
            (Lineage, lineage),
            (DataAttachment, atts),
            (SnapshotDataset, links),
        ):
            for i in range(0, len(rows), 5000):
                s.execute(insert(table), rows[i : i + 5000])
        # tags point at each model's newest snapshot
        newest = {}
        for row in snaps:
            newest[row["model_id"]] = row["id"]
        s.execute(
            insert(Tag),
            [
                {"model_id": m, "name": "latest", "snapshot_id": sid, "updated_at": base_time}
                for m, sid in newest.items()
            ],
        )
    mid = snaps[len(snaps) // 2]
    return {
        "deep": snaps[-1]["id"],
        "root": snaps[(VERSIONS - 10) * MODELS]["id"],
        "mid_time": mid["created_at"],
        "mid_digest": mid["digest"],
        "mid_model": mid["model_id"],
    }


def queries(catalog: Catalog, facts: dict[str, object]) -> dict[str, Callable[[], object]]:
    def run(f: SnapshotFilters, order: str = "newest") -> Callable[[], object]:
        def go() -> object:
            with catalog.session() as s:
                return search(s, f, order=order)

        return go

    def hub_models(f: SnapshotFilters, order: ModelOrder = "name") -> Callable[[], object]:
        """A page of GET /api/models (HfApi.list_models): ten models by their head snapshot, with card facts."""

        def go() -> object:
            with catalog.session() as s:
                heads = list_model_heads(s, f, order=order, limit=10)
                return card_facts(s, [h.head.row_id for h in heads if h.head])

        return go

    def resolve_tag() -> object:
        with catalog.session() as s:
            return q.resolve_ref(
                s,
                parse_ref(
                    f"org{(int(facts['mid_model']) - 1) % 97}/model{int(facts['mid_model']) - 1}:latest"
                ),
            )

    def resolve_digest() -> object:
        with catalog.session() as s:
            m = int(facts["mid_model"]) - 1
            return q.resolve_ref(s, parse_ref(f"org{m % 97}/model{m}@{str(facts['mid_digest'])[:15]}"))

    def ancestors() -> object:
        with catalog.session() as s:
            snap = s.get(Snapshot, facts["deep"])
            return lq.ancestors(s, snapshot_record(snap))

    def datasets() -> object:
        with catalog.session() as s:
            return list_datasets(s)

    as_of = facts["mid_time"]
    return {
        "ls (newest 100)": run(SnapshotFilters()),
        "ls --cutoff-before 2020-06": run(SnapshotFilters(cutoff_before=dt.date(2020, 6, 1))),
        "ls --cutoff-after 2025-01": run(SnapshotFilters(cutoff_after=dt.date(2025, 1, 1))),
        "ls --arch llama": run(SnapshotFilters(arch="llama")),
        "ls --min-params 7B": run(SnapshotFilters(min_params=7 * 10**9)),
        "ls --license mit": run(SnapshotFilters(license="mit")),
        "ls --trained-on dataset-1": run(SnapshotFilters(trained_on="dataset-1")),
        "ls --descendant-of": run(SnapshotFilters(descendant_of=int(facts["root"]))),  # type: ignore[arg-type]
        "ls --as-of (mid)": run(SnapshotFilters(as_of=as_of)),  # type: ignore[arg-type]
        "ls combined": run(
            SnapshotFilters(
                arch="llama", license="apache-2.0", cutoff_after=dt.date(2021, 1, 1), min_params=10**9
            )
        ),
        "timeline (first 100)": run(SnapshotFilters(), order="cutoff"),
        "hub list_models (10, by id)": hub_models(SnapshotFilters()),
        "hub list_models lastModified": hub_models(SnapshotFilters(), order="modified"),
        "hub list_models license:mit": hub_models(SnapshotFilters(license="mit")),
        "resolve ns/name:tag": resolve_tag,
        "resolve ns/name@prefix": resolve_digest,
        "lineage ancestors (deep)": ancestors,
        "data ls (all datasets)": datasets,
    }


def measure(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    results: dict[int, dict[str, float]] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            catalog = Catalog(f"sqlite:///{Path(tmp) / 'registry.db'}")
            t = time.perf_counter()
            facts = fill(catalog, n)
            print(f"filled {n:,} snapshots in {time.perf_counter() - t:.1f}s", flush=True)
            with catalog.session() as s:
                assert s.scalar(select(Snapshot.id).order_by(Snapshot.id.desc()).limit(1)) == n
            results[n] = {name: measure(fn, args.repeat) for name, fn in queries(catalog, facts).items()}
            catalog.dispose()
    small, large = sizes[0], sizes[-1]
    print(f"\n{'query':<30} {f't({small:,})':>12} {f't({large:,})':>12} {'ratio':>7}  target <= 2.00x")
    for name in results[small]:
        a, b = results[small][name], results[large][name]
        ratio = b / a
        print(
            f"{name:<30} {a * 1000:>10.2f}ms {b * 1000:>10.2f}ms {ratio:>6.2f}x  {'PASS' if ratio <= 2 else 'MISS'}"
        )


if __name__ == "__main__":
    main()
