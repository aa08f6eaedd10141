"""Every ``MODELARC_*`` environment variable is read here and nowhere else."""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

# seconds a catalog change waits for a lock another transaction holds (MODELARC_LOCK_WAIT; registry/db.py)
DEFAULT_LOCK_WAIT = 60.0


@dataclass(frozen=True)
class Settings:
    """Where the archive lives, and how much work ``modelarc serve`` does at once.

    ``database_url`` defaults to SQLite inside ``home``. ``decode_slots`` (``MODELARC_DECODE_SLOTS``, default two
    per CPU), with the one or two decoded chunks each open download holds, and ``send_memory``, the bytes all open
    responses may hold together, bound a server's memory (docs/API.md, "Serving many clients").
    """

    home: Path
    database_url: str
    actor: str
    # seconds a store lock outlives its holder's last heartbeat (archive/store_lock.py)
    lock_ttl: float = 300.0
    # seconds a catalog change waits for a lock another transaction holds before it gives up (registry/db.py
    # ``_engine``), MODELARC_LOCK_WAIT
    lock_wait: float = DEFAULT_LOCK_WAIT
    # where the objects live: a folder, or s3://BUCKET/PREFIX; None means the default folder ``home/store``
    store_url: str | None = None
    # chunks a server process decodes at once across all its downloads (archive/streaming.py)
    decode_slots: int = 2
    # bytes of response bodies (decoded chunks, stored objects) a server process holds at once across all its
    # downloads, MODELARC_SEND_MEMORY; beyond it a new download waits briefly, then is answered 503
    send_memory: int = 1 << 30
    # seconds a server waits for a client to take the next bytes of a response before it drops the connection,
    # MODELARC_SEND_TIMEOUT: a client that stops reading frees what its response held
    send_timeout: float = 60.0
    # bytes per second a client must take of a response, averaged over each send timeout, MODELARC_SEND_MIN_RATE
    # (0: any progress will do): a client taking a few bytes per timeout would otherwise hold its share for ever
    send_min_rate: int = 4096
    # the same for request bodies (uploads, offers, id lists), MODELARC_RECEIVE_TIMEOUT, MODELARC_RECEIVE_MIN_RATE: a
    # client that stops sending is answered 408 and its half-read body let go; MODELARC_RECEIVE_MEMORY bounds the
    # bytes of request bodies a process holds at once (beyond it a new body waits briefly, then is answered 503)
    receive_timeout: float = 60.0
    receive_min_rate: int = 4096
    receive_memory: int = 1 << 30
    # the load cache (archive/runtime/cache.py): its folder (None: ``home/cache``) and the bytes it may hold
    # (None: no cap); MODELARC_CACHE_DIR and MODELARC_CACHE_MAX_BYTES
    cache_dir: Path | None = None
    cache_max_bytes: int | None = None
    # where store_url came from, for messages: "MODELARC_STORE_URL", the config.json path, or "" (the default)
    store_origin: str = ""

    @property
    def store_path(self) -> Path:
        """The default local store folder (also where a local ``store_url`` of None points)."""
        return self.home / "store"

    @property
    def store_location(self) -> str:
        return self.store_url or str(self.store_path)

    @property
    def store_origin_text(self) -> str:
        """Where the store location was set, as a message says it: ``from MODELARC_STORE_URL`` and the like."""
        return f"from {self.store_origin}" if self.store_origin else "the default HOME/store"

    @property
    def cache_path(self) -> Path:
        """Where ``load_model(..., cache=True)`` keeps its decoded copies."""
        return self.cache_dir or self.home / "cache"

    @property
    def config_path(self) -> Path:
        return self.home / HOME_CONFIG

    @property
    def keys_path(self) -> Path:
        return self.home / "keys"


# the home's own settings, written by `modelarc init --store`: {"format": 1, "store": "s3://BUCKET/PREFIX"}
HOME_CONFIG = "config.json"
# the layout of config.json this modelarc reads and writes (docs/FORMAT.md "The home"); a file without "format" was
# written before the field existed and is this layout. A larger one is a newer modelarc's home: refused, not misread.
HOME_CONFIG_FORMAT = 1
# what to do with one that cannot be read: nothing rewrites it (every command, `init` too, reads it first)
_HOME_CONFIG_FIX = (
    'fix it by hand: it holds a JSON object such as {"format": 1, "store": "s3://BUCKET/PREFIX"}, '
    "as `modelarc init --store` writes it"
)


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Resolve settings from arguments first, then the environment, then defaults."""
    root = (
        Path(home) if home is not None else Path(os.environ.get("MODELARC_HOME") or Path.home() / ".modelarc")
    )
    root = _checked_home(root.expanduser().absolute())
    url = _checked_database_url(os.environ.get("MODELARC_DATABASE_URL") or f"sqlite:///{root / 'registry.db'}")
    actor = os.environ.get("MODELARC_ACTOR") or _login_name()
    store, store_origin = _store_setting(root)
    cache_dir = os.environ.get("MODELARC_CACHE_DIR")
    return Settings(
        home=root,
        database_url=url,
        actor=actor,
        lock_ttl=_seconds("MODELARC_LOCK_TTL", 300.0),
        lock_wait=_seconds("MODELARC_LOCK_WAIT", DEFAULT_LOCK_WAIT),
        store_url=store,
        store_origin=store_origin,
        decode_slots=_positive_int("MODELARC_DECODE_SLOTS", default=2 * (os.cpu_count() or 1)),
        send_memory=_byte_count("MODELARC_SEND_MEMORY", minimum=1 << 20) or 1 << 30,
        send_timeout=_seconds("MODELARC_SEND_TIMEOUT", 60.0),
        send_min_rate=send_min_rate(),
        receive_timeout=receive_timeout(),
        receive_min_rate=_min_rate("MODELARC_RECEIVE_MIN_RATE"),
        receive_memory=_byte_count("MODELARC_RECEIVE_MEMORY", minimum=1 << 20) or 1 << 30,
        cache_dir=Path(cache_dir).expanduser().absolute() if cache_dir else None,
        cache_max_bytes=_byte_count("MODELARC_CACHE_MAX_BYTES"),
    )


def _home_config(root: Path) -> dict[str, object]:
    from modelarc.errors import UsageError

    try:
        doc = json.loads((root / HOME_CONFIG).read_text())
    except FileNotFoundError:
        return {}
    except OSError as exc:  # the path, not the file's text (a home that is a loop of links, no permission): no fix by hand
        raise UsageError(f"cannot read {root / HOME_CONFIG}: {exc.strerror or exc}") from None
    # RecursionError: damaged into "[[[[..." nested deeper than the parser's stack
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"cannot read {root / HOME_CONFIG} ({exc}); {_HOME_CONFIG_FIX}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{root / HOME_CONFIG} is not a JSON object; {_HOME_CONFIG_FIX}")
    _check_home_format(root, doc.get("format", HOME_CONFIG_FORMAT))
    return doc


def _check_home_format(root: Path, value: object) -> None:
    """Refuse a config.json of a layout this modelarc does not know before any of it is read: a newer modelarc's
    (a larger ``format``) may give ``store`` or a new key a meaning this one would get wrong, and `init` would write
    into that home as if it were this layout. The home is left as it is."""
    from modelarc.errors import UnsupportedFormatError, UsageError

    if type(value) is not int or value < 1:  # not true, not 1.0, not "1": damaged, not newer
        raise UsageError(
            f'{root / HOME_CONFIG}: "format" must be a whole number (1), not {value!r:.60}; {_HOME_CONFIG_FIX}'
        )
    if value > HOME_CONFIG_FORMAT:
        raise UnsupportedFormatError(
            f"{root / HOME_CONFIG} is format {value}, written by a newer modelarc (this one reads format "
            f"{HOME_CONFIG_FORMAT}); use that modelarc with this home, nothing was changed"
        )


def _checked_home(root: Path) -> Path:
    """The catalog's URL and every message name the home: one whose path is not printable UTF-8 (bytes that are
    not UTF-8 come in as lone surrogates, which are not printable either; control characters) failed half-way
    through ``init``, leaving a half-made home that every later command tripped on."""
    if not str(root).isprintable():
        from modelarc.errors import UsageError

        raise UsageError(f"the home {str(root).encode('utf-8', 'surrogateescape')!r} is not a printable UTF-8 path")
    return root


def _checked_database_url(url: str) -> str:
    """An in-memory SQLite catalog is refused: each command would open a new, empty one (a push recorded nowhere,
    then advice to run ``modelarc init``)."""
    if url.startswith("sqlite") and url.partition("://")[2].lstrip("/").partition("?")[0] in ("", ":memory:"):
        from modelarc.errors import UsageError

        raise UsageError(
            f"MODELARC_DATABASE_URL={url} is an in-memory SQLite database, which keeps nothing between commands; "
            "name a file (sqlite:////path/to/registry.db)"
        )
    return url


def _store_setting(root: Path) -> tuple[str | None, str]:
    """The store location set by MODELARC_STORE_URL or the home's config.json, and which of them set it.

    A config.json ``store`` that is not a non-empty string is refused: ``5`` would have been the folder ``./5``.
    """
    from modelarc.errors import UsageError

    doc = _home_config(root)  # read even when the environment sets the store: a newer home's is refused anyway
    env = os.environ.get("MODELARC_STORE_URL")
    if env:
        return env, "MODELARC_STORE_URL"
    if "store" not in doc or doc["store"] is None:
        return None, ""
    value = doc["store"]
    if not isinstance(value, str) or not value:
        raise UsageError(
            f'{root / HOME_CONFIG}: "store" must be a folder path or s3://BUCKET/PREFIX, not {value!r:.60}'
        )
    return value, str(root / HOME_CONFIG)


def _seconds(name: str, default: float, *, least: float = 1.0) -> float:
    from modelarc.errors import UsageError

    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not least <= value <= 86400.0:
        raise UsageError(f"{name}={text[:40]!r}: expected a number of seconds between {least:g} and 86400")
    return value


def _min_rate(name: str) -> int:
    """Bytes per second a client must move (default 4 KiB); 0: any progress will do."""
    rate = _byte_count(name)
    return 4096 if rate is None else rate


def _positive_int(name: str, *, default: int) -> int:
    from modelarc.errors import UsageError

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and int(text) >= 1):
        raise UsageError(f"{name} must be a whole number from 1 to 999999, not {text[:40]!r}")
    return int(text)


# decimal, as `human_bytes` prints sizes (`modelarc cache ls` shows "336.0 MB"), and the binary units spelled out
_BYTE_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
_BYTE_COUNT = re.compile(r"(\d{1,15})\s*([KMGT]I?)?B?", re.IGNORECASE)


def _byte_count(name: str, minimum: int = 0) -> int | None:
    """A size such as ``20000000000``, ``20G``, ``20GB`` or ``18GiB``; unset or empty means no limit (None)."""
    from modelarc.errors import UsageError

    text = os.environ.get(name, "").strip()
    if not text:
        return None
    match = _BYTE_COUNT.fullmatch(text)
    if match is None:
        raise UsageError(f"{name} must be a size in bytes such as 20000000000, 20GB or 18GiB, not {text[:40]!r}")
    value = int(match.group(1)) * _BYTE_UNITS[(match.group(2) or "").upper()]
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum} bytes, not {text[:40]!r}")
    return value


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def anonymous_read_default() -> bool:
    """Whether a server started from the environment (api/asgi.py) allows reads without a token."""
    return os.environ.get("MODELARC_ANONYMOUS_READ", "1").strip().lower() not in ("0", "false", "no", "off")


def public_url_setting() -> str | None:
    """``MODELARC_PUBLIC_URL``: the URL clients reach a server started from the environment at, unset or empty for
    none (the URLs it hands out then name each request's Host); parsed by api/public_url.py."""
    return os.environ.get("MODELARC_PUBLIC_URL", "").strip() or None


DEFAULT_DISK_RESERVE = 1 << 30


def disk_reserve() -> int:
    """Bytes a Hub import leaves free on each disk it writes to (``MODELARC_DISK_RESERVE``, default 1 GiB, ``0`` for
    none): it refuses to start a download that would leave less, so a disk is not filled to the last byte for the
    system and the other programs on it, and a model that cannot fit is refused before a byte moves."""
    value = _byte_count("MODELARC_DISK_RESERVE")
    return DEFAULT_DISK_RESERVE if value is None else value


def send_min_rate() -> int:
    """Bytes per second a client must take of a response, averaged over each send timeout
    (``MODELARC_SEND_MIN_RATE``, default 4 KiB; 0: any progress will do)."""
    return _min_rate("MODELARC_SEND_MIN_RATE")


def receive_timeout() -> float:
    """Seconds a server waits on a client's request (``MODELARC_RECEIVE_TIMEOUT``, default 60): the window of the
    receive deadline for a body a route reads (api/receiving.py), and the time a connection has for a request's
    head after it opens or after its last answer, a body answered unread included (cli/http_protocol.py)."""
    return _seconds("MODELARC_RECEIVE_TIMEOUT", 60.0)


def remote_busy_wait() -> float:
    """Seconds in all a ``--remote`` command waits on a remote that answers "busy" (503 ServerBusy, ``Retry-After``)
    before it gives up with that answer (``MODELARC_REMOTE_BUSY_WAIT``, default 60; 0: ask once, never wait): a
    server out of memory for bodies, or whose catalog is locked by another change, wrote nothing of the request and
    asks to be asked again, so a push or pull waits out a short rush instead of failing, and a server that stays busy
    costs the command at most this long."""
    return _seconds("MODELARC_REMOTE_BUSY_WAIT", 60.0, least=0.0)


def remote_timeouts() -> tuple[float, float]:
    """How long the remote client waits for any one read (``MODELARC_REMOTE_TIMEOUT``, seconds, default 60) and the
    slowest transfer rate it accepts (``MODELARC_REMOTE_MIN_RATE``, bytes per second, default 10 KiB): a request's
    deadline is the timeout plus its expected size at that rate, so a remote that trickles a byte a second, or
    stops answering, ends the command instead of holding it forever (docs/FORMAT.md "Transfer")."""
    from modelarc.errors import UsageError

    timeout = _seconds("MODELARC_REMOTE_TIMEOUT", 60.0)
    text = os.environ.get("MODELARC_REMOTE_MIN_RATE")
    rate = 10 << 10
    if text:
        try:
            rate = _byte_count("MODELARC_REMOTE_MIN_RATE") or 0
        except UsageError:
            rate = 0
        if rate < 1:
            raise UsageError(f"MODELARC_REMOTE_MIN_RATE={text[:40]!r}: expected a positive number of bytes per second")
    return timeout, float(rate)
