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
    # seconds a store lock outlives its holder's last heartbeat (archive/store_lock.py)
    lock_ttl: float = 300.0

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
    return Settings(home=root, database_url=url, actor=actor, lock_ttl=_seconds("MODELARC_LOCK_TTL", 300.0))


def _seconds(name: str, default: float) -> float:
    from modelarc.errors import UsageError

    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 1.0 <= value <= 86400.0:
        raise UsageError(f"{name}={text!r}: expected a number of seconds between 1 and 86400")
    return value


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"
