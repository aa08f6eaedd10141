"""Catalog scale: every provenance query at 1k and at 100k snapshots; target t(100k) <= 2 x t(1k).

Fills a fresh catalog (migrated by Alembic like any archive) with bulk inserts: 1,000 models with versions,
lineage edges to earlier snapshots (chains and merges), 500 datasets linked to snapshots, tags and tag history,
cutoffs spread over 2018-2026. Then times each query (median of several runs, the two sizes taking turns) with the
page size the CLI uses, and prints how many rows each answer had at each size: where they differ, the ratio measures
the bigger answer as much as the bigger catalog.

Both catalog databases: SQLite (a file in a temporary folder) and PostgreSQL (a new database on the server at
``MODELARC_TEST_POSTGRES_URL``, else on the one ``scripts/ci/postgres.sh`` starts or reuses; dropped afterwards).
PostgreSQL is ANALYZEd after the fill, as autovacuum would after so many inserts; SQLite is not, because modelarc
never runs ANALYZE there: its planner sees what a real archive's sees.

    python bench/catalog.py [--database sqlite|postgresql|both] [--sizes 1000,100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from modelarc.registry import lineage_queries as lq
from modelarc.registry import queries as q
from modelarc.registry.datasets import DatasetPage, list_datasets
from modelarc.registry.db import Catalog
from modelarc.registry.lineage_queries import LineageNode
from modelarc.registry.model_heads import ModelOrder, card_facts, list_model_heads
from modelarc.registry.models import (
    Base,
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
USERS_PER_DATASET = 400
PAGE = 100  # the CLI's default --limit
ARCHS = ["llama", "gpt2", "bert", "mistral", "qwen2", "gemma", "phi3", "t5"]
LICENSES = ["apache-2.0", "mit", "llama2", "cc-by-4.0", "other"]


def fill(catalog: Catalog, n: int, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    n_models = max(1, n // VERSIONS)
    n_datasets = max(2, 2 * n // USERS_PER_DATASET)
    base_time = dt.datetime(2018, 1, 1)
    models = [
        {"id": i + 1, "namespace": f"org{i % 97}", "name": f"model{i}", "created_at": base_time}
        for i in range(n_models)
    ]
    datasets = [
        {
            "id": i + 1,
            "content_hash": f"{i:064x}",
            "name": f"dataset-{i}",
            "version": "1",
            "created_at": base_time,
            "snapshot_count": 0,
        }
        for i in range(n_datasets)
    ]
    snaps: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    lineage: list[dict[str, Any]] = []
    atts: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for i in range(n):
        sid = i + 1
        model_id = i % n_models + 1
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
        version = i // n_models
        history.append(
            {
                "id": sid,
                "model_id": model_id,
                "tag": "latest",
                "old_snapshot_id": sid - n_models if version else None,
                "new_snapshot_id": sid,
                "moved_at": created,
                "actor": "bench",
            }
        )
        if version:
            lineage.append({"child_id": sid, "parent_id": sid - n_models, "relation": "continued-pretrain"})
            if rng.random() < 0.1:
                other = rng.randrange(1, sid - n_models + 1)
                if other != sid - n_models:
                    lineage.append({"child_id": sid, "parent_id": other, "relation": "merge"})
        atts.append({"id": sid, "snapshot_id": sid, "actor": "bench", "attached_at": created})
        for d in rng.sample(range(1, n_datasets + 1), 2):
            links.append(
                {
                    "id": len(links) + 1,
                    "snapshot_id": sid,
                    "dataset_id": d,
                    "attachment_id": sid,
                    "role": "pretrain",
                }
            )
    # the count attach_datasets keeps (each snapshot links a dataset once here)
    for link in links:
        datasets[link["dataset_id"] - 1]["snapshot_count"] += 1
    # tags point at each model's newest snapshot
    newest = {row["model_id"]: row["id"] for row in snaps}
    tags = [
        {"id": m, "model_id": m, "name": "latest", "snapshot_id": sid, "updated_at": base_time}
        for m, sid in newest.items()
    ]
    load(
        catalog,
        [
            (Model, models),
            (Dataset, datasets),
            (Snapshot, snaps),
            (TagHistory, history),
            (Lineage, lineage),
            (DataAttachment, atts),
            (SnapshotDataset, links),
            (Tag, tags),
        ],
    )
    mid = snaps[len(snaps) // 2]
    return {
        "deep": snaps[-1]["id"],
        "root": snaps[(VERSIONS - 10) * n_models]["id"],
        "mid_time": mid["created_at"],
        "mid_digest": mid["digest"],
        "mid_model": mid["model_id"],
    }


def load(catalog: Catalog, tables: list[tuple[type[Base], list[dict[str, Any]]]]) -> None:
    """Bulk inserts in one transaction: COPY on PostgreSQL, executemany on SQLite (both without the ORM's per-row
    bookkeeping). Every row carries its id, so sequences are not advanced: the bench inserts nothing later."""
    with catalog.engine.begin() as conn:
        if conn.dialect.name != "postgresql":
            for model, rows in tables:
                for i in range(0, len(rows), 10_000):
                    conn.execute(model.__table__.insert(), rows[i : i + 10_000])
            return
        from psycopg.types.json import Json

        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for model, rows in tables:
            columns = list(rows[0])
            with cursor.copy(f"COPY {model.__tablename__} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([Json(v) if isinstance(v, dict) else v for v in row.values()])


def queries(catalog: Catalog, facts: dict[str, Any]) -> dict[str, Callable[[], object]]:
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
            return list_datasets(s, limit=PAGE)

    as_of = facts["mid_time"]
    return {
        "ls (newest 100)": run(SnapshotFilters()),
        "ls --cutoff-before 2020-06": run(SnapshotFilters(cutoff_before=dt.date(2020, 6, 1))),
        "ls --cutoff-after 2025-01": run(SnapshotFilters(cutoff_after=dt.date(2025, 1, 1))),
        "ls --arch llama": run(SnapshotFilters(arch="llama")),
        "ls --min-params 7B": run(SnapshotFilters(min_params=7 * 10**9)),
        "ls --license mit": run(SnapshotFilters(license="mit")),
        "ls --trained-on dataset-1": run(SnapshotFilters(trained_on="dataset-1")),
        "ls --descendant-of": run(SnapshotFilters(descendant_of=int(facts["root"]))),
        "ls --as-of (mid)": run(SnapshotFilters(as_of=as_of)),
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
        "data ls (first page)": datasets,
    }


def answer_size(answer: object) -> int:
    """Rows in a query's answer (nodes of a lineage tree): the ratio means most when both sizes answer alike."""
    if isinstance(answer, LineageNode):
        return 1 + sum(answer_size(child) for child in answer.children)
    if isinstance(answer, DatasetPage):
        return len(answer.rows)
    return len(answer) if isinstance(answer, list | tuple | dict) else 1


@dataclass
class Timing:
    rows: dict[int, int] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)  # median
    fastest: dict[int, float] = field(
        default_factory=dict
    )  # the run least disturbed by the rest of the machine


def measure(suites: dict[int, dict[str, Callable[[], object]]], repeat: int) -> dict[str, Timing]:
    """The median of ``repeat`` runs of each query at each size, the sizes taking turns run by run, so a busy
    moment of the machine slows both sides of a ratio rather than one."""
    out: dict[str, Timing] = {name: Timing() for name in next(iter(suites.values()))}
    for name, timing in out.items():  # every query once first: the first one timed should not pay the warm-up
        for n, suite in suites.items():
            timing.rows[n] = answer_size(suite[name]())
    for name, timing in out.items():
        samples: dict[int, list[float]] = {n: [] for n in suites}
        for _ in range(repeat):
            for n, suite in suites.items():
                t = time.perf_counter()
                suite[name]()
                samples[n].append(time.perf_counter() - t)
        timing.seconds = {n: statistics.median(v) for n, v in samples.items()}
        timing.fastest = {n: min(v) for n, v in samples.items()}
    return out


REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL_ENV = "MODELARC_TEST_POSTGRES_URL"


def postgres_server_url() -> str:
    """The server the tests use: ``MODELARC_TEST_POSTGRES_URL``, else the throwaway one postgres.sh starts."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    done = subprocess.run([str(REPO / "scripts/ci/postgres.sh")], check=True, capture_output=True, text=True)
    return done.stdout.strip()


@contextmanager
def fresh_catalog_url(database: str, server: str | None) -> Iterator[str]:
    """The URL of an empty catalog database, removed on exit: a SQLite file, or a new PostgreSQL database."""
    if database == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'registry.db'}"
        return
    import psycopg
    from psycopg import sql

    assert server is not None
    base = make_url(server)
    admin_url = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    name = f"modelarc_bench_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield base.set(drivername="postgresql+psycopg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bench_database(database: str, server: str | None, sizes: list[int], repeat: int) -> dict[str, Timing]:
    """Fill one fresh catalog per size, then time every query on all of them; the databases are removed after."""
    with ExitStack() as stack:
        suites = {}
        for n in sizes:
            catalog = Catalog(stack.enter_context(fresh_catalog_url(database, server)))
            stack.callback(catalog.dispose)  # before the database is dropped
            t = time.perf_counter()
            facts = fill(catalog, n)
            with catalog.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                # PostgreSQL: the statistics autovacuum would gather. SQLite: the fill's pages moved from the
                # write-ahead log into the database file, where a long-lived archive has them.
                conn.execute(
                    text("ANALYZE" if database == "postgresql" else "PRAGMA wal_checkpoint(TRUNCATE)")
                )
            print(f"{database}: filled {n:,} snapshots in {time.perf_counter() - t:.1f}s", flush=True)
            with catalog.session() as s:
                assert s.scalar(select(Snapshot.id).order_by(Snapshot.id.desc()).limit(1)) == n
            suites[n] = queries(catalog, facts)
        return measure(suites, repeat)


def print_table(database: str, results: dict[str, Timing], small: int, large: int) -> None:
    """Medians and their ratio (the target); the ratio of the fastest runs beside it, which a busy machine moves less."""
    print(f"\n{database}")
    rows = f"rows {small // 1000}k/{large // 1000}k"
    print(
        f"{'query':<28} {rows:>13} {f't({small:,})':>11} {f't({large:,})':>11} {'ratio':>7}  target <= 2.00x"
        f"  {'fastest':>7}"
    )
    for name, timing in results.items():
        a, b = timing.seconds[small], timing.seconds[large]
        ratio = b / a
        answers = f"{timing.rows[small]}/{timing.rows[large]}"
        print(
            f"{name:<28} {answers:>13} {a * 1000:>9.2f}ms {b * 1000:>9.2f}ms {ratio:>6.2f}x  "
            f"{'PASS' if ratio <= 2 else 'MISS':<15}  {timing.fastest[large] / timing.fastest[small]:>6.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    server = postgres_server_url() if "postgresql" in databases else None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    print(f"load average {load:.1f} on {cores} cores{'' if load < cores else ': busy, ratios will be noisy'}")
    tables = {db: bench_database(db, server, sizes, args.repeat) for db in databases}
    for db, results in tables.items():
        print_table(db, results, sizes[0], sizes[-1])


if __name__ == "__main__":
    main()
