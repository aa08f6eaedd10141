"""``modelarc upgrade``: catalog records for an archive made before they existed, written from its catalog.

For each fact of the catalog that no record in the store states yet, it writes the record the live command would
have written, named with the time of the fact (a snapshot's creation, a tag move, ...), so that the records of an
archive upgraded late sort among those its newer commands already wrote, and a rebuild replays them in the order
they happened: keys, then snapshots in creation order, their tag moves, attachments, withdrawals and runs.

Running it again writes nothing: a fact is covered when a record states it with the same time (the catalog rows
of a live change carry exactly its record's time), and, for a snapshot, when the first of its records in replay
order (the one a rebuild creates it from: later ones only add signatures and objects) says what the catalog says
of everything a rebuild takes on a record's word (provenance, parents, pusher, bytes added). Anyone who can write
the store can write records (docs/SECURITY.md), so a record that only names the same snapshot covers nothing: the
catalog's record is written, named a microsecond before that first record so that it replays first and wins, and
every record that gives provenance or parents the catalog contradicts is reported (``contradicted``) to be moved
out of ``records/``. A run is covered by a record of its object, snapshot and signature as the catalog holds them.
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

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def upgrade(archive: Archive) -> UpgradeReport:
    with archive.catalog.session() as s:  # first the catalog, then the records (module docstring)
        keys = key_rows.all_keys(s)
        snapshots = history.snapshot_facts(s)
        moves = history.tag_move_facts(s)
        attachments = history.attachment_facts(s)
        runs = history.run_facts(s)
        audit = history.audit_entries(
            s, ("push", "transfer.commit", "tombstone", "key.trust", "key.distrust")
        )
        policies = access_rows.policy_history(s)
        grants = access_rows.grants(s, live_only=False)
        requests = {r.grant_id: r.id for r in access_rows.list_requests(s) if r.grant_id is not None}
    existing = read_records(archive.store.backend)
    report = UpgradeReport(records_found=len(existing))
    covered = _covered(existing)
    snapshot_records = _snapshot_records(existing)
    pems = {k.fingerprint: k.public_pem for k in keys}
    fallback_actor = archive.settings.actor

    def write(kind: str, at: dt.datetime, actor: str | None, **fields: Any) -> None:
        write_named(kind, at, actor, at, fields)

    def write_named(
        kind: str, at: dt.datetime, actor: str | None, written: dt.datetime, fields: dict[str, Any]
    ) -> None:
        """``write``, named with ``written`` (its place in the replay) rather than the fact's time."""
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
        report.written[kind] = report.written.get(kind, 0) + 1

    for key in keys:
        if (key.fingerprint, key.created_at) not in covered:
            first = _first(audit, "key.trust", lambda e, fp=key.fingerprint: e.target == fp)
            fields = {**key_fields(key), "trusted": True}
            write("key", key.created_at, first.actor if first else None, **fields)
    for fact in snapshots:
        snap = fact.snapshot
        arrival = _first(
            audit, ("push", "transfer.commit"), lambda e, d=snap.digest: e.details.get("snapshot") == d
        )
        truth = _snapshot_fields(fact, arrival.action if arrival else "recorded", pems)
        stated = snapshot_records.get((snap.model, snap.digest), [])
        for r in stated:
            if differ := _contradicts(r.body, truth):
                report.contradicted.append(
                    f"{r.key}: {snap.label}: its {', '.join(differ)} contradict the catalog; move it out of "
                    "records/ (the catalog's record is written to replay before it)"
                )
        # the first record of a snapshot in replay order is the one a rebuild creates it from (its provenance,
        # parents, pusher and time; later ones only add signatures and objects): it covers the snapshot only when
        # it says what the catalog says. Otherwise the catalog's record is named to sort before it.
        if not stated or stated[0].at != snap.created_at or _differs(stated[0].body, truth):
            first = stated[0].written - dt.timedelta(microseconds=1) if stated else snap.created_at
            write_named("snapshot", snap.created_at, snap.pushed_by, min(snap.created_at, first), truth)
    for move in moves:
        if ("tag", move.model, move.tag, move.snapshot, move.at) not in covered:
            write(
                "tag",
                move.at,
                move.actor,
                model=move.model,
                tag=move.tag,
                snapshot=move.snapshot,
                previous=move.previous,
            )
    for att in attachments:
        if att.object_id is None:
            report.not_recordable.append(
                f"data attachment of {att.model}@{att.snapshot} at {format_time(att.at)}: its manifest was not kept"
            )
        elif ("data", att.model, att.snapshot, att.object_id, att.at) not in covered:
            write(
                "data",
                att.at,
                att.actor,
                model=att.model,
                snapshot=att.snapshot,
                ref=f"{att.model}@{att.snapshot}",
                manifest=att.object_id,
            )
    for fact in snapshots:
        snap = fact.snapshot
        if snap.tombstoned_at is not None and ("withdraw", snap.model, snap.digest) not in covered:
            by = _last(audit, "tombstone", lambda e, d=snap.digest: e.details.get("snapshot") == d)
            write(
                "withdraw",
                snap.tombstoned_at,
                by.actor if by else None,
                model=snap.model,
                snapshot=snap.digest,
                ref=by.target if by else snap.label,
                reason=snap.tombstone_reason or "",
            )
    for run in runs:
        if run.object_id is None:
            report.not_recordable.append(
                f"run of {run.snapshot} at {format_time(run.at)}: its record was not kept"
            )
        elif ("run", run.object_id, run.snapshot, run.signature) not in covered:
            write(
                "run",
                run.at,
                run.actor,
                snapshot=run.snapshot,
                ref=run.ref,
                object=run.object_id,
                signature=run.signature,
                key=run.key_fingerprint,
            )
    for p in policies:
        if ("access", p.model, p.snapshot, p.at) not in covered:
            until = p.until.isoformat() if p.until else None
            write(
                "access", p.at, p.actor, model=p.model, snapshot=p.snapshot, level=p.level, until=until,
                reason=p.reason, **({"files": list(p.files)} if p.files else {}),
            )  # fmt: skip
    for g in grants:
        if ("grant", g.model, g.subject, "grant", g.granted_at) not in covered:
            write(
                "grant", g.granted_at, g.granted_by, model=g.model, subject=g.subject, action="grant",
                reason=g.reason, request=requests.get(g.id),
            )  # fmt: skip
        # a revocation the rebuild itself made (a token-id grant) is made again by any later rebuild
        revoked = g.revoked_at is not None and g.revoke_reason != TOKEN_GRANT_LAPSED
        if revoked and ("grant", g.model, g.subject, "revoke", g.revoked_at) not in covered:
            assert g.revoked_at is not None
            write(
                "grant", g.revoked_at, g.revoked_by, model=g.model, subject=g.subject, action="revoke",
                reason=g.revoke_reason or "",
            )  # fmt: skip
            covered.add(("grant", g.model, g.subject, "revoke", g.revoked_at))  # one record revokes them all
    # trust as it is now, where the records (old and new) would replay to another answer
    key_records = [r for r in read_records(archive.store.backend) if r.kind == "key"]
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
                write("key", now, fallback_actor, **key_fields(key))
    with archive.catalog.session() as s:
        q.audit(s, fallback_actor, "upgrade", "catalog", records_written=report.written)
    return report


def _covered(records: list[CatalogRecord]) -> set[tuple[Any, ...]]:
    """What the records already state, as keys comparable with the catalog's facts."""
    out: set[tuple[Any, ...]] = set()
    for r in records:
        b = r.body
        if r.kind == "key":
            out.add((b["fingerprint"], r.at))
        elif r.kind == "snapshot":  # whether it covers its snapshot: _snapshot_records
            if b.get("tag"):
                out.add(("tag", b["model"], b["tag"], b["snapshot"], r.at))
        elif r.kind == "tag":
            out.add(("tag", b["model"], b["tag"], b["snapshot"], r.at))
        elif r.kind == "data":
            out.add(("data", b["model"], b["snapshot"], b["manifest"], r.at))
        elif r.kind == "withdraw":
            out.add(("withdraw", b["model"], b["snapshot"]))
        elif r.kind == "run":  # what a rebuild checks it by (rebuild.py ``_run``), not its object alone
            out.add(("run", b["object"], b["snapshot"], b["signature"]))
        elif r.kind == "access":
            out.add(("access", b["model"], b.get("snapshot"), r.at))
        elif r.kind == "grant":
            out.add(("grant", b["model"], b["subject"], b["action"], r.at))
    return out


def _snapshot_records(records: list[CatalogRecord]) -> dict[tuple[str, str], list[CatalogRecord]]:
    """(model, snapshot) -> its snapshot records, in replay order (``records`` are)."""
    out: dict[tuple[str, str], list[CatalogRecord]] = {}
    for r in records:
        if r.kind == "snapshot":
            out.setdefault((r.body["model"], r.body["snapshot"]), []).append(r)
    return out


# what a rebuild takes on the word of the record that creates a snapshot (docs/FORMAT.md "Catalog records"); the
# rest it checks or derives (signatures, figures) or only adds (a tag move, more signatures)
_PROVENANCE = ("cutoff", "cutoff_precision", "license", "description", "source_url", "release_date")


def _differs(body: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """The fields of snapshot record ``body`` a rebuild would take on its word that are not the catalog's."""
    prov = _provenance(body)
    out = [f"provenance.{k}" for k in _PROVENANCE if prov.get(k) != truth["provenance"][k]]
    out += [k for k in ("pushed_by", "stored_bytes_added") if body.get(k) != truth[k]]
    return out + (["parents"] if _parents(body) != _parents(truth) else [])


def _contradicts(body: dict[str, Any], truth: dict[str, Any]) -> list[str]:
    """What ``body`` states against the catalog: provenance or parents it gives, otherwise than the catalog. A
    re-push's record may give none, another pusher and no bytes added; none of that is a contradiction."""
    prov = _provenance(body)
    out = [
        f"provenance.{k}"
        for k in _PROVENANCE
        if prov.get(k) is not None and prov[k] != truth["provenance"][k]
    ]
    return out + (["parents"] if _parents(body) and _parents(body) != _parents(truth) else [])


def _provenance(body: dict[str, Any]) -> dict[str, Any]:
    prov = body.get("provenance")
    return prov if isinstance(prov, dict) else {}


def _parents(body: dict[str, Any]) -> list[str]:
    """A record's parents, in an order that does not depend on how they were declared."""
    parents = body.get("parents")
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


def _first(entries: list[AuditEntry], actions: str | tuple[str, ...], match: Any) -> AuditEntry | None:
    wanted = (actions,) if isinstance(actions, str) else actions
    return next((e for e in entries if e.action in wanted and match(e)), None)


def _last(entries: list[AuditEntry], actions: str | tuple[str, ...], match: Any) -> AuditEntry | None:
    return _first(list(reversed(entries)), actions, match)
