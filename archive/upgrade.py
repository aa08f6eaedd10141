"""``modelarc upgrade``: catalog records for an archive made before they existed, written from its catalog.

For each fact of the catalog that no record in the store states yet, it writes the record the live command would
have written, named with the time of the fact (a snapshot's creation, a tag move, ...), so that the records of an
archive upgraded late sort among those its newer commands already wrote, and a rebuild replays them in the order
they happened: keys, then snapshots in creation order, their tag moves, attachments, withdrawals and runs.

Running it again writes nothing: a fact is covered by a record of the same fact (``_identity``: a tag move's model,
tag, snapshot and time, a withdrawal's snapshot, ...; the catalog rows of a live change carry exactly its record's
time) only when that record says what the catalog says of everything a rebuild takes on its word (``_Fact.compared``
and the actor: a withdrawal's time, reason and reference, a key's trust, a policy's level, ...) and is the one a
rebuild ends with: the first record of the fact, or the last for a key's trust and a policy, which every replay sets
again. For a snapshot, the first of its records in replay order (the one a rebuild creates it from: later ones only
add signatures and objects) must be dated at its creation and say what the catalog says of provenance, parents,
pusher (``pushed_by``, and the record's actor: a live push writes both) and bytes added; every record of it dated at
or before its creation states that creation and is compared on who pushed it (a re-push's record is dated later and
may name another pusher). Anyone
who can write the store can write records (docs/SECURITY.md), so a record that only names the same fact covers
nothing: the catalog's record is written, named a microsecond before the first such record (after the last, for a
policy) so that it prevails, and every record that says otherwise is reported (``contradicted``, one line
per record) to be moved out of ``records/``; so is a key record whose trust the key's history (its creation, then
its ``key.trust``/``key.distrust`` audit entries) does not have at the record's place in the replay (its name's
time) or at its ``at``, which a rebuild would take from there on (``_unlogged_trust``: the catalog's trust at the
next place is written there); so is a withdraw
record of a snapshot the catalog holds live, which no record can undo. A record named before what it names still replays after it (archive/record_order.py).
A record of a fact the catalog does not hold at all (a key, snapshot, tag move, attachment, withdrawal, run, policy,
grant or revocation it never had: ``_Held``) would make that fact out of nothing at a rebuild, so it is listed too
(``not_in_catalog``); so is a record of a held snapshot that carries a key the catalog lacks (a rebuild trusts a
carried key that signs the snapshot). A revocation is listed only where the catalog holds a grant live at its time:
elsewhere it revokes nothing (and a rebuild revokes a grant to ``token:<id>`` at the grant's own time). Not every such record is planted: a record is written before its transaction commits
(archive/records.py), so a command stopped between the two leaves the record of a change the catalog lacks, which a
rebuild replays (the user asked for it); so does one still running, and a record an earlier rebuild refused stays in
the store. The line says so and accuses no one; nothing is removed, and, as for contradicted records, the command
succeeds: the operator moves out what should not be replayed. The catalog is read again before such a record is
named, lest a change committed after the first read be named as lacking.
The catalog is read before the records are listed, so a change committed meanwhile is covered by the record it
wrote before its commit, never written twice.

What an old catalog cannot tell is recorded as well as it can be: how a snapshot arrived (``push`` or
``transfer.commit``) and who withdrew one come from the audit log when it says, and a key's trust as it is now
(a key distrusted now is recorded as trusted from its creation and distrusted from its last ``key.distrust`` in
the audit log, or from the time of the upgrade when the log does not say or a key record of it is newer: as the
live records of a newer archive would replay it, a snapshot signed only by it after that does not). Access policies and grants (catalog revision 0011 and later) are written as
``access`` and ``grant`` records the same way. Attachments and runs whose document was never kept in the store
cannot be replayed and are listed instead.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelarc.archive.access import TOKEN_GRANT_LAPSED
from modelarc.archive.records import (
    CatalogRecord,
    catalog_time,
    format_time,
    key_fields,
    read_records,
    write_record,
)
from modelarc.registry import access as access_rows
from modelarc.registry import history
from modelarc.registry import keys as key_rows
from modelarc.registry import queries as q

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive
    from modelarc.registry.db import CatalogSession
    from modelarc.registry.history import SnapshotFact
    from modelarc.registry.queries import AuditEntry


@dataclass
class UpgradeReport:
    records_found: int = 0  # already in the store
    written: dict[str, int] = field(default_factory=dict)  # kind -> records written now
    not_recordable: list[str] = field(default_factory=list)
    # records in the store that state something the catalog contradicts (a planted record, or a damaged history):
    # each named, to move out of records/; the catalog's own record is written so that it replays first
    contradicted: list[str] = field(default_factory=list)
    # records of a fact the catalog does not hold at all (a change whose commit never happened, one a rebuild
    # refused, or a planted one): a rebuild would replay each, so each is named, for the operator to judge
    not_in_catalog: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def upgrade(archive: Archive, *, writing: bool = True) -> UpgradeReport:
    """See the module docstring. ``writing=False`` writes nothing and logs nothing: the report then names the
    records the store holds that the catalog contradicts or lacks (``record_findings``), and ``written`` counts
    what an upgrade would write."""
    with archive.catalog.session() as s:  # first the catalog, then the records (module docstring)
        keys = key_rows.all_keys(s)
        snapshots = history.snapshot_facts(s)
        moves = history.tag_move_facts(s)
        attachments = history.attachment_facts(s)
        runs = history.run_facts(s)
        audit = history.audit_entries(
            s, ("push", "transfer.commit", "tombstone", "key.trust", "key.distrust", "access.grant")
        )
        policies = access_rows.policy_history(s)
        grants = access_rows.grants(s, live_only=False)
        requests = _decided_requests(s, audit)
    existing = read_records(archive.store.backend)
    report = UpgradeReport(records_found=len(existing))
    stating = _by_identity(existing)
    findings: dict[str, list[str]] = {}  # record key -> what it states against the catalog
    snapshot_records = _snapshot_records(existing)
    pems = {k.fingerprint: k.public_pem for k in keys}
    fallback_actor = archive.settings.actor

    def write(kind: str, at: dt.datetime, actor: str | None, **fields: Any) -> None:
        write_named(kind, at, actor, at, fields)

    def write_named(
        kind: str,
        at: dt.datetime,
        actor: str | None,
        written: dt.datetime,
        fields: dict[str, Any],
        also: Callable[[CatalogSession], None] | None = None,
    ) -> None:
        """``write``, named with ``written`` (its place in the replay) rather than the fact's time; ``also`` adds
        to the same transaction, so that the catalog notes the record and what goes with it together."""
        report.written[kind] = report.written.get(kind, 0) + 1
        if not writing:
            return
        # each record noted as it is written: one killed half-way has noted every record it wrote, which a
        # second run finds covered and does not write again
        with archive.catalog.session() as s:
            write_record(
                archive.store.backend,
                s,
                kind,
                at=at,
                actor=actor or fallback_actor,
                written=written,
                **fields,
            )
            if also is not None:
                also(s)

    def state(fact: _Fact) -> None:
        """Write ``fact``'s record unless a record already states it as the catalog does, where a rebuild takes
        it from (module docstring); report each record of the same fact that says otherwise."""
        same = stating.get(fact.identity, [])
        for r in same:
            if differ := _disagrees(r, fact):
                findings.setdefault(r.key, []).append(f"{fact.label}: its {', '.join(differ)}")
        if fact.kind == "key":
            # a key's creation: stated by any record that says it as the catalog does, else written where it
            # happened; a record of it that says another trust is met right after it by the key-record check below
            if not any(not _disagrees(r, fact) for r in same):
                write_named(fact.kind, fact.at, fact.actor, fact.at, fact.fields)
            return
        if same and not _disagrees(same[-1] if fact.last_wins else same[0], fact):
            return
        written = fact.at
        if same and fact.last_wins:  # a policy: the later record of one fact is the one that holds
            written = max(written, same[-1].written + _TICK)
        elif same:  # a tag move, an attachment, a withdrawal, a run, a grant: the first is the one replayed
            written = min(written, same[0].written - _TICK)
        write_named(fact.kind, fact.at, fact.actor, written, fact.fields)

    for key in keys:
        first = _first(audit, "key.trust", lambda e, fp=key.fingerprint: e.target == fp)
        state(
            _Fact(
                "key", ("key", key.fingerprint, key.created_at), key.created_at, first.actor if first else None,
                {**key_fields(key), "trusted": True}, f"key {key.fingerprint}",
                compared=("public_pem", "label", "trusted"), last_wins=True,
            )
        )  # fmt: skip
    # a key record sets the key's trust from its place in the replay (its name's time, not its ``at``) on: one
    # that says another trust than the key had there would refuse (or admit) the snapshots it signs after it
    by_fingerprint = {k.fingerprint: k for k in keys}
    timelines = {k.fingerprint: _trust_timeline(k, audit) for k in keys}  # one pass over the log per key
    for r in existing:
        fingerprint = r.body.get("fingerprint") if r.kind == "key" else None
        key_row = by_fingerprint.get(fingerprint) if isinstance(fingerprint, str) else None
        if key_row is None or "trusted" not in r.body:
            continue  # a key the catalog lacks is listed as not in it; one without a trust, refused by a rebuild
        timeline = timelines[key_row.fingerprint]
        if (why := _unlogged_trust(r, key_row, timeline)) is None:
            continue
        # a record of another kind in the same microsecond replays after this one (keys go first) and before the
        # catalog's record below could: only moving this one out keeps it from that record
        crowded = sorted({o.kind for o in existing if o.kind != "key" and o.written == r.written})
        if crowded:
            why += (
                f"; a {' and '.join(crowded)} record of the same microsecond replays after it, before the "
                "catalog's record can: move it out before any rebuild"
            )
        findings.setdefault(r.key, []).append(why)
        # the catalog's trust at the next place in the replay, written there, unless a record there says it: the
        # trust at that very place, so that a genuine record of the same microsecond says the same, whichever of
        # the two replays first
        after = r.written + _TICK
        then = _trust_at(timeline, after)
        restated = any(
            o.kind == "key" and o.body.get("fingerprint") == key_row.fingerprint
            and o.body.get("public_pem") == key_row.public_pem  # one a rebuild refuses restates nothing
            and r.written < o.written <= after and "trusted" in o.body and bool(o.body["trusted"]) is then
            for o in existing
        )  # fmt: skip
        if then is not None and not restated:
            write_named("key", after, None, after, {**key_fields(key_row), "trusted": then})
    for fact in snapshots:
        snap = fact.snapshot
        arrival = _first(
            audit, ("push", "transfer.commit"), lambda e, d=snap.digest: e.details.get("snapshot") == d
        )
        truth = _snapshot_fields(fact, arrival.action if arrival else "recorded", pems)
        stated = snapshot_records.get((snap.model, snap.digest), [])
        for r in stated:
            differ = _contradicts(r.body, truth)
            # a record dated at or before the snapshot's creation states that creation (a re-push's is dated
            # later, and may name another pusher): who it names is compared, as every other kind's actor is
            if r.at <= snap.created_at:
                differ += _pusher_differs(r, snap.pushed_by)
            if differ:
                findings.setdefault(r.key, []).append(f"{snap.label}: its {', '.join(differ)}")
        # the first record of a snapshot in replay order is the one a rebuild creates it from (its provenance,
        # parents, pusher, actor and time; later ones only add signatures and objects): it covers the snapshot
        # only when it says what the catalog says. Otherwise the catalog's record is named to sort before it.
        if (
            not stated
            or stated[0].at != snap.created_at
            or _differs(stated[0].body, truth)
            or _pusher_differs(stated[0], snap.pushed_by)
        ):
            first_named = stated[0].written - _TICK if stated else snap.created_at
            write_named("snapshot", snap.created_at, snap.pushed_by, min(snap.created_at, first_named), truth)
    for move in moves:
        state(
            _Fact(
                "tag", ("tag", move.model, move.tag, move.snapshot, move.at), move.at, move.actor,
                {"model": move.model, "tag": move.tag, "snapshot": move.snapshot, "previous": move.previous},
                f"tag {move.model}:{move.tag} -> {move.snapshot} at {format_time(move.at)}",
            )
        )  # fmt: skip
    for att in attachments:
        if att.object_id is None:
            report.not_recordable.append(
                f"data attachment of {att.model}@{att.snapshot} at {format_time(att.at)}: its manifest was not kept"
            )
            continue
        state(
            _Fact(
                "data", ("data", att.model, att.snapshot, att.object_id, att.at), att.at, att.actor,
                {"model": att.model, "snapshot": att.snapshot, "ref": f"{att.model}@{att.snapshot}",
                 "manifest": att.object_id},
                f"data attachment {att.object_id} of {att.model}@{att.snapshot}", compared=(),
            )
        )  # fmt: skip
    live = {(f.snapshot.model, f.snapshot.digest) for f in snapshots if f.snapshot.tombstoned_at is None}
    for fact in snapshots:
        snap = fact.snapshot
        if snap.tombstoned_at is None:
            continue
        # by model and snapshot: two models holding the same files each have their own withdrawal of that digest
        by = _last(
            audit,
            "tombstone",
            lambda e, d=snap.digest, m=snap.model: e.details.get("snapshot") == d and _ref_model(e.target) == m,
        )
        state(
            _Fact(
                "withdraw", ("withdraw", snap.model, snap.digest), snap.tombstoned_at, by.actor if by else None,
                {"model": snap.model, "snapshot": snap.digest, "ref": by.target if by else snap.label,
                 "reason": snap.tombstone_reason or ""},
                f"withdrawal of {snap.label}",
                # the reference as the user named it is known only from the audit log
                compared=("at", "reason", "ref") if by else ("at", "reason"),
            )
        )  # fmt: skip
    for run in runs:
        if run.object_id is None:
            report.not_recordable.append(
                f"run of {run.snapshot} at {format_time(run.at)}: its record was not kept"
            )
            continue
        state(
            _Fact(
                "run", ("run", run.object_id, run.snapshot, run.signature), run.at, run.actor,
                {"snapshot": run.snapshot, "ref": run.ref, "object": run.object_id, "signature": run.signature,
                 "key": run.key_fingerprint},
                f"run {run.object_id} of {run.snapshot}", compared=("at",),
            )
        )  # fmt: skip
    for p in policies:
        until = p.until.isoformat() if p.until else None
        state(
            _Fact(
                "access", ("access", p.model, p.snapshot, p.at), p.at, p.actor,
                {"model": p.model, "snapshot": p.snapshot, "level": p.level, "until": until, "reason": p.reason,
                 **({"files": list(p.files)} if p.files else {}), **({"received": True} if p.received else {})},
                f"access policy of {p.model}{'@' + p.snapshot if p.snapshot else ''} at {format_time(p.at)}",
                compared=("level", "until", "reason", "files", "received"), last_wins=True,
            )
        )  # fmt: skip
    revocations: set[tuple[Any, ...]] = set()
    for g in grants:
        state(
            _Fact(
                "grant", ("grant", g.model, g.subject, "grant", g.granted_at), g.granted_at, g.granted_by,
                {"model": g.model, "subject": g.subject, "action": "grant", "reason": g.reason,
                 "request": requests.get(g.id)},
                f"grant of {g.model} to {g.subject} at {format_time(g.granted_at)}", compared=("reason", "request"),
            )
        )  # fmt: skip
        # a revocation the rebuild itself made (a token-id grant) is made again by any later rebuild
        revoked = g.revoked_at is not None and g.revoke_reason != TOKEN_GRANT_LAPSED
        identity = ("grant", g.model, g.subject, "revoke", g.revoked_at)
        if revoked and identity not in revocations:  # one record revokes every live grant of the subject
            assert g.revoked_at is not None
            revocations.add(identity)
            state(
                _Fact(
                    "grant", identity, g.revoked_at, g.revoked_by,
                    {"model": g.model, "subject": g.subject, "action": "revoke", "reason": g.revoke_reason or ""},
                    f"revocation of {g.model} from {g.subject} at {format_time(g.revoked_at)}", compared=("reason",),
                )
            )  # fmt: skip
    # a withdraw record of a snapshot the catalog holds live would withdraw it at a rebuild: there is no record
    # that undoes one, so it is only reported (read again, lest a withdrawal committed meanwhile be named)
    suspect = [
        r for r in existing if r.kind == "withdraw" and _named_snapshot(r) in live
    ]
    if suspect:
        with archive.catalog.session() as s:
            still_live = {(f.snapshot.model, f.snapshot.digest) for f in history.snapshot_facts(s)
                          if f.snapshot.tombstoned_at is None}  # fmt: skip
        for r in suspect:
            if _named_snapshot(r) in still_live:
                findings.setdefault(r.key, []).append(
                    f"{r.body['model']}@{r.body['snapshot']}: it withdraws a snapshot the catalog holds live "
                    "(a rebuild would withdraw it: no record undoes a withdrawal)"
                )
    # a record of a fact the catalog lacks would create it at a rebuild: named, never removed (module docstring).
    # Read again before it is named, lest a change committed since the first read be named as lacking.
    held = _held(keys, snapshots, moves, attachments, runs, policies, grants)
    if any(held.lacks(r) for r in existing):
        with archive.catalog.session() as s:
            held = _read_held(s)
        report.not_in_catalog = [
            f"{r.key}: {what}, which the catalog does not hold: a rebuild would replay it. Either a change that "
            "never committed (its command stopped, or is still running, between writing this record and its "
            "commit) or one an earlier rebuild refused, or a record someone else wrote into the store: move it "
            "out of records/ unless that change should be made"
            for r in existing
            if (what := held.lacks(r))
        ]
    # one line per record, whatever it contradicts (a push's record states its snapshot and its tag move)
    instead = (
        "the catalog's own record is written to replay in its stead"
        if writing
        else "`modelarc upgrade` writes the catalog's own record to replay in its stead"
    )
    report.contradicted = [
        f"{key}: {'; '.join(items)}: this contradicts the catalog; move it out of records/ (where a rebuild "
        f"would take it, {instead})"
        for key, items in findings.items()
    ]
    # trust as it is now, where the records (old and new) would replay to another answer
    key_records = [
        r
        for r in read_records(archive.store.backend)
        if r.kind == "key" and isinstance(r.body.get("fingerprint"), str) and "trusted" in r.body
    ]
    replayed_trust = {r.body["fingerprint"]: bool(r.body["trusted"]) for r in key_records}
    now = catalog_time()
    for key in keys:
        if replayed_trust.get(key.fingerprint) != key.trusted:
            # a key distrusted since: from when the audit log says, if no record of it is newer (so that it
            # is not trusted over a longer stretch of the replay than it was live); else, or when trusted, now
            last = _last(audit, ("key.trust", "key.distrust"), lambda e, fp=key.fingerprint: e.target == fp)
            newest = max(
                (r.written for r in key_records if r.body["fingerprint"] == key.fingerprint), default=None
            )
            if (
                not key.trusted
                and last is not None
                and last.action == "key.distrust"
                and (newest is None or last.at > newest)
            ):
                write("key", last.at, last.actor, **key_fields(key))
            else:
                # recorded now, and logged at that time in the same transaction, so that the key's history
                # (``_trust_timeline``) has the change where the record puts it, and a later upgrade does not take
                # its own record for a planted one
                action = "key.trust" if key.trusted else "key.distrust"

                def log_it(s: CatalogSession, action: str = action, fingerprint: str = key.fingerprint) -> None:
                    q.audit(s, fallback_actor, action, fingerprint, at=now, recorded_by="upgrade")

                write_named("key", now, fallback_actor, now, key_fields(key), also=log_it)
    if writing:
        with archive.catalog.session() as s:
            q.audit(s, fallback_actor, "upgrade", "catalog", records_written=report.written)
    return report


@dataclass(frozen=True)
class RecordFindings:
    """The store's catalog records that a rebuild would replay to another catalog than this one, as ``upgrade``
    names them (one line each, saying what to do): ``fsck`` reports them without writing anything."""

    contradicted: tuple[str, ...]
    not_in_catalog: tuple[str, ...]


def record_findings(archive: Archive) -> RecordFindings:
    """``upgrade``'s classification of the records in the store, read-only: the same code, so that ``fsck`` and
    ``upgrade`` never disagree on which record is NOT IN CATALOG or CONTRADICTED."""
    report = upgrade(archive, writing=False)
    return RecordFindings(tuple(report.contradicted), tuple(report.not_in_catalog))


@dataclass(frozen=True)
class _Held:
    """What the catalog holds, as the facts a record can name (``_identity``): a record of anything else would
    create it at a rebuild."""

    facts: frozenset[tuple[Any, ...]]
    snapshots: frozenset[tuple[str, str]]  # (model, digest)
    keys: frozenset[str]  # fingerprints
    tags: dict[
        tuple[str, str], list[tuple[dt.datetime, str]]
    ]  # (model, tag) -> (time, snapshot) of each move
    # (model, subject) -> (granted, revoked or None) of each grant: a revocation matters only where one was live
    grant_spans: dict[tuple[str, str], list[tuple[dt.datetime, dt.datetime | None]]]

    def lacks(self, r: CatalogRecord) -> str | None:
        """What record ``r`` states that the catalog does not hold, said for a person; None when the catalog holds
        it, or ``r`` is too garbled to say (a rebuild refuses it)."""
        b, when = r.body, format_time(r.at)
        try:
            if r.kind == "key":
                return None if b["fingerprint"] in self.keys else f"key {b['fingerprint']}"
            if r.kind == "withdraw":  # of a snapshot held live: reported as contradicting it (``upgrade``)
                held = (b["model"], b["snapshot"]) in self.snapshots
                return None if held else f"withdrawal of {b['model']}@{b['snapshot']}"
            if r.kind == "snapshot" and (b["model"], b["snapshot"]) not in self.snapshots:
                return f"snapshot {b['model']}@{b['snapshot']}"
            if r.kind == "snapshot":
                # a key the record carries is trusted by a rebuild once it signs the snapshot: a record of a held
                # snapshot (a later copy, say) that brings a key the catalog never had would add a trusted key
                for entry in b.get("keys") or []:
                    if entry["fingerprint"] not in self.keys:
                        return (
                            f"key {entry['fingerprint']} carried by a record of snapshot {b['model']}@{b['snapshot']} "
                            "(a rebuild would trust it)"
                        )
            if r.kind in ("snapshot", "tag"):  # a push's record moves its tag too
                if not b.get("tag") or self._tag_held(b["model"], b["tag"], b["snapshot"], r.at):
                    return None
                move = f"tag {b['model']}:{b['tag']} -> {b['snapshot']} at {when}"
                # the same move committed later: most likely this attempt was stopped before its commit and run
                # again. Still named: a rebuild would date the move here, where the catalog's history does not
                # have it (an --as-of between the two times would answer otherwise), and a record that only names
                # the same move covers nothing (module docstring)
                later = self._next_move(b["model"], b["tag"], r.at)
                if later is not None and later[1] == b["snapshot"]:
                    move += (
                        f" (the catalog holds the same move later, at {format_time(later[0])}: likely an attempt "
                        "stopped before its commit and run again; a rebuild would date the move at this record's "
                        "time instead)"
                    )
                return move
            identity = _identity(r)
            if identity is None or identity in self.facts:
                return None
            if r.kind == "data":
                return f"data attachment {b['manifest']} of {b['model']}@{b['snapshot']} at {when}"
            if r.kind == "run":
                return f"run {b['object']} of {b['snapshot']}"
            if r.kind == "access":
                where = f"{b['model']}@{b['snapshot']}" if b.get("snapshot") else b["model"]
                return f"access policy {b.get('level')!r} of {where} at {when}"
            if r.kind == "grant":
                if b["action"] == "grant":
                    return f"grant of {b['model']} to {b['subject']} at {when}"
                # a revocation where the catalog holds no grant live at its time revokes nothing at a rebuild; and a
                # rebuild revokes a grant to token:<id> at once, at the grant's time, so after one the genuine
                # revocation's time is in no catalog row
                spans = self.grant_spans.get((b["model"], b["subject"]), [])
                if not any(granted <= r.at and (revoked is None or revoked > r.at) for granted, revoked in spans):
                    return None
                return f"revocation of {b['model']} from {b['subject']} at {when}"
        except (KeyError, TypeError, AttributeError):  # a missing field, or a list where a name belongs
            return None
        return None

    def _next_move(self, model: str, tag: str, at: dt.datetime) -> tuple[dt.datetime, str] | None:
        """The catalog's first move of ``tag`` after ``at``: (time, snapshot)."""
        return next(((moved, to) for moved, to in self.tags.get((model, tag), []) if moved > at), None)

    def _tag_held(self, model: str, tag: str, snapshot: str, at: dt.datetime) -> bool:
        """Whether the catalog holds this move of ``tag``, or had the tag there already (a move to where it
        pointed leaves no history row, live or at a rebuild: docs/FORMAT.md "Catalog records")."""
        if ("tag", model, tag, snapshot, at) in self.facts:
            return True
        before = [to for moved, to in self.tags.get((model, tag), []) if moved < at]
        return bool(before) and before[-1] == snapshot


def _held(
    keys: list[key_rows.CatalogKey],
    snapshots: list[SnapshotFact],
    moves: list[history.TagMoveFact],
    attachments: list[history.AttachmentFact],
    runs: list[history.RunFact],
    policies: list[access_rows.PolicyRecord],
    grants: list[access_rows.GrantRecord],
) -> _Held:
    facts: set[tuple[Any, ...]] = {("tag", m.model, m.tag, m.snapshot, m.at) for m in moves}
    facts |= {("data", a.model, a.snapshot, a.object_id, a.at) for a in attachments}
    facts |= {("withdraw", f.snapshot.model, f.snapshot.digest) for f in snapshots
              if f.snapshot.tombstoned_at is not None}  # fmt: skip
    facts |= {("run", r.object_id, r.snapshot, r.signature) for r in runs}
    facts |= {("access", p.model, p.snapshot, p.at) for p in policies}
    spans: dict[tuple[str, str], list[tuple[dt.datetime, dt.datetime | None]]] = {}
    for g in grants:
        spans.setdefault((g.model, g.subject), []).append((g.granted_at, g.revoked_at))
        facts.add(("grant", g.model, g.subject, "grant", g.granted_at))
        if g.revoked_at is not None:
            facts.add(("grant", g.model, g.subject, "revoke", g.revoked_at))
    tags: dict[tuple[str, str], list[tuple[dt.datetime, str]]] = {}
    for m in sorted(moves, key=lambda m: m.at):
        tags.setdefault((m.model, m.tag), []).append((m.at, m.snapshot))
    return _Held(
        frozenset(facts),
        frozenset((f.snapshot.model, f.snapshot.digest) for f in snapshots),
        frozenset(k.fingerprint for k in keys),
        tags,
        spans,
    )


def _read_held(s: CatalogSession) -> _Held:
    return _held(
        key_rows.all_keys(s),
        history.snapshot_facts(s),
        history.tag_move_facts(s),
        history.attachment_facts(s),
        history.run_facts(s),
        access_rows.policy_history(s),
        access_rows.grants(s, live_only=False),
    )


# a microsecond: how far apart the catalog's record is named from one it must replay before or after
_TICK = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class _Fact:
    """One fact of the catalog, as the record that states it: ``identity`` says which fact a record is about
    (``_identity``); ``compared`` (and ``actor``, when the catalog knows it) what a rebuild takes on the record's
    word about it, so a record of the same fact that says otherwise does not cover it."""

    kind: str
    identity: tuple[Any, ...]
    at: dt.datetime
    actor: str | None  # None: the catalog does not know who (the record says the upgrader)
    fields: dict[str, Any]
    label: str
    compared: tuple[str, ...] = ()
    # which of several records of one fact a rebuild ends with: the last for a key's trust and a policy (each
    # replay sets it again), else the first (a second tag move to the same snapshot, withdrawal or revocation of
    # the same changes nothing; a second grant or run is one more row beside the first)
    last_wins: bool = False


def _identity(r: CatalogRecord) -> tuple[Any, ...] | None:
    """Which fact ``r`` states, comparable with ``_Fact.identity``; None for a snapshot record without a tag (whether
    it covers its snapshot: ``_snapshot_records``) and for one too garbled to say (a rebuild refuses it)."""
    b = r.body
    try:
        if r.kind == "key":
            return ("key", b["fingerprint"], r.at)
        if r.kind in ("snapshot", "tag"):  # a push's record of the tag it moved states that move too
            return ("tag", b["model"], b["tag"], b["snapshot"], r.at) if b.get("tag") else None
        if r.kind == "data":
            return ("data", b["model"], b["snapshot"], b["manifest"], r.at)
        if r.kind == "withdraw":
            return ("withdraw", b["model"], b["snapshot"])
        if r.kind == "run":  # what a rebuild checks it by (rebuild.py ``_run``), not its object alone
            return ("run", b["object"], b["snapshot"], b["signature"])
        if r.kind == "access":
            return ("access", b["model"], b.get("snapshot"), r.at)
        if r.kind == "grant":
            return ("grant", b["model"], b["subject"], b["action"], r.at)
    except (KeyError, TypeError):
        return None
    return None


def _by_identity(records: list[CatalogRecord]) -> dict[tuple[Any, ...], list[CatalogRecord]]:
    """Fact -> the records that state it, in replay order (``records`` are)."""
    out: dict[tuple[Any, ...], list[CatalogRecord]] = {}
    for r in records:
        identity = _identity(r)
        try:
            if identity is not None:
                out.setdefault(identity, []).append(r)
        except TypeError:  # a list where a name belongs: unhashable, and no fact of the catalog
            continue
    return out


def _disagrees(r: CatalogRecord, fact: _Fact) -> list[str]:
    """What record ``r`` of ``fact`` says otherwise than the catalog, of what a rebuild takes on its word."""
    out = []
    for name in fact.compared:
        if name == "at":
            same = r.at == fact.at
        elif name == "files":  # a record of a policy that withholds no files leaves them out
            same = (r.body.get("files") or []) == (fact.fields.get("files") or [])
        else:
            same = r.body.get(name) == fact.fields.get(name)
        if not same:
            out.append(name)
    return out + (["actor"] if fact.actor is not None and r.actor != fact.actor else [])


def _snapshot_records(records: list[CatalogRecord]) -> dict[tuple[str, str], list[CatalogRecord]]:
    """(model, snapshot) -> its snapshot records, in replay order (``records`` are)."""
    out: dict[tuple[str, str], list[CatalogRecord]] = {}
    for r in records:
        named = _named_snapshot(r) if r.kind == "snapshot" else None
        if named is not None:
            out.setdefault(named, []).append(r)
    return out


def _named_snapshot(r: CatalogRecord) -> tuple[str, str] | None:
    """(model, snapshot) as the record names them, or None when either is not text (a garbled or planted record,
    which a rebuild refuses: it names no snapshot the catalog could hold)."""
    model, snapshot = r.body.get("model"), r.body.get("snapshot")
    return (model, snapshot) if isinstance(model, str) and isinstance(snapshot, str) else None


# what a rebuild takes on the word of the record that creates a snapshot (docs/FORMAT.md "Catalog records"); the
# rest it checks or derives (signatures, figures) or only adds (a tag move, more signatures)
_PROVENANCE = ("cutoff", "cutoff_precision", "license", "description", "source_url", "release_date")


def _differs(body: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """The fields of snapshot record ``body`` a rebuild would take on its word that are not the catalog's."""
    prov = _provenance(body)
    out = [f"provenance.{k}" for k in _PROVENANCE if prov.get(k) != truth["provenance"][k]]
    out += [k for k in ("pushed_by", "stored_bytes_added") if body.get(k) != truth[k]]
    # the catalog's parents are the record's, and any it declared unrecorded that a later push brought
    declared = {*_parents(body), *_parents(body, "parents_unrecorded")}
    return out + ([] if set(_parents(body)) <= set(_parents(truth)) <= declared else ["parents"])


def _pusher_differs(r: CatalogRecord, pushed_by: str | None) -> list[str]:
    """Who record ``r`` of a snapshot's creation names otherwise than the catalog: its ``pushed_by`` and its
    ``actor`` (a live push or commit writes both as the pusher; the record of its audit entry and tag move), when
    the catalog knows who pushed it."""
    if pushed_by is None:
        return []
    return [
        name
        for name, said in (("pushed_by", r.body.get("pushed_by")), ("actor", r.actor))
        if said != pushed_by
    ]


def _contradicts(body: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """What ``body`` states against the catalog: provenance or parents it gives, otherwise than the catalog. A
    re-push's record may give none, another pusher and no bytes added, and only some of the parents (a re-push
    names each parent it states, which must be recorded: archive/provenance/repush.py); none of that is a
    contradiction."""
    prov = _provenance(body)
    out = [
        f"provenance.{k}"
        for k in _PROVENANCE
        if prov.get(k) is not None and prov[k] != truth["provenance"][k]
    ]
    return out + (["parents"] if set(_parents(body)) - set(_parents(truth)) else [])


def _provenance(body: dict[str, Any]) -> dict[str, Any]:
    prov = body.get("provenance")
    return prov if isinstance(prov, dict) else {}


def _parents(body: dict[str, Any], field: str = "parents") -> list[str]:
    """A record's parents (or another list of them), in an order that does not depend on how they were declared."""
    parents = body.get(field)
    return sorted(json.dumps(p, sort_keys=True) for p in parents) if isinstance(parents, list) else []


def _snapshot_fields(fact: SnapshotFact, action: str, pems: dict[str, str]) -> dict[str, Any]:
    """A ``snapshot`` record's body (archive/records.py ``snapshot_fields``) from a catalog row: no tag moves
    (the tag history is written as ``tag`` records), each signature with its own time."""
    snap = fact.snapshot
    fingerprints = sorted({sig.key_fingerprint for sig in fact.signatures})
    return {
        "model": snap.model,
        "tag": None,
        "snapshot": snap.digest,
        "manifest": snap.digest.hex,
        "action": action,
        "merge": True,
        "signatures": [
            {"object": sig.object_id, "key": sig.key_fingerprint, "at": format_time(sig.created_at)}
            for sig in fact.signatures
        ],
        "keys": [{"fingerprint": fp, "public_pem": pems[fp]} for fp in fingerprints if fp in pems],
        "parents": [link.to_json() for link in fact.parents],
        "provenance": {
            "cutoff": snap.cutoff.isoformat() if snap.cutoff else None,
            "cutoff_precision": snap.cutoff_precision,
            "license": snap.license,
            "description": snap.description,
            "source_url": snap.source_url,
            "release_date": snap.release_date.isoformat() if snap.release_date else None,
        },
        "pushed_by": snap.pushed_by,
        "logical_bytes": snap.logical_bytes,
        "stored_bytes_added": snap.stored_bytes_added,
        "file_count": snap.file_count,
        "tensor_count": snap.tensor_count,
        "parameter_count": snap.parameter_count,
        "dtypes": dict(snap.dtypes),
        "architecture": dict(snap.architecture),
    }


def _decided_requests(s: CatalogSession, audit: list[AuditEntry]) -> dict[int, int | None]:
    """Grant id -> the access request it decided (None: granted without one), as a grant record states it. From
    the request rows where the catalog holds them; else from the grant's audit entry, which is how a rebuilt
    catalog keeps it (requests are not rebuilt; archive/rebuild.py), so a genuine record is not CONTRADICTED."""
    found: dict[int, int | None] = {}
    for e in audit:
        grant, request = e.details.get("grant"), e.details.get("request")
        if e.action == "access.grant" and isinstance(grant, int) and (request is None or isinstance(request, int)):
            found[grant] = request
    found.update({r.grant_id: r.id for r in access_rows.list_requests(s) if r.grant_id is not None})
    return found


def _trust_timeline(key: key_rows.CatalogKey, audit: list[AuditEntry]) -> list[tuple[dt.datetime, bool]]:
    """The trust the catalog gives ``key`` over time: trusted at its creation, then each ``key.trust`` and
    ``key.distrust`` of it in the audit log (live commands write the entry with their record's very time), oldest
    first, in log order among entries of the same time."""
    changes = [
        (e.at, e.action == "key.trust")
        for e in audit
        if e.target == key.fingerprint and e.action in ("key.trust", "key.distrust")
    ]
    return sorted([(key.created_at, True), *changes], key=lambda change: change[0])


def _trust_at(timeline: list[tuple[dt.datetime, bool]], at: dt.datetime) -> bool | None:
    """The trust in effect at ``at`` by ``timeline`` (the last change at or before it); None before the key's
    creation."""
    then = [trusted for when, trusted in timeline if when <= at]
    return then[-1] if then else None


def _unlogged_trust(
    r: CatalogRecord, key: key_rows.CatalogKey, timeline: list[tuple[dt.datetime, bool]]
) -> str | None:
    """Why key record ``r`` sets a trust the catalog's history does not have, said for a person; None when it
    agrees. A rebuild sets the trust where the record's name puts it in the replay, and logs it at its ``at``: the
    record must say the trust in effect at both. So does the record of a live ``keys import``/``trust``/
    ``distrust`` (its ``at`` is its audit entry's very time, its name a moment later, before any other change of
    the key) and one that changes nothing at a rebuild (``keys trust`` of a trusted key, whose replay logs nothing;
    the records upgrade writes). After the last logged change, the key's trust now agrees too: a log that does not
    end where the key is says only that it changed since, not when."""
    trusted = bool(r.body["trusted"])
    placed, logged = _trust_at(timeline, r.written), _trust_at(timeline, r.at)
    last_change = timeline[-1][0]
    if placed == trusted and logged == trusted:
        return None
    if r.written > last_change and r.at > last_change and trusted == key.trusted:
        return None
    said = "trusted" if trusted else "distrusted"
    where = f"at {format_time(r.at)}, replayed at {format_time(r.written)}"
    if placed is None or logged is None:
        return (
            f"key {key.fingerprint}: it says the key is {said} {where}, before the catalog holds the key (from "
            f"{format_time(key.created_at)})"
        )
    then = placed if placed != trusted else logged
    return (
        f"key {key.fingerprint}: it says the key is {said} {where}, which the catalog's audit log does not hold "
        f"(the key is {'trusted' if then else 'distrusted'} then; a rebuild would "
        f"{'refuse' if then else 'accept'} the snapshots it signs after that)"
    )


def _first(entries: list[AuditEntry], actions: str | tuple[str, ...], match: Any) -> AuditEntry | None:
    wanted = (actions,) if isinstance(actions, str) else actions
    return next((e for e in entries if e.action in wanted and match(e)), None)


def _ref_model(target: str) -> str:
    """The model of a reference as a user named it in a command (``ns/name``, ``ns/name:tag``, ``ns/name@sha256:..``)."""
    return re.split(r"[:@]", target, maxsplit=1)[0]


def _last(entries: list[AuditEntry], actions: str | tuple[str, ...], match: Any) -> AuditEntry | None:
    return _first(list(reversed(entries)), actions, match)
