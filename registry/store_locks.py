"""The store lock, kept in the catalog so that every host sharing the catalog and the bucket obeys it.

A flock on a file only binds processes on one machine; with several servers on one PostgreSQL catalog and one
bucket, gc on host A must still never delete what a push on host B has written or deduplicated against. Each
holder is a row (``store_locks``): shared for pushes, pulls and commits, exclusive for gc and deletions. The
protocol, specified in docs/FORMAT.md ("Store locks"):

- **Acquire** in one serialised transaction (PostgreSQL: a transaction-scoped advisory lock; SQLite: the database
  write lock, taken by the first statement, a delete): drop expired rows and rows whose process is known dead
  (same machine, pid gone), then insert this holder's row unless a conflicting row remains (exclusive conflicts
  with anything, shared with exclusive).
- **Heartbeat**: the holder moves its ``expires_at`` forward every ``ttl / 4``; a crashed holder on another machine
  stops doing so and its row expires after ``ttl``, so gc is never blocked for longer than that.
- **Confirm before relying on it**: a push records its snapshot in the same transaction that refreshes its row,
  and refuses when the row is gone or expired (``LockLostError``): a pusher paused past its expiry may have had
  objects collected under it, so it records nothing. gc deletes only inside the window its last refresh
  guarantees (expiry minus a margin for clock skew), measured on a monotonic clock.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from functools import cache

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from modelarc.registry.models import utcnow
from modelarc.registry.store_models import StoreLock

# any constant works, as long as every modelarc process uses the same one: "modelarc" in ASCII
ADVISORY_KEY = 0x6D6F64656C617263 & 0x7FFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Holder:
    """Who holds (or wants) a lock: shown to whoever is kept waiting, and used to spot dead local holders."""

    id: str
    exclusive: bool
    purpose: str
    actor: str
    machine: str
    pid: int

    @classmethod
    def me(cls, *, exclusive: bool, purpose: str, actor: str) -> Holder:
        return cls(uuid.uuid4().hex, exclusive, purpose[:60], actor[:200], machine_id(), os.getpid())


@dataclass(frozen=True)
class HeldLock:
    """A row that kept someone out: enough to tell the user who and since when."""

    purpose: str
    actor: str
    machine: str
    pid: int
    since: dt.datetime
    exclusive: bool

    def describe(self) -> str:
        host = self.machine.split("/", 1)[0]
        return f"{self.purpose} by {self.actor} on {host} (pid {self.pid}) since {self.since:%Y-%m-%d %H:%M:%S} UTC"


@cache
def machine_id() -> str:
    """Host name plus PID namespace: two containers may share a host name but never a PID namespace and a name."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = "-"
    return f"{socket.gethostname()}/{pidns}"[:200]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _serialise(s: Session) -> None:
    """Make lock-table decisions one at a time across every process and host using this catalog."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_KEY})
    # SQLite: the delete that follows takes the database write lock before anything is read


def try_acquire(s: Session, holder: Holder, ttl: dt.timedelta) -> list[HeldLock]:
    """Insert ``holder``'s row unless a conflicting live row exists; the conflicting rows (empty on success).

    The caller commits the session: the lock is held from that commit on.
    """
    _serialise(s)
    now = utcnow()
    s.execute(delete(StoreLock).where(StoreLock.expires_at <= now))
    rows = list(s.scalars(select(StoreLock)))
    live = []
    for row in rows:
        if row.machine == holder.machine and not _pid_alive(row.pid):
            s.delete(row)  # its process died without releasing (kill -9, power cut): it holds nothing
            continue
        live.append(row)
    conflicts = [r for r in live if holder.exclusive or r.exclusive]
    if conflicts:
        return [HeldLock(r.purpose, r.actor, r.machine, r.pid, r.acquired_at, r.exclusive) for r in conflicts]
    s.add(
        StoreLock(
            id=holder.id,
            exclusive=holder.exclusive,
            purpose=holder.purpose,
            actor=holder.actor,
            machine=holder.machine,
            pid=holder.pid,
            acquired_at=now,
            expires_at=now + ttl,
        )
    )
    return []


def refresh(s: Session, holder_id: str, ttl: dt.timedelta) -> bool:
    """Move the row's expiry to now + ``ttl``; False when the row is gone or already expired (the lock is lost).

    On PostgreSQL the update also locks the row until the caller's transaction ends, so a gc that would drop it
    waits for that transaction (and then sees whatever it committed).
    """
    now = utcnow()
    result = s.execute(
        update(StoreLock)
        .where(StoreLock.id == holder_id, StoreLock.expires_at > now)
        .values(expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(s: Session, holder_id: str) -> None:
    s.execute(delete(StoreLock).where(StoreLock.id == holder_id))


def holders(s: Session) -> list[HeldLock]:
    """Every unexpired row, for `modelarc fsck`/status output."""
    now = utcnow()
    return [
        HeldLock(r.purpose, r.actor, r.machine, r.pid, r.acquired_at, r.exclusive)
        for r in s.scalars(
            select(StoreLock).where(StoreLock.expires_at > now).order_by(StoreLock.acquired_at)
        )
    ]
