"""The store lock, kept in the catalog so that every host sharing the catalog and the bucket obeys it.

A flock on a file only binds processes on one machine; with several servers on one PostgreSQL catalog and one
bucket, gc on host A must still never delete what a push on host B has written or deduplicated against. Each
holder is a row (``store_locks``): shared for pushes, pulls and commits, exclusive for gc and deletions. The
protocol, specified in docs/FORMAT.md ("Store locks"):

- **Acquire** in one serialised transaction (PostgreSQL: a transaction-scoped advisory lock; SQLite: the database
  write lock, taken by the first statement, a delete): drop expired rows and rows whose process is known dead
  (same machine by boot id and PID namespace, ``same_machine``; pid gone), then insert this holder's row unless a conflicting row remains (exclusive conflicts
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


# Where this machine's identity is read (Linux; elsewhere none is found, and pids are never trusted, see below).
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
PID_NAMESPACE_LINK = "/proc/self/ns/pid"
# the `machine` column's format, "HOST/m2:MACHINE-ID:BOOT-ID:PID-NAMESPACE": a row in any other (before it,
# "HOST/pid:[INODE]") was written by a version that could not tell cloned hosts apart, and is never reaped by pid
MACHINE_FORMAT = "m2"
UNKNOWN = "-"


@cache
def machine_id() -> str:
    """Where this process's pid means something: see ``machine_label``."""
    return machine_label(socket.gethostname())


def machine_label(
    hostname: str,
    *,
    machine_id_files: tuple[str, ...] = MACHINE_ID_FILES,
    boot_id_file: str = BOOT_ID_FILE,
    pid_namespace_link: str = PID_NAMESPACE_LINK,
) -> str:
    """``HOST/m2:MACHINE-ID:BOOT-ID:PID-NAMESPACE``, each part ``-`` when it cannot be read.

    Why each part: the host name is for people (``HeldLock.describe``) and proves nothing, since VMs cloned from
    one image share it; the PID namespace alone neither, since the initial one is the same inode
    (``pid:[4026531836]``) on every Linux host. The boot id is random per kernel boot, so it tells any two hosts
    apart, cloned VMs included (which often share /etc/machine-id too), while containers on one host share it and
    are told apart by their PID namespaces. The machine id names the host across reboots, for whoever reads the
    row. A row from before a reboot of this host has another boot id: its pid is not trusted, it expires.
    """
    machine = next((v for v in map(_hex_id, machine_id_files) if v), UNKNOWN)
    boot = _hex_id(boot_id_file) or UNKNOWN
    try:
        link = os.readlink(pid_namespace_link)  # "pid:[4026531836]"
    except OSError:
        link = ""
    inode = link.removeprefix("pid:[").removesuffix("]")
    pidns = inode if inode.isdigit() else UNKNOWN
    return f"{hostname[:64]}/{MACHINE_FORMAT}:{machine}:{boot}:{pidns}"


def _hex_id(path: str) -> str | None:
    """The 128-bit id in ``path`` as 32 lowercase hex digits (a boot id's dashes dropped); None when the file is
    missing, empty (an image's machine-id is emptied to be made at first boot) or holds anything else."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(100).strip().replace("-", "").lower()
    except (OSError, ValueError):
        return None
    return text if len(text) == 32 and all(c in "0123456789abcdef" for c in text) else None


def same_machine(row_machine: str, mine: str) -> bool:
    """True when a row's ``pid`` names a process this one can see, so a pid that is not running means its holder
    died: the same label, in this format, with the boot id and PID namespace known. Anything less (a row of the
    old format, a label with an unread part, another boot) is another machine, whose row only expires."""
    if row_machine != mine:
        return False
    _host, _sep, ident = mine.partition("/")
    parts = ident.split(":")
    return len(parts) == 4 and parts[0] == MACHINE_FORMAT and UNKNOWN not in parts[2:]


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
        if same_machine(row.machine, holder.machine) and not _pid_alive(row.pid):
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
