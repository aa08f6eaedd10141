"""Who may read a model's weights: access policies, grants, access requests, and the decisions the server asks for.

A model is ``public`` unless a policy says otherwise; ``gated`` weights go to tokens holding a live grant for the
model (naming the token's name, or ``token:<id>``); ``restricted`` weights to admins only. A policy may carry an
``until`` date: from 00:00 UTC that day it lapses to public with no one acting (an embargo). A snapshot may
override its model's policy (``inherit`` ends the override); an override an administrator set that lapses lapses to
public too, not to the model's policy. One a received snapshot's offer brought (``receive_policy``) lapses to the
model's policy instead: its date is the pusher's choice, and a pusher may not make a gated model's snapshot public.
Admin tokens read everything.

Only the bytes of weight files are withheld (``is_withheld_file``), and every file is weights but a short list of
public metadata (archive/weights.py): the catalog entry, the manifest, file names, sizes and hashes, configs,
tokenizers, READMEs, licences, signatures and training-data manifests stay public, because that the model existed
and what it was made from is the point of the archive. A recorded run's document (its prompt and the model's
output) is withheld as the weights are: the output is derived from them. A withdrawn snapshot withholds its
weights from everyone but admins, whatever its policy.

The routes call one function per request: ``read_decision`` for a snapshot's files, ``object_readable`` for
``/v1/objects/{id}`` (where an id may have been read off a public manifest, so it is checked against every snapshot
that uses the object). Every change is audited with its reason and written as a catalog record (``access``,
``grant``), so ``rebuild-catalog`` restores it; access requests are catalog-only.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelarc.archive.left_records import (
    Attempt,
    LeftRecords,
    adopt,
    attempt_key,
    find_left,
    finish_attempt,
    start_attempt,
    write_unless_left,
)
from modelarc.archive.manifest import FileEntry, SnapshotManifest
from modelarc.archive.provenance.dates import iso_day
from modelarc.archive.records import CatalogRecord, catalog_time, write_record
from modelarc.archive.runtime.cache import CachePurge, purge_snapshots, with_entries
from modelarc.archive.tokens import Principal
from modelarc.archive.weights import is_public_metadata, is_weights_entry
from modelarc.errors import (
    AccessNotRequestableError,
    IntegrityError,
    ModelarcError,
    NamespaceRefusedError,
    NotFoundError,
    PolicyLooseningError,
    UsageError,
)
from modelarc.registry import access as access_rows
from modelarc.registry import queries as q
from modelarc.registry import tokens as token_rows
from modelarc.registry.access import GrantRecord, PolicyRecord, RequestRecord
from modelarc.registry.db import CatalogSession
from modelarc.registry.refs import SnapshotId, parse_model_name, revision_ref
from modelarc.registry.snapshots import SnapshotRecord
from modelarc.storage import ObjectId

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

LEVELS = ("public", "gated", "restricted")
INHERIT = "inherit"  # a snapshot's override that ends: the snapshot follows its model again
MAX_TEXT = 4000  # characters of a reason or a justification
MAX_FILE_PATTERNS = 64  # --withhold patterns of one policy
_TOKEN_SUBJECT = re.compile(r"token:([0-9]{1,18})")
# why rebuild-catalog revokes every grant to a token id it replays (archive/rebuild.py); upgrade knows it by this
TOKEN_GRANT_LAPSED = "API tokens do not survive rebuild-catalog, so a grant to a token id cannot either"


# ------------------------------------------------------------------------------------------------ values
@dataclass(frozen=True)
class EffectivePolicy:
    """The policy that holds for a model or one of its snapshots at ``now``.

    ``level`` is what applies (public once an embargo lapsed), ``declared`` what was set; ``source`` says where it
    comes from: ``default`` (no policy was ever set: public), ``model`` or ``snapshot`` (an override).
    """

    model: str
    snapshot: SnapshotId | None
    level: str
    declared: str = "public"
    until: dt.date | None = None
    reason: str | None = None
    source: str = "default"
    set_by: str | None = None
    set_at: dt.datetime | None = None
    files: tuple[str, ...] = ()  # glob patterns of files withheld besides weights

    @property
    def lapsed(self) -> bool:
        return self.level != self.declared

    @property
    def withholds(self) -> bool:
        return self.level != "public"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "snapshot": self.snapshot,
            "level": self.level,
            "declared": self.declared,
            "until": self.until.isoformat() if self.until else None,
            "files": list(self.files),
            "lapsed": self.lapsed,
            "reason": self.reason,
            "source": self.source,
            "set_by": self.set_by,
            "set_at": self.set_at.isoformat(timespec="seconds") if self.set_at else None,
        }


@dataclass(frozen=True)
class AccessDecision:
    policy: EffectivePolicy
    allowed: bool  # whether the principal may read the withheld files (every other file is public anyway)


@dataclass(frozen=True)
class ModelAccess:
    """What ``access ls`` shows of one model: its policy, its snapshots' overrides and its grants."""

    model: str
    policy: EffectivePolicy
    overrides: tuple[EffectivePolicy, ...] = ()
    grants: tuple[GrantRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "policy": self.policy.to_json(),
            "overrides": [p.to_json() for p in self.overrides],
            "grants": [g.to_json() for g in self.grants],
        }


@dataclass(frozen=True)
class GrantChange:
    model: str
    subject: str
    action: str  # grant | revoke
    reason: str
    grants: tuple[GrantRecord, ...] = field(default_factory=tuple)
    # a grant that opens nothing now (no policy of the model is gated): what to tell whoever made it (``grant_note``)
    note: str | None = None
    # the record an earlier run of the same command left, stopped before its commit, which this run completed, and
    # the keys of other such records of the same grant that say otherwise (archive/left_records.py)
    record_completed: str | None = None
    records_contradicting: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------ decisions
def _naive_utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return catalog_time()
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now


def resolve_policy(
    model: str,
    snapshot: SnapshotId | None,
    model_row: PolicyRecord | None,
    override: PolicyRecord | None,
    now: dt.datetime | None = None,
) -> EffectivePolicy:
    """The policy that holds, from the newest model row and the newest override row (either may be None)."""
    if override is not None and override.level != INHERIT:
        chosen, source = override, "snapshot"
    elif model_row is not None:
        chosen, source = model_row, "model"
    else:
        return EffectivePolicy(model, snapshot, "public")
    level = chosen.level
    if chosen.until is not None and _naive_utc(now) >= dt.datetime.combine(chosen.until, dt.time()):
        if source == "snapshot" and chosen.received:
            # a received embargo lapses to the model's policy, never below it: the pusher chose its date
            return resolve_policy(model, snapshot, model_row, None, now)
        level = "public"  # the embargo lapsed: no one had to act
    return EffectivePolicy(
        model,
        snapshot,
        level,
        chosen.level,
        chosen.until,
        chosen.reason,
        source,
        chosen.actor,
        chosen.at,
        chosen.files,
    )


def may_read_weights(
    policy: EffectivePolicy, principal: Principal | None, grants: Iterable[GrantRecord]
) -> bool:
    """Whether ``principal`` (None: anonymous) may read the withheld files of what ``policy`` covers.

    ``grants`` may hold any grants (of other models, revoked ones): only a live grant of this model naming the
    token's name or ``token:<id>`` counts. ``principal`` must be a live token (``token_principal``).
    """
    if policy.level == "public":
        return True
    if principal is None:
        return False
    if principal.scope == "admin":
        return True
    if policy.level != "gated":  # restricted, and any level this code does not know: admins only
        return False
    subjects = set(principal.subjects)
    return any(g.live and g.model == policy.model and g.subject in subjects for g in grants)


def is_withheld_file(path: str, kind: str, files: Sequence[str] = ()) -> bool:
    """Whether a file of a non-public snapshot is withheld: every file but public metadata (archive/weights.py:
    an unknown format is weights), and any file a glob pattern of the policy names (``files``, matched against the
    whole path, as ``fnmatch`` does, ignoring case: the public list ignores case too, so `--withhold '*.json'`
    must name `CONFIG.JSON` as well, or it would stay public under a spelling the pusher chose)."""
    return not is_public_metadata(path, kind) or _named_by(path, files)


def is_withheld_entry(entry: FileEntry, files: Sequence[str] = ()) -> bool:
    return is_weights_entry(entry) or _named_by(entry.path, files)


def _named_by(path: str, files: Sequence[str]) -> bool:
    """Whether a policy's ``files`` patterns name ``path`` (whole path, ignoring case)."""
    lower = path.lower()
    return any(fnmatchcase(lower, pattern.lower()) for pattern in files)


def withheld_paths(manifest: SnapshotManifest, files: Sequence[str] = ()) -> set[str]:
    """The files of a snapshot that its policy withholds (the rest, and the manifest itself, are public)."""
    return {f.path for f in manifest.files if is_withheld_entry(f, files)}


def withheld_object_ids(manifest: SnapshotManifest, files: Sequence[str] = ()) -> frozenset[str]:
    """Objects used only by withheld files: a chunk a public file of the same snapshot uses too is public."""
    withheld: set[str] = set()
    public: set[str] = set()
    for f in manifest.files:
        into = withheld if is_withheld_entry(f, files) else public
        into.update(c.id for p in f.parts for c in p.chunks)
    return frozenset(withheld - public)


# ------------------------------------------------------------------------------------------------ sessions
@contextmanager
def _session(source: Archive | CatalogSession) -> Iterator[CatalogSession]:
    if isinstance(source, CatalogSession):
        yield source
    else:
        with source.catalog.session() as s:
            yield s


def _snapshot_row(s: CatalogSession, model: str, snapshot: SnapshotRecord | str) -> SnapshotRecord:
    namespace, name = parse_model_name(model)
    if isinstance(snapshot, SnapshotRecord):
        if snapshot.model != model:
            raise UsageError(f"snapshot {snapshot.label} is not a snapshot of {model}")
        return snapshot
    return q.resolve_snapshot(s, revision_ref(namespace, name, snapshot))


def effective_policy(
    source: Archive | CatalogSession,
    model: str,
    snapshot: SnapshotRecord | str | None = None,
    *,
    now: dt.datetime | None = None,
) -> EffectivePolicy:
    """The policy of ``model`` (``ns/name``), or of one of its snapshots (a ``SnapshotRecord``, a tag or a snapshot
    id) at ``now`` (default: the current time). ``NotFoundError`` for an unknown model or snapshot."""
    with _session(source) as s:
        found = q.require_model(s, *parse_model_name(model))
        snap = None if snapshot is None else _snapshot_row(s, model, snapshot)
        rows = access_rows.current_policies(s, [found.row_id], [snap.row_id] if snap else ())
    model_row = next((p for p in rows if p.snapshot_row_id is None), None)
    override = next((p for p in rows if snap is not None and p.snapshot_row_id == snap.row_id), None)
    return resolve_policy(model, snap.digest if snap else None, model_row, override, now)


def read_decision(
    source: Archive | CatalogSession,
    model: str,
    snapshot: SnapshotRecord | str | None,
    principal: Principal | None,
    *,
    now: dt.datetime | None = None,
) -> AccessDecision:
    """``effective_policy`` and ``may_read_weights`` in one call: what a route serving a snapshot's files needs.

    The grants are read only when they can matter (a gated policy and a token that is not an admin's).
    """
    with _session(source) as s:
        policy = effective_policy(s, model, snapshot, now=now)
        grants: list[GrantRecord] = []
        if policy.level == "gated" and principal is not None and principal.scope != "admin":
            found = q.require_model(s, *parse_model_name(model))
            grants = access_rows.grants(s, [found.row_id], subjects=principal.subjects)
    return AccessDecision(policy, may_read_weights(policy, principal, grants))


class _WithheldCache:
    """The withheld object ids of recently checked manifests, by snapshot id (a manifest never changes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, tuple[str, ...]], frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, archive: Archive, digest: SnapshotId, files: tuple[str, ...] = ()) -> frozenset[str] | None:
        key = (str(digest), files)  # the same manifest withholds more under a policy that names files
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            ids = withheld_object_ids(archive.manifest_by_id(digest), files)  # re-hashed against the id
        except ModelarcError:  # missing, corrupt or malformed (IntegrityError, UsageError for a bad path)
            return None  # a manifest that cannot be read: nothing can be shown to be public
        with self._lock:
            self._items[key] = ids
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return ids


_withheld_cache = _WithheldCache(32)  # a 70B model in 8 MiB chunks is ~17k ids (~2 MB): 32 stay in memory


def served_standalone(archive: Archive, object_id: str, principal: Principal | None) -> bool:
    """Whether a delta object goes to ``principal`` decoded and encoded on its own: it may read the object (the
    caller checked) but not every base of its chain, e.g. a public fine-tune of a gated parent. Sending the delta
    would hand out the parent's bytes with it (its receiver needs them to decode)."""
    if principal is not None and principal.scope == "admin":
        return False
    try:
        chain = archive.store.delta_chain(ObjectId(object_id))
    except IntegrityError:
        return False  # a broken chain: the object goes as stored, and its receiver names what is wrong
    return any(not object_readable(archive, base, principal) for base in chain)


def object_readable(
    archive: Archive, object_id: str, principal: Principal | None, *, now: dt.datetime | None = None
) -> bool:
    """Whether ``principal`` may fetch the object ``object_id`` (``/v1/objects/{id}``).

    Yes when at least one snapshot that references it (``snapshot_objects``) lets the principal read its weights,
    or uses it outside every withheld file (its manifest, a signature bundle, a training-data manifest, a config's
    chunk). So an object a public and a gated snapshot share is public, and a gated weight chunk is not, however
    its id was learnt. A withdrawn snapshot's use counts as a policy that withholds from everyone: it makes its
    manifest, bundles and public metadata readable, never a weight chunk it still holds (a header, one an older
    withdrawal did not release). An object no snapshot references (uploaded by a push not yet committed, or weights a
    withdrawal released, awaiting gc) is for admins only. A run document (``modelarc run --record``) is judged as
    its snapshot's weights are: it holds the prompt and the model's output, which is derived from the weights, so
    it goes only to who may read them (or to anyone while some live snapshot that has it withholds nothing).
    All public: two queries; a manifest is read only for snapshots whose policy withholds something from this
    principal.
    """
    return object_id in readable_objects(archive, [object_id], principal, now=now)


def readable_objects(
    archive: Archive, object_ids: Iterable[str], principal: Principal | None, *, now: dt.datetime | None = None
) -> set[str]:
    """Those of ``object_ids`` that ``principal`` may fetch, each judged exactly as ``object_readable`` says, with
    the queries made once for all of them (``POST /v1/objects/batch``: per object they were most of the cost of
    serving a chunk, bench/http_pull.py)."""
    ids = list(dict.fromkeys(object_ids))
    if principal is not None and principal.scope == "admin":
        return set(ids)  # admins read everything: no query
    readable: set[str] = set()
    undecided: dict[str, list[tuple[access_rows.ObjectUse, EffectivePolicy]]] = {}
    grants: list[GrantRecord] = []
    with archive.catalog.session() as s:
        uses_of = access_rows.objects_uses(s, ids)  # an object no snapshot uses: for admins only
        used = [u for uses in uses_of.values() for u in uses]
        if not used:
            return readable
        rows = access_rows.current_policies(s, {u.model_id for u in used}, [u.snapshot_row_id for u in used])
        model_rows = {p.model_id: p for p in rows if p.snapshot_row_id is None}
        overrides = {p.snapshot_row_id: p for p in rows if p.snapshot_row_id is not None}
        for oid, uses in uses_of.items():
            policies = [
                (
                    u,
                    resolve_policy(
                        u.model, u.digest, model_rows.get(u.model_id), overrides.get(u.snapshot_row_id), now
                    ),
                )
                for u in uses
            ]
            if any(not p.withholds and not u.withdrawn for u, p in policies):
                readable.add(oid)  # some live snapshot that uses it withholds nothing (no policy at all: public)
            else:
                undecided[oid] = policies
        gated = {u.model_id for policies in undecided.values() for u, p in policies if p.level == "gated"}
        if gated and principal is not None and principal.scope != "admin":
            grants = access_rows.grants(s, gated, subjects=principal.subjects)
    for oid, policies in undecided.items():
        if any(not u.withdrawn and may_read_weights(p, principal, grants) for u, p in policies):
            readable.add(oid)
            continue  # a withdrawn snapshot's weights are no one's but an admin's: only its public files are read
        for u, p in policies:
            if u.run:
                continue  # a run document: the model's output, derived from the weights it withholds
            if oid == u.digest.hex:
                readable.add(oid)  # the manifest: public provenance
                break
            withheld = _withheld_cache.get(archive, u.digest, p.files)
            if withheld is not None and oid not in withheld:
                readable.add(oid)  # a bundle, a data manifest, a config's chunk: used outside every withheld file
                break
    return readable


# ------------------------------------------------------------------------------------------------ changes
def _reason(reason: str | None, what: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise UsageError(f"a reason is required: {what} --reason TEXT")
    if len(text) > MAX_TEXT:
        raise UsageError(f"the reason is {len(text)} characters long; at most {MAX_TEXT}")
    return text


def parse_until(text: str | dt.date | None, now: dt.datetime | None = None) -> dt.date | None:
    """``--until``: a date (``YYYY-MM-DD``) after today (UTC); the policy lapses to public from 00:00 UTC that day."""
    if text is None:
        return None
    if isinstance(text, dt.date):
        day = text
    else:
        try:
            day = iso_day(text)
        except ValueError:
            raise UsageError(f"invalid date {text[:40]!r}: expected YYYY-MM-DD") from None
    today = _naive_utc(now).date()
    if day <= today:
        raise UsageError(f"--until {day.isoformat()} is not after today ({today.isoformat()} UTC)")
    return day


def apply_policy(
    s: CatalogSession,
    model: str,
    snapshot: SnapshotRecord | None,
    level: str,
    until: dt.date | None,
    reason: str,
    *,
    actor: str,
    at: dt.datetime,
    files: tuple[str, ...] = (),
    received: bool = False,
) -> None:
    """Add the policy row and its audit entry: ``access set``, a received snapshot's policy (``received``) and
    their replay (archive/rebuild.py) alike."""
    found = q.require_model(s, *parse_model_name(model))
    access_rows.add_policy(
        s, found.row_id, snapshot.row_id if snapshot else None, level, until, reason, actor, at, files, received
    )
    target = snapshot.label if snapshot else model
    until_text = until.isoformat() if until else None
    extra: dict[str, Any] = {"files": list(files)} if files else {}
    if received:
        extra["received"] = True
    q.audit(s, actor, "access.set", target, at=at, level=level, until=until_text, reason=reason, **extra)


def _record_policy(
    archive: Archive,
    s: CatalogSession,
    model: str,
    snap: SnapshotRecord | None,
    level: str,
    until: dt.date | None,
    reason: str,
    actor: str,
    files: tuple[str, ...],
    deferred: list[Callable[[], object]] | None = None,
    received: bool = False,
    left: CatalogRecord | None = None,
) -> None:
    """A policy change in the caller's transaction: the row, its audit entry, and its catalog record (appended to
    ``deferred`` instead, for a caller that writes its records once every row of the transaction is in). ``left``:
    the record an earlier run of the same ``access set`` left, stopped before its commit, which this change adopts
    with its time instead of writing one (archive/left_records.py)."""
    at = left.at if left is not None else catalog_time()
    apply_policy(s, model, snap, level, until, reason, actor=actor, at=at, files=files, received=received)
    s.flush()  # the row is held before the record's time is taken (archive/records.py)
    if left is not None:
        adopt(archive, s, left)
        return

    def write() -> str:
        return write_record(
            archive.store.backend,
            s,
            "access",
            at=at,
            actor=actor,
            model=model,
            snapshot=snap.digest if snap else None,
            level=level,
            until=until.isoformat() if until else None,
            reason=reason,
            **({"files": list(files)} if files else {}),
            **({"received": True} if received else {}),
        )

    if deferred is None:
        write()
    else:
        deferred.append(write)


def parse_files(patterns: Iterable[str], what: str = "--withhold, access.files") -> tuple[str, ...]:
    """``--withhold GLOB``: further files a policy withholds, as ``fnmatch`` patterns over the whole path. The same
    rules hold for a received offer's ``access.files`` (``what`` names it), checked as the offer is parsed: a pattern
    refused only once the snapshot were recorded would leave it recorded without its policy."""
    out = tuple(dict.fromkeys(p.strip() for p in patterns))
    if len(out) > MAX_FILE_PATTERNS:
        raise UsageError(f"at most {MAX_FILE_PATTERNS} withheld-file patterns ({what}), not {len(out)}")
    for pattern in out:
        if not pattern or len(pattern) > 500 or "\x00" in pattern:
            raise UsageError(f"withheld-file pattern {pattern!r} ({what}): a glob pattern of 1 to 500 characters")
    return out


@dataclass(frozen=True)
class PolicyChange:
    """What ``change_policy`` did: the policy that holds afterwards, and the load cache's decoded copies of the
    snapshots it made stricter, removed (entry folders, their bytes) or left as "FOLDER (why)", as ``rm`` says."""

    policy: EffectivePolicy
    cache_removed: tuple[str, ...] = ()
    cache_bytes_freed: int = 0
    cache_left: tuple[str, ...] = ()
    # the record an earlier run of the same `access set` left, stopped before its commit, which this one completed,
    # and the keys of other such records of the same target that say otherwise (archive/left_records.py)
    record_completed: str | None = None
    records_contradicting: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **self.policy.to_json(),
            "cache_removed": list(self.cache_removed),
            "cache_bytes_freed": self.cache_bytes_freed,
            "cache_left": list(self.cache_left),
            "record_completed": self.record_completed,
            "records_contradicting": list(self.records_contradicting),
        }


# how much a level withholds; a level this code does not know withholds as restricted does (may_read_weights)
_STRICTNESS = {"public": 0, "gated": 1, "restricted": 2}


def _strictness(level: str) -> int:
    return _STRICTNESS.get(level, 2)


def _levels(
    s: CatalogSession, model: str, model_row_id: int, snaps: Sequence[SnapshotRecord], now: dt.datetime | None
) -> dict[int, str]:
    """The level that holds for each of ``snaps`` (all of ``model``), by snapshot row id."""
    if not snaps:
        return {}
    rows = access_rows.current_policies(s, [model_row_id])
    model_row = next((p for p in rows if p.snapshot_row_id is None), None)
    overrides = {p.snapshot_row_id: p for p in rows if p.snapshot_row_id is not None}
    levels = {}
    for x in snaps:
        levels[x.row_id] = resolve_policy(model, x.digest, model_row, overrides.get(x.row_id), now).level
    return levels


def set_policy(
    archive: Archive,
    model: str,
    level: str,
    *,
    reason: str,
    until: str | dt.date | None = None,
    snapshot: str | None = None,
    now: dt.datetime | None = None,
    files: Iterable[str] = (),
) -> EffectivePolicy:
    """Set ``model``'s policy (or, with ``snapshot``, a tag or snapshot id, that snapshot's override); the policy
    that holds afterwards. ``now`` is for tests: the change itself is stamped with the current time. The load
    cache is purged as ``change_policy`` says."""
    return change_policy(
        archive, model, level, reason=reason, until=until, snapshot=snapshot, now=now, files=files
    ).policy


def change_policy(
    archive: Archive,
    model: str,
    level: str,
    *,
    reason: str,
    until: str | dt.date | None = None,
    snapshot: str | None = None,
    now: dt.datetime | None = None,
    files: Iterable[str] = (),
) -> PolicyChange:
    """``set_policy``, saying what it removed from the load cache: every snapshot the change makes stricter (public
    to gated or restricted, gated to restricted) loses its decoded copy in the home's ``cache/`` and in
    MODELARC_CACHE_DIR, as a withdrawal does (archive/runtime/cache.py ``purge_snapshot``): a copy filled while
    the weights were public is readable by whoever could read that folder then. One it leaves as withheld as it
    was loses a copy still open to other users (what a run killed before its purge left), not a private one. One
    this user may not remove (another user's, in a shared folder) or a link is left and reported, not an error: the
    policy is set."""
    allowed = LEVELS + ((INHERIT,) if snapshot is not None else ())
    if level not in allowed:
        raise UsageError(f"unknown access level {level!r}: one of {', '.join(allowed)}")
    reason = _reason(reason, "modelarc access set")
    day = parse_until(until, now)
    if day is not None and level in ("public", INHERIT):
        raise UsageError(f"--until lapses a policy to public; it makes no sense with {level}")
    patterns = parse_files(files)
    if patterns and level in ("public", INHERIT):
        raise UsageError(f"--withhold names files a gated or restricted policy withholds; not with {level}")
    actor = archive.settings.actor
    with archive.catalog.session() as s:  # refused (no model, no snapshot) before any note is written
        found = q.require_model(s, *parse_model_name(model))
        snap = None if snapshot is None else _snapshot_row(s, model, snapshot)
    target = str(snap.digest) if snap is not None else None
    attempt = start_attempt(archive, attempt_key("access", model, target or ""), fallback=_since_model(found))
    with archive.catalog.session() as s:
        found = q.require_model(s, *parse_model_name(model))
        access_rows.lock_policies(s, found.row_id)  # after a change in flight: `before` is what it left
        snap = None if snapshot is None else _snapshot_row(s, model, snapshot)
        covered = [snap] if snap is not None else q.list_snapshots(s, found)
        before = _levels(s, model, found.row_id, covered, now)
        held_at = {p.at for p in access_rows.policy_history(s, found.row_id)}
        wanted = (level, day.isoformat() if day else None, reason, list(patterns), actor, False)
        left = find_left(
            archive,
            attempt,
            "access",
            lambda b: b.get("model") == model and b.get("snapshot") == target,
            lambda r: _policy_stated(r) == wanted,
            held=lambda r: r.at in held_at,
            changed_after=lambda at: any(t > at for t in held_at),  # any policy of the model: the safe side
        )
        _record_policy(archive, s, model, snap, level, day, reason, actor, patterns, left=left.match)
        finish_attempt(s, attempt)
        after = _levels(s, model, found.row_id, covered, now)
        policy = effective_policy(s, model, snap, now=now)
    purged = purge_after_policy(archive, _tightened(covered, before, after), _still_withheld(covered, before, after))
    removed = tuple(str(p) for p in purged.removed)
    cache_left = tuple(f"{p} ({why})" for p, why in purged.left)
    return PolicyChange(policy, removed, purged.bytes_freed, cache_left, left.completed, left.others)


def _policy_stated(r: CatalogRecord) -> tuple[Any, ...]:
    """What an ``access`` record states, as ``change_policy`` compares it with what it would record."""
    b = r.body
    return b.get("level"), b.get("until"), b.get("reason"), b.get("files") or [], r.actor, b.get("received") is True


def _still_withheld(
    covered: Sequence[SnapshotRecord], before: dict[int, str], after: dict[int, str]
) -> list[SnapshotId]:
    """The snapshots of ``covered`` whose weights ``after`` withholds exactly as strictly as ``before`` did."""
    return [x.digest for x in covered if _strictness(after[x.row_id]) == _strictness(before[x.row_id]) > 0]


def _tightened(
    covered: Sequence[SnapshotRecord], before: dict[int, str], after: dict[int, str]
) -> list[SnapshotId]:
    """The snapshots of ``covered`` whose level (``_levels``, by row id) ``after`` withholds from more readers than
    ``before``: public to gated or restricted, gated to restricted. Only the level counts: a load-cache entry
    holds safetensors files only, which every level but public withholds, so naming more files withholds no more
    of what it holds; an embargo is judged by the level it gives now."""
    return [x.digest for x in covered if _strictness(after[x.row_id]) > _strictness(before[x.row_id])]


def purge_tightened(archive: Archive, snapshots: Iterable[SnapshotId]) -> CachePurge:
    """Remove the load-cache copies (``purge_snapshots``) of ``snapshots``, whose policy a change just made stricter,
    once that change is committed: a copy filled while the weights were public is readable by whoever could read
    that folder then. Every route that tightens a policy calls this: ``access set`` (``change_policy``), a policy a
    pulled snapshot's offer brings (``receive_policy``, purged by archive/remote/commit.py after its commit), and a
    mirror's policy sync (``apply_policies``)."""
    return purge_snapshots(archive.settings, snapshots)


def purge_after_policy(
    archive: Archive, tightened: Iterable[SnapshotId], still_withheld: Iterable[SnapshotId]
) -> CachePurge:
    """After a policy change commits (the policy holds whatever the cache says): the load-cache copies of what it
    made stricter go (``purge_tightened``); of what it left as withheld as it was, the copies still open to other
    users go too, not a private one a load filled since. Why the second: the same change made again after a run
    killed between its commit and its purge changes no level, and must finish that purge (``access set``, a
    mirror's policy sync, a pull that brings a policy)."""
    tightened = list(tightened)
    purged = purge_tightened(archive, tightened)
    done = set(tightened)
    still = with_entries(archive.settings, (d for d in still_withheld if d not in done))
    if not still:
        return purged
    also = purge_snapshots(archive.settings, still, open_only=True)
    return CachePurge(purged.removed + also.removed, purged.bytes_freed + also.bytes_freed, purged.left + also.left)


# ------------------------------------------------------------------------------------------------ mirrors
# A served mirror's policies are brought to its primary's by `mirror sync` (archive/remote/mirror.py), through
# ``PUT /v1/access/{ns}/{name}`` (``apply_policies``). What is compared is a policy's *state*: what it withholds now
# and until when, not which row says so (a lapsed embargo is public, a received override that lapsed is none).
# level, until (ISO date), files (sorted), reason
PolicyState = tuple[str, str | None, tuple[str, ...], str | None]


def policy_state(doc: dict[str, Any] | None, *, override: bool = False) -> PolicyState | None:
    """The state of a policy as ``EffectivePolicy.to_json`` (and ``GET /v1/access/...``) gives it: for a model,
    ``("public", None, (), None)`` when nothing is withheld by any date to come; for a snapshot (``override``), None
    when the snapshot follows its model (no override, ``inherit``, or a received override that lapsed to it)."""
    if doc is None or (override and doc.get("source") != "snapshot"):
        return None
    if doc.get("lapsed") or doc.get("declared", doc.get("level")) == "public":
        reason = doc.get("reason") if doc.get("source") != "default" else None
        return ("public", None, (), reason)
    files = tuple(sorted(str(f) for f in doc.get("files") or ()))
    return (str(doc.get("declared") or doc.get("level")), doc.get("until"), files, doc.get("reason"))


@dataclass(frozen=True)
class PolicyWanted:
    """One policy ``apply_policies`` is asked to hold: the model's (``snapshot`` None) or one snapshot's override
    (``level`` ``inherit`` ends it)."""

    snapshot: str | None
    level: str
    reason: str
    until: dt.date | None = None
    files: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"level": self.level, "reason": self.reason}
        if self.snapshot is not None:
            doc["snapshot"] = self.snapshot
        if self.until is not None:
            doc["until"] = self.until.isoformat()
        if self.files:
            doc["files"] = list(self.files)
        return doc


@dataclass(frozen=True)
class PolicyChanged:
    """A policy ``apply_policies`` changed: the target (``model`` or ``model@snapshot``), and what held before and
    holds now (``EffectivePolicy.to_json`` each)."""

    target: str
    before: dict[str, Any]
    after: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "before": self.before, "after": self.after}


MAX_POLICIES_AT_ONCE = 1000  # snapshot overrides one request may set: a model with more is synced in parts


def _looser_at(before: EffectivePolicy, after: EffectivePolicy) -> bool:
    if _RANK.get(after.level, 2) < _RANK.get(before.level, 2):
        return True
    # a file the old policy withheld by name that the new one does not name is handed out (public metadata is
    # withheld only by name), whatever the new level
    return before.level != "public" and not set(before.files) <= set(after.files)


def _looser(
    model: str,
    snapshot: SnapshotId | None,
    rows_before: tuple[PolicyRecord | None, PolicyRecord | None],
    rows_after: tuple[PolicyRecord | None, PolicyRecord | None],
    now: dt.datetime,
) -> str | None:
    """When the policy ``rows_after`` (the model's row, the snapshot's override) make hold would withhold less than
    ``rows_before`` at some moment from ``now`` on (now, and each embargo date either names: levels change only at
    those), that moment's ISO text; None when it never does."""
    dates = {r.until for r in (*rows_before, *rows_after) if r is not None and r.until is not None}
    lapses = sorted(dt.datetime.combine(d, dt.time()) for d in dates)
    moments = [now, *(moment for moment in lapses if moment > now)]
    for moment in moments:
        before = resolve_policy(model, snapshot, *rows_before, moment)
        after = resolve_policy(model, snapshot, *rows_after, moment)
        if _looser_at(before, after):
            return "now" if moment is now else f"from {moment.date().isoformat()}"
    return None


def apply_policies(
    archive: Archive,
    model: str,
    wanted: Sequence[PolicyWanted],
    principal: Principal,
    *,
    actor: str,
    now: dt.datetime | None = None,
    on_cache_left: Callable[[Path, str], None] | None = None,
) -> list[PolicyChanged]:
    """Make ``model``'s policies those ``wanted`` names (``PUT /v1/access/{ns}/{name}``: a served mirror kept in
    step by its primary's `mirror sync`); each one whose state (``policy_state``) already holds is left as it is.
    The changes are made in one transaction: all of them, or none (``PolicyLooseningError``, ``NotFoundError``,
    ``UsageError`` name the first that is refused).

    Who may: an admin token anything; a push token that may push to the model's namespace only what withholds
    no less than what holds now, at any moment to come (a higher level, the same files named and more, no earlier
    embargo date), since tightening is what keeps a withdrawn licence or a takedown from being lost on a mirror,
    and making weights public is the owner's decision, which a push token does not carry. An override this sets
    lapses to the model's policy (as a received one does), never to public: a snapshot's embargo set by a pusher
    never hands out what its model withholds."""
    if principal.scope != "admin" and not principal.may_push_to(parse_model_name(model)[0]):
        namespace = parse_model_name(model)[0]
        why = principal.push_refusal(model, namespace) or f"may not set policies in {namespace}"
        raise NamespaceRefusedError(why)
    if len(wanted) > MAX_POLICIES_AT_ONCE + 1:
        raise UsageError(f"at most {MAX_POLICIES_AT_ONCE} snapshot policies at once, not {len(wanted)}")
    at_now = _naive_utc(now)
    checked = [_checked_wanted(w, now) for w in wanted]
    if sum(1 for w in checked if w.snapshot is None) > 1:
        raise UsageError("the model's own policy is named more than once")
    records: list[Callable[[], object]] = []
    changed: list[PolicyChanged] = []
    with archive.catalog.session() as s:
        found = q.require_model(s, *parse_model_name(model))
        # judged against what holds once any change in flight is committed (an `access set` meanwhile): the rows
        # read below are read after this lock, and the ones written here are the newest when it is released
        access_rows.lock_policies(s, found.row_id)
        snaps = {w.snapshot: _snapshot_row(s, model, w.snapshot) for w in checked if w.snapshot is not None}
        # by the snapshot each names: a full id and a prefix of it are one snapshot named twice
        if len({snap.row_id for snap in snaps.values()}) < sum(1 for w in checked if w.snapshot is not None):
            raise UsageError("a snapshot's policy is named more than once")
        rows = access_rows.current_policies(s, [found.row_id], [snap.row_id for snap in snaps.values()])
        model_before = next((p for p in rows if p.snapshot_row_id is None), None)
        overrides = {p.snapshot_row_id: p for p in rows if p.snapshot_row_id is not None}
        mine = next((w for w in checked if w.snapshot is None), None)
        model_after = model_before
        if mine is not None:
            proposed = _proposed(found.row_id, model, None, mine, actor, at_now)
            before = resolve_policy(model, None, model_before, None, now)
            if _same_state(before, resolve_policy(model, None, proposed, None, now), override=False):
                mine = None
            else:
                model_after = proposed
        plan: list[tuple[PolicyWanted, SnapshotRecord | None, EffectivePolicy, PolicyRecord | None]] = []
        if mine is not None:
            plan.append((mine, None, before, model_after))
        # a model's change reaches every snapshot that follows it: judged once, for the model, below
        if principal.scope != "admin" and mine is not None:
            if (when := _looser(model, None, (model_before, None), (model_after, None), at_now)) is not None:
                raise PolicyLooseningError(_loosening(model, mine, when))
        for w in checked:
            if w.snapshot is None:
                continue
            snap = snaps[w.snapshot]
            before_row = overrides.get(snap.row_id)
            after_row = _proposed(found.row_id, model, snap, w, actor, at_now)
            before = resolve_policy(model, snap.digest, model_before, before_row, now)
            after = resolve_policy(model, snap.digest, model_after, after_row, now)
            # the same state under the model as it will be: a snapshot whose override is already what is asked
            kept = resolve_policy(model, snap.digest, model_after, before_row, now)
            if _same_state(kept, after, override=True):
                continue
            if principal.scope != "admin":
                pair = ((model_before, before_row), (model_after, after_row))
                if (when := _looser(model, snap.digest, *pair, at_now)) is not None:
                    raise PolicyLooseningError(_loosening(f"{model}@{snap.digest}", w, when))
            plan.append((w, snap, before, after_row))
        # every snapshot a change reaches (a model's change, each that follows the model), judged as `access set`
        # (also without a change: the same sync run again after one killed before its purge must finish it)
        covered = q.list_snapshots(s, found)
        levels_before = _levels(s, model, found.row_id, covered, now)
        for w, snap, _before, _row in plan:
            received = snap is not None and w.level != INHERIT
            level, until, why, files = w.level, w.until, w.reason, w.files
            _record_policy(
                archive, s, model, snap, level, until, why, actor, files, records, received=received
            )
        s.flush()
        for _w, snap, before, _row in plan:
            after = effective_policy(s, model, snap, now=now)
            target = model if snap is None else f"{model}@{snap.digest}"
            changed.append(PolicyChanged(target, before.to_json(), after.to_json()))
        levels_after = _levels(s, model, found.row_id, covered, now)
        for write in records:
            write()
    # after the commit, as change_policy; an entry left is for this archive's owner to hear of (the server's log),
    # not for the token that asked
    tightened = _tightened(covered, levels_before, levels_after)
    purged = purge_after_policy(archive, tightened, _still_withheld(covered, levels_before, levels_after))
    if on_cache_left is not None:
        for path, why in purged.left:
            on_cache_left(path, why)
    return changed


def _proposed(
    model_id: int, model: str, snap: SnapshotRecord | None, w: PolicyWanted, actor: str, at: dt.datetime
) -> PolicyRecord:
    return PolicyRecord(
        0, model_id, model, snap.row_id if snap else None, snap.digest if snap else None, w.level, w.until,
        w.reason, actor, at, w.files, received=snap is not None,
    )  # fmt: skip


def _same_state(before: EffectivePolicy, after: EffectivePolicy, *, override: bool) -> bool:
    state = policy_state(before.to_json(), override=override)
    return state == policy_state(after.to_json(), override=override)


def _loosening(target: str, w: PolicyWanted, when: str) -> str:
    until = f" until {w.until.isoformat()}" if w.until else ""
    return (
        f"setting {target} to {w.level}{until} would withhold less than its policy here does ({when}): only an "
        "admin token may loosen a policy; a push token may only tighten one"
    )


def _checked_wanted(w: PolicyWanted, now: dt.datetime | None) -> PolicyWanted:
    """``access set``'s rules, for one policy of ``apply_policies``."""
    allowed = LEVELS + ((INHERIT,) if w.snapshot is not None else ())
    if w.level not in allowed:
        raise UsageError(f"unknown access level {w.level!r}: one of {', '.join(allowed)}")
    reason = _reason(w.reason, "a policy's reason")
    day = parse_until(w.until, now)
    if day is not None and w.level in ("public", INHERIT):
        raise UsageError(f"an embargo date lapses a policy to public; it makes no sense with {w.level}")
    files = parse_files(w.files)
    if files and w.level in ("public", INHERIT):
        raise UsageError(f"withheld files are for a gated or restricted policy; not with {w.level}")
    return PolicyWanted(w.snapshot, w.level, reason, day, files)


def subject_of(s: CatalogSession, who: str, *, check: bool = True) -> str:
    """A grant's subject from ``TOKEN_OR_NAME``: ``token:<id>`` names one token, anything else a token name.

    With ``check``, the token must exist and be live (by id), or some live token must bear the name.
    """
    who = (who or "").strip()
    if not who:
        raise UsageError("name a token: token:<id> or a token name (see `modelarc token ls`)")
    m = _TOKEN_SUBJECT.fullmatch(who)
    if m is not None:
        if check:
            token = token_rows.find_token(s, int(m[1]))
            if token is None or token.revoked:
                state = "is revoked" if token else "does not exist"
                raise NotFoundError(f"token {m[1]} {state} (see `modelarc token ls`)")
        return f"token:{int(m[1])}"
    if who.startswith("token:"):
        raise UsageError(f"{who!r}: a token id is token:<digits>")
    if check and not token_rows.live_tokens_named(s, who):
        raise NotFoundError(f"no live token is named {who!r} (see `modelarc token ls`; or name token:<id>)")
    return who


def _gate_state(
    s: CatalogSession, model: str, model_row_id: int, now: dt.datetime | None = None
) -> tuple[EffectivePolicy, bool]:
    """The model's own policy, and whether a grant of the model opens anything now: whether that policy, or a
    snapshot's override, is gated (``may_read_weights`` reads grants for ``gated`` only)."""
    rows = access_rows.current_policies(s, [model_row_id])
    model_row = next((p for p in rows if p.snapshot_row_id is None), None)
    policy = resolve_policy(model, None, model_row, None, now)
    # a withdrawn snapshot's override opens nothing: its weights are gone
    withdrawn = q.withdrawn_among(s, [p.snapshot_row_id for p in rows if p.snapshot_row_id is not None])
    gated = policy.level == "gated" or any(
        resolve_policy(model, p.snapshot, model_row, p, now).level == "gated"
        for p in rows
        if p.snapshot_row_id is not None and p.snapshot_row_id not in withdrawn
    )
    return policy, gated


def _level_meaning(level: str) -> str:
    return {
        "public": "anyone may read its weights",
        "restricted": "only admin tokens read its weights",
    }.get(level, f"{level} is not a level grants open")


def grant_note(source: Archive | CatalogSession, model: str, *, now: dt.datetime | None = None) -> str | None:
    """None when a grant of ``model`` lets its holder read weights now; otherwise the plain statement that a grant
    (kept: it may be wanted ahead of a change to gated) has no effect while the model's level holds. A grant says
    "granted" only when it gives something: a restricted model's grant reported as granted, with the token still
    refused, is what this is for."""
    with _session(source) as s:
        found = q.require_model(s, *parse_model_name(model))
        policy, gated = _gate_state(s, model, found.row_id, now)
    if gated:
        return None
    return (
        f"recorded; has no effect while {model} is {policy.level} ({_level_meaning(policy.level)}): "
        "it counts once the model, or one of its snapshots, is gated"
    )


def apply_grant(
    s: CatalogSession,
    model: str,
    subject: str,
    reason: str,
    *,
    actor: str,
    at: dt.datetime,
    request: int | None = None,
) -> GrantRecord:
    found = q.require_model(s, *parse_model_name(model))
    made = access_rows.add_grant(s, found.row_id, subject, reason, actor, at)
    details: dict[str, Any] = {"subject": subject, "reason": reason, "grant": made.id}
    if request is not None:
        details["request"] = request
    q.audit(s, actor, "access.grant", model, at=at, **details)
    return made


def apply_revoke(
    s: CatalogSession, model: str, subject: str, reason: str, *, actor: str, at: dt.datetime
) -> list[GrantRecord]:
    found = q.require_model(s, *parse_model_name(model))
    revoked = access_rows.revoke_grants(s, found.row_id, subject, reason, actor, at)
    if revoked:
        q.audit(
            s,
            actor,
            "access.revoke",
            model,
            at=at,
            subject=subject,
            reason=reason,
            grants=[g.id for g in revoked],
        )
    return revoked


def _write_grant_record(
    archive: Archive,
    s: CatalogSession,
    action: str,
    model: str,
    subject: str,
    reason: str,
    at: dt.datetime,
    request: int | None,
) -> None:
    write_record(
        archive.store.backend,
        s,
        "grant",
        at=at,
        actor=archive.settings.actor,
        model=model,
        subject=subject,
        action=action,
        reason=reason,
        request=request,
    )


def grant(archive: Archive, model: str, who: str, *, reason: str) -> GrantChange:
    """Grant ``who`` (``token:<id>`` or a token name) the weights of the gated ``model``. A grant of a model that
    is not gated is recorded all the same (it may be wanted ahead of a change to gated); its ``note`` says it has no
    effect until then. Run again after a kill before its commit, it completes the grant the earlier run's record
    states (archive/left_records.py): a second record would be refused by a rebuild (a subject holds one live grant
    of a model), which would then exit 5."""
    return _grant_change(archive, "grant", model, who, _reason(reason, "modelarc access grant"))


def revoke(archive: Archive, model: str, who: str, *, reason: str) -> GrantChange:
    """Revoke every live grant of exactly ``who`` on ``model`` (a name's grant, or one token's). Run again after a
    kill before its commit, it completes the revocation the earlier run's record states, as ``grant`` does."""
    return _grant_change(archive, "revoke", model, who, _reason(reason, "modelarc access revoke"))


def _grant_change(archive: Archive, action: str, model: str, who: str, reason: str) -> GrantChange:
    """``access grant`` or ``access revoke`` (``action``): checked, noted as started, then made with its record."""
    actor = archive.settings.actor
    checked = _grantable if action == "grant" else _revocable
    with archive.catalog.session() as s:
        found, subject = checked(s, model, who)  # refused before any note is written
    attempt = start_attempt(archive, attempt_key(action, model, subject), fallback=_since_model(found))
    with archive.catalog.session() as s:
        q.lock_model(s, found.row_id)  # archive/left_records.py
        found, subject = checked(s, model, who)
        left = _left_grant_records(archive, s, attempt, found.row_id, action, model, subject, reason)
        at = left.time()
        if action == "grant":
            changed = [apply_grant(s, model, subject, reason, actor=actor, at=at)]
        else:
            changed = apply_revoke(s, model, subject, reason, actor=actor, at=at)
            if not changed:  # revoked by another process since the check: nothing to record
                raise NotFoundError(f"{subject} holds no live grant on {model} (see `modelarc access ls {model}`)")
        s.flush()
        write_unless_left(
            archive, s, left, lambda: _write_grant_record(archive, s, action, model, subject, reason, at, None)
        )
        finish_attempt(s, attempt)
        note = grant_note(s, model) if action == "grant" else None
    return GrantChange(model, subject, action, reason, tuple(changed), note, left.completed, left.others)


def _grantable(s: CatalogSession, model: str, who: str) -> tuple[q.ModelRecord, str]:
    """The model and the subject ``access grant`` names, refused where the subject holds a live grant already."""
    found = q.require_model(s, *parse_model_name(model))
    subject = subject_of(s, who)
    if access_rows.grants(s, [found.row_id], subjects=[subject]):
        raise UsageError(f"{subject} already holds a live grant on {model} (see `modelarc access ls {model}`)")
    return found, subject


def _since_model(found: q.ModelRecord) -> dt.datetime:
    """Where to look for left records when a run's note was garbled by hand: from the model's first snapshot."""
    return found.created_at or dt.datetime(1970, 1, 1)


def _left_grant_records(
    archive: Archive,
    s: CatalogSession,
    attempt: Attempt,
    model_id: int,
    action: str,
    model: str,
    subject: str,
    reason: str,
) -> LeftRecords:
    """The ``action`` (grant or revoke) records of ``model`` and ``subject`` an earlier run stopped before its
    commit may have left (archive/left_records.py), and the one stating exactly this change (its reason and actor,
    made by ``access grant`` or ``access revoke``, not by deciding a request). One whose time the catalog holds for
    this subject's grants was committed (by a request's decision, which notes no start) and is no left record."""
    held_at: set[dt.datetime] = set()
    for g in access_rows.grants(s, [model_id], subjects=[subject], live_only=False):
        held_at |= {g.granted_at} | ({g.revoked_at} if g.revoked_at else set())
    actor = archive.settings.actor
    return find_left(
        archive,
        attempt,
        "grant",
        lambda b: b.get("model") == model and b.get("subject") == subject and b.get("action") == action,
        lambda r: r.body.get("reason") == reason and r.actor == actor and r.body.get("request") is None,
        held=lambda r: r.at in held_at,
        changed_after=lambda at: any(t > at for t in held_at),
    )


def _revocable(s: CatalogSession, model: str, who: str) -> tuple[q.ModelRecord, str]:
    """The model and the subject ``access revoke`` names, refused where the subject holds no live grant."""
    found = q.require_model(s, *parse_model_name(model))
    subject = subject_of(s, who, check=False)  # a revoked token's grant can still be revoked
    if not access_rows.grants(s, [found.row_id], subjects=[subject]):
        raise NotFoundError(f"{subject} holds no live grant on {model} (see `modelarc access ls {model}`)")
    return found, subject


def list_policies(
    archive: Archive, model: str | None = None, *, now: dt.datetime | None = None, history: bool = False
) -> list[ModelAccess]:
    """The policy, overrides and live grants (every grant with ``history``) of ``model``, or of every model that
    has a policy or a grant."""
    with archive.catalog.session() as s:
        if model is not None:
            found = q.require_model(s, *parse_model_name(model))
            ids: list[int] | None = [found.row_id]
        else:
            ids = None
        rows = access_rows.current_policies(s, ids)
        all_grants = access_rows.grants(s, ids, live_only=not history)
    names = {p.model for p in rows} | {g.model for g in all_grants} | ({model} if model else set())
    out = []
    for name in sorted(names):
        model_row = next((p for p in rows if p.model == name and p.snapshot_row_id is None), None)
        overrides = tuple(
            resolve_policy(name, p.snapshot, model_row, p, now)
            for p in rows
            if p.model == name and p.snapshot_row_id is not None and p.level != INHERIT
        )
        policy = resolve_policy(name, None, model_row, None, now)
        out.append(ModelAccess(name, policy, overrides, tuple(g for g in all_grants if g.model == name)))
    return out


# ------------------------------------------------------------------------------------------------ requests
def request_access(
    archive: Archive, model: str, principal: Principal | None, justification: str
) -> RequestRecord:
    """A token asks for a model's weights; an admin decides (``decide_request``). A request while one of the same
    token for the same model is pending returns that one.

    Only a gated model (or one with a gated snapshot) takes requests: a grant is all a request can lead to, and
    grants open gated weights only. A public model's weights need none; a restricted model's are for admin tokens,
    whatever is granted. ``AccessNotRequestableError`` (409) names the level instead of a request that would be
    "granted" and still refused."""
    if principal is None:
        raise UsageError("an access request needs a token (Authorization: Bearer ...)")
    text = (justification or "").strip()
    if not text:
        raise UsageError("an access request needs a justification")
    if len(text) > MAX_TEXT:
        raise UsageError(f"the justification is {len(text)} characters long; at most {MAX_TEXT}")
    with archive.catalog.session() as s:
        found = q.require_model(s, *parse_model_name(model))
        policy, gated = _gate_state(s, model, found.row_id)
        if not gated:
            raise AccessNotRequestableError(
                f"{model} is {policy.level} ({_level_meaning(policy.level)}): access requests are for gated "
                "models, so there is nothing to request"
            )
        pending = access_rows.list_requests(s, status="pending", token_id=principal.id, model_id=found.row_id)
        if pending:
            return pending[0]
        at = catalog_time()
        made = access_rows.add_request(s, found.row_id, principal.id, principal.name, text, at)
        q.audit(
            s, f"token:{principal.id}:{principal.name}", "access.request", model, at=at, request=made.id,
            justification=text,
        )  # fmt: skip
        return made


def list_requests(
    archive: Archive, *, all_requests: bool = False, principal: Principal | None = None
) -> list[RequestRecord]:
    """Pending requests (every one with ``all_requests``), of one token only when ``principal`` is given (what a
    requester sees of its own requests and their decisions)."""
    with archive.catalog.session() as s:
        return access_rows.list_requests(
            s,
            status=None if all_requests or principal is not None else "pending",
            token_id=principal.id if principal is not None else None,
        )


def decide_request(archive: Archive, request_id: int, decision: str, *, reason: str) -> RequestRecord:
    """Grant or deny a pending request; granting grants the requesting token (``token:<id>``), not its name.

    A request is made while its model is gated; if the model stopped being gated since, granting it still records
    the grant, and ``grant_note`` says that it has no effect (the CLI prints it)."""
    if decision not in ("grant", "deny"):
        raise UsageError(f"decide grant or deny, not {decision!r}")
    reason = _reason(reason, "modelarc access decide")
    actor = archive.settings.actor
    with archive.catalog.session() as s:
        req = access_rows.get_request(s, request_id)
        if req.status != "pending":
            raise UsageError(f"access request {request_id} was already {req.status} by {req.decided_by}")
        at = catalog_time()
        grant_id = None
        subject = f"token:{req.token_id}"
        live: list[GrantRecord] = []
        if decision == "grant":
            found = q.require_model(s, *parse_model_name(req.model))
            live = access_rows.grants(s, [found.row_id], subjects=[subject])
            if live:
                grant_id = live[0].id
            else:
                grant_id = apply_grant(
                    s, req.model, subject, reason, actor=actor, at=at, request=request_id
                ).id
        status = "granted" if decision == "grant" else "denied"
        decided = access_rows.decide_request(s, request_id, status, reason, actor, at, grant_id)
        q.audit(
            s, actor, "access.decide", req.model, at=at, request=request_id, decision=status, reason=reason
        )
        if decision == "grant" and not live:
            s.flush()
            _write_grant_record(archive, s, "grant", req.model, subject, reason, at, request_id)
        return decided


# ------------------------------------------------------------------------------------------------ transfers
_RANK = {"public": 0, "gated": 1, "restricted": 2}


def offered_policy(archive: Archive, snapshot: SnapshotRecord) -> dict[str, Any] | None:
    """What a snapshot offer says of the snapshot's policy (docs/FORMAT.md "Transfer"): the declared level, its
    embargo date and reason, or None when nothing is withheld by declaration (public, or never set)."""
    policy = effective_policy(archive, snapshot.model, snapshot)
    if policy.declared not in ("gated", "restricted"):
        return None
    offered: dict[str, Any] = {
        "level": policy.declared,
        "until": policy.until.isoformat() if policy.until else None,
        "reason": policy.reason,
    }
    if policy.files:
        offered["files"] = list(policy.files)
    return offered


def receive_policy(
    archive: Archive,
    s: CatalogSession,
    snap: SnapshotRecord,
    offered: dict[str, Any],
    *,
    actor: str,
    deferred: list[Callable[[], object]] | None = None,
    tightened: list[SnapshotId] | None = None,
) -> EffectivePolicy | None:
    """Record the policy a received snapshot's offer carries, as that snapshot's override, only where it is stricter
    than what holds here now: whoever sends a snapshot may withhold it here, never hand out what this archive
    withholds. A lapsed embargo changes nothing, and an embargo that lapses later lapses to the model's policy, not
    to public (``resolve_policy``): the sender's date never makes public what this archive gates. Returns the new
    policy, or None if nothing changed.

    Runs in the commit's transaction ``s``, after the snapshot's rows: the snapshot is recorded with its policy or
    not at all (its catalog record goes to ``deferred``, as ``_record_policy`` says). ``offered`` was validated as
    the offer was parsed (``SnapshotOffer.from_json``). A snapshot whose level this makes stricter is appended to
    ``tightened``: its load-cache copies are the caller's to remove once the transaction commits
    (``purge_tightened``), as ``access set`` removes them."""
    model = snap.model
    level, until_text = offered["level"], offered.get("until")
    files = parse_files(offered.get("files") or (), "snapshot offer: access.files")
    until = dt.date.fromisoformat(until_text) if until_text else None
    if until is not None and catalog_time() >= dt.datetime.combine(until, dt.time()):
        return None
    current = effective_policy(s, model, snap)
    if _RANK[level] < _RANK.get(current.level, 2) or (
        _RANK[level] == _RANK.get(current.level, 2) and set(files) <= set(current.files)
    ):
        return None  # not stricter: the same or a looser level, naming no file this one does not withhold
    files = tuple(dict.fromkeys(current.files + files))  # what it withholds here now, and more
    reason = f"received with the snapshot from {actor}: {offered.get('reason') or 'no reason given'}"[:MAX_TEXT]
    _record_policy(archive, s, model, snap, level, until, reason, actor, files, deferred, received=True)
    after = effective_policy(s, model, snap)
    if tightened is not None and _tightened([snap], {snap.row_id: current.level}, {snap.row_id: after.level}):
        tightened.append(snap.digest)
    return after
