"""How long the tests' PostgreSQL reset between two tests takes (tests/pgreuse.py), not a bench of the product.

    .venv/bin/python bench/pg_test_reset.py [--server postgresql+psycopg://modelarc@127.0.0.1:54329/postgres] [--rounds 30]

Makes a template at the schema's head on the server (the one `scripts/ci/postgres.sh` starts), lends its copy
``--rounds`` times with one row written each time, and prints the median, fastest and slowest reset.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pgreuse import ReusedCatalog, admin_conninfo, create_database, database_url_for, drop_database  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from modelarc.registry.db import Catalog  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql+psycopg://modelarc@127.0.0.1:54329/postgres")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    template = "modelarc_reset_bench"
    with psycopg.connect(admin_conninfo(args.server), autocommit=True) as admin:
        drop_database(admin, template)
        create_database(admin, template)
    Catalog(database_url_for(args.server, template)).dispose()
    reused = ReusedCatalog(args.server, template)
    times: list[float] = []
    try:
        for _ in range(args.rounds):
            lending = reused.lend()
            url = make_url(next(lending)).set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("INSERT INTO models (namespace, name, created_at) VALUES ('acme', 'm', now())")
            kept = reused.name
            started = time.perf_counter()
            next(lending, None)
            times.append(time.perf_counter() - started)
            assert reused.name == kept, "the reset dropped the database: it should only have emptied it"
    finally:
        reused.drop()
        with psycopg.connect(admin_conninfo(args.server), autocommit=True) as admin:
            drop_database(admin, template)
    print(
        f"reset between tests: median {statistics.median(times) * 1000:.1f} ms, "
        f"fastest {min(times) * 1000:.1f} ms, slowest {max(times) * 1000:.1f} ms ({args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
