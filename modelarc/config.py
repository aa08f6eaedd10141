"""Every ``MODELARC_*`` environment variable is read here and nowhere else."""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where the archive lives, and how much work ``modelarc serve`` does at once.

    ``database_url`` defaults to SQLite inside ``home``. ``decode_slots`` (``MODELARC_DECODE_SLOTS``, default two
    per CPU), with the one or two decoded chunks each open download holds, bounds a server's memory (docs/API.md,
    "Serving many clients").
    """

    home: Path
    database_url: str
    actor: str
    # seconds a store lock outlives its holder's last heartbeat (archive/store_lock.py)
    lock_ttl: float = 300.0
    # where the objects live: a folder, or s3://BUCKET/PREFIX; None means the default folder ``home/store``
    store_url: str | None = None
    # chunks a server process decodes at once across all its downloads (archive/streaming.py)
    decode_slots: int = 2

    @property
    def store_path(self) -> Path:
        """The default local store folder (also where a local ``store_url`` of None points)."""
        return self.home / "store"

    @property
    def store_location(self) -> str:
        return self.store_url or str(self.store_path)

    @property
    def config_path(self) -> Path:
        return self.home / HOME_CONFIG

    @property
    def keys_path(self) -> Path:
        return self.home / "keys"


# the home's own settings, written by `modelarc init --store`: {"store": "s3://BUCKET/PREFIX"}
HOME_CONFIG = "config.json"


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Resolve settings from arguments first, then the environment, then defaults."""
    root = (
        Path(home) if home is not None else Path(os.environ.get("MODELARC_HOME") or Path.home() / ".modelarc")
    )
    root = root.expanduser().absolute()
    url = os.environ.get("MODELARC_DATABASE_URL") or f"sqlite:///{root / 'registry.db'}"
    actor = os.environ.get("MODELARC_ACTOR") or _login_name()
    store = os.environ.get("MODELARC_STORE_URL") or _home_config(root).get("store")
    return Settings(
        home=root,
        database_url=url,
        actor=actor,
        lock_ttl=_seconds("MODELARC_LOCK_TTL", 300.0),
        store_url=str(store) if store else None,
        decode_slots=_positive_int("MODELARC_DECODE_SLOTS", default=2 * (os.cpu_count() or 1)),
    )


def _home_config(root: Path) -> dict[str, object]:
    from modelarc.errors import UsageError

    try:
        doc = json.loads((root / HOME_CONFIG).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {root / HOME_CONFIG}: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{root / HOME_CONFIG} is not a JSON object")
    return doc


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


def _positive_int(name: str, *, default: int) -> int:
    from modelarc.errors import UsageError

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and int(text) >= 1):
        raise UsageError(f"{name} must be a whole number from 1 to 999999, not {text[:40]!r}")
    return int(text)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def anonymous_read_default() -> bool:
    """Whether a server started from the environment (api/asgi.py) allows reads without a token."""
    return os.environ.get("MODELARC_ANONYMOUS_READ", "1").strip().lower() not in ("0", "false", "no", "off")
