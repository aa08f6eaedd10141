"""Opening the catalog builds and configures the ORM mappings (registry/db.py ``build_mappings``)."""

from __future__ import annotations

import subprocess
import sys

# A fresh interpreter: in this one, earlier tests have configured the mappers already.
PROBE = """
import sys
from sqlalchemy import inspect
from modelarc.registry.db import Catalog
catalog = Catalog(sys.argv[1])
from modelarc.registry.models import Snapshot
print(inspect(Snapshot).configured)
catalog.dispose()
"""


def test_opening_the_catalog_configures_the_mappers_before_any_query(sqlite_url: str) -> None:
    """The CLI freezes what start-up built once the archive is open (cli/startup.py); mappings built later, at the
    first query, cost every command tens of ms of collector time (issue 12)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, sqlite_url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True", "the mappers were not configured when the catalog opened"
