"""Every ``MODELARC_*`` environment variable is read here and nowhere else."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where the archive lives. ``database_url`` defaults to SQLite inside ``home``."""

    home: Path
    database_url: str
    actor: str

    @property
    def store_path(self) -> Path:
        return self.home / "store"

    @property
    def keys_path(self) -> Path:
        return self.home / "keys"


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Resolve settings from arguments first, then the environment, then defaults."""
    root = (
        Path(home) if home is not None else Path(os.environ.get("MODELARC_HOME") or Path.home() / ".modelarc")
    )
    root = root.expanduser().absolute()
    url = os.environ.get("MODELARC_DATABASE_URL") or f"sqlite:///{root / 'registry.db'}"
    actor = os.environ.get("MODELARC_ACTOR") or _login_name()
    return Settings(home=root, database_url=url, actor=actor)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"
