"""Holding the store lock (registry/store_locks.py) for the length of an operation, with a heartbeat.

Pushes, pulls and remote commits hold it shared, gc and withdrawals exclusively. The lock is a catalog row with
an expiry; a daemon thread moves the expiry forward while the operation runs, so a holder that dies stops
blocking others after one ``ttl`` while a slow but live one keeps its lock for hours.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from modelarc.errors import LockedError, LockLostError, StoreWriteLostError
from modelarc.registry import store_locks

if TYPE_CHECKING:
    from modelarc.registry.db import Catalog, CatalogSession

# the share of the ttl that gc trusts after a refresh: the rest is a margin for clock skew between hosts and for
# the time a deletion takes once started
SAFE_SHARE = 0.5


class StoreLockHandle:
    """One held lock. ``confirm(session)`` inside the transaction that relies on it; ``safe()`` for gc."""

    def __init__(self, catalog: Catalog, holder: store_locks.Holder, ttl: float) -> None:
        self.catalog = catalog
        self.holder = holder
        self.ttl = dt.timedelta(seconds=ttl)
        self._confirmed_at = time.monotonic()
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="modelarc-store-lock", daemon=True)

    def _beat(self) -> None:
        interval = self.ttl.total_seconds() / 4
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except LockLostError:
                return
            except Exception:  # a database hiccup: try again at the next beat, the expiry still has 3/4 left
                continue

    def refresh(self) -> None:
        started = time.monotonic()
        with self.catalog.session() as s:
            self.confirm(s)
        self._confirmed_at = started

    def confirm(self, s: CatalogSession) -> None:
        """Refresh the row inside ``s``; ``LockLostError`` when it expired, so ``s`` must record nothing."""
        if self._lost or not store_locks.refresh(s, self.holder.id, self.ttl):
            self._lost = True
            raise LockLostError(
                f"this {self.holder.purpose} lost the store lock: it was paused or cut off from the catalog for "
                f"longer than the lock's {self.ttl.total_seconds():.0f} s expiry, so gc may have run meanwhile; "
                "nothing was recorded; run the command again"
            )

    def safe(self) -> bool:
        """True while the last refresh guarantees no one else can have taken the lock (monotonic clock)."""
        return not self._lost and time.monotonic() < self._confirmed_at + SAFE_SHARE * self.ttl.total_seconds()

    def ensure_safe(self) -> None:
        """Refresh when the safe window is running out: gc calls this before each deletion."""
        if not self.safe():
            self.refresh()

    @contextmanager
    def explains_lost_writes(self, *also: type[Exception]) -> Iterator[None]:
        """What a gc running under a holder that lost its lock (paused past its expiry) does to its writes: a temp
        file cleared before its rename, an S3 upload aborted before it completed (``StoreWriteLostError``, which
        storage raises naming only the file: it knows nothing of locks), or any of ``also`` (a push: an object it
        wrote gone when read back). Then that is what to say: ``LockLostError`` (exit 8, nothing is recorded, run
        it again), as every command that writes into a store says it; with the lock still held, the error as
        raised."""
        lost: tuple[type[Exception], ...] = (StoreWriteLostError, *also)
        try:
            yield
        except lost:
            self.refresh()
            raise


@contextmanager
def hold(
    catalog: Catalog,
    *,
    exclusive: bool,
    purpose: str,
    actor: str,
    ttl: float,
    wait: bool = True,
    poll: float = 0.05,
) -> Iterator[StoreLockHandle]:
    """Hold the store lock for the ``with`` body. ``wait=False`` raises ``LockedError`` at once when it is busy;
    waiting polls with backoff up to one second between tries."""
    holder = store_locks.Holder.me(exclusive=exclusive, purpose=purpose, actor=actor)
    delay = poll
    while True:
        with catalog.session() as s:
            conflicts = store_locks.try_acquire(s, holder, dt.timedelta(seconds=ttl))
        if not conflicts:
            break
        if not wait:
            raise LockedError(
                f"the store is busy: {conflicts[0].describe()}"
                + (f" and {len(conflicts) - 1} more" if len(conflicts) > 1 else "")
                + "; try again later"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    handle = StoreLockHandle(catalog, holder, ttl)
    handle._thread.start()
    try:
        yield handle
    finally:
        handle._stop.set()
        handle._thread.join()
        with catalog.session() as s:
            store_locks.release(s, holder.id)
