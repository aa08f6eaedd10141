"""Opening the catalog builds and configures the ORM mappings (registry/db.py ``build_mappings``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelarc.registry.catalog_settings import get_setting, set_setting
from modelarc.registry.db import Catalog, current_revision, head_revision

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


def test_a_catalog_file_replaced_while_a_connection_to_it_is_pooled_is_read_anew(tmp_path: Path) -> None:
    """A process opens one catalog's engine again (registry/db.py keeps it, with its pooled connections): once
    registry.db is moved aside and a new one made at its path (what `rebuild-catalog` asks for), a catalog opened
    on that path must read the new file, not the one a pooled connection still holds open."""
    db = tmp_path / "registry.db"
    url = f"sqlite:///{db}"
    old = Catalog(url)  # not disposed: a server or a script still holding it
    with old.session() as s:
        set_setting(s, "probe", "the old catalog")
    aside = tmp_path / "aside"
    aside.mkdir()
    for part in tmp_path.glob("registry.db*"):
        part.rename(aside / part.name)
    new = Catalog(url)
    try:
        assert db.exists(), "the new catalog was not created at the path"
        with new.session() as s:
            assert get_setting(s, "probe") is None, "a pooled connection read the catalog moved aside"
        assert current_revision(new.engine) == head_revision()
    finally:
        new.dispose()
        old.dispose()
