"""Receiving a snapshot from another archive: objects arrive by id, then a commit that is refused unless it is whole.

Both directions use this module: a server commits what a client pushed to it, and a client commits what it pulled
from a remote. The wire document, a ``SnapshotOffer`` (format 1, docs/FORMAT.md "Transfer"), carries only what the
objects cannot: the ref, which objects are signature bundles, provenance and lineage. Everything integrity-relevant
is re-derived from the objects themselves: the manifest must hash to the snapshot id, every object it names must be
present, and a bundle must verify against a key *this* archive trusts and sign exactly the manifest's files.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelarc.archive.formats.describe import architecture_problem
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.provenance.dates import iso_day, refuse_impossible_dates
from modelarc.archive.provenance.text import refuse_unstorable_text
from modelarc.archive.repository import Archive, refuse_if_withdrawn
from modelarc.errors import InvalidRefError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.bounds import catalog_value_problem
from modelarc.registry.records import RELATIONS, Provenance
from modelarc.registry.refs import Ref, SnapshotId, parse_ref
from modelarc.registry.snapshots import parents_of
from modelarc.storage import ObjectId

if TYPE_CHECKING:  # provenance imports jsonschema (about a second): only where a data manifest is read
    pass

TRANSFER_FORMAT = 1
MAX_OFFER_BYTES = 1 << 20  # an offer is a few KiB; the server reads no more than this before parsing
MAX_OFFER_ITEMS = 64  # signatures, parents, data manifests
MAX_OFFER_TEXT = 64 << 10  # each provenance string; the architecture object as JSON
MAX_CONFIG_BYTES = 4 << 20  # config.json is read back from the store to describe the architecture
_PROVENANCE_FIELDS = Provenance.JSON_FIELDS


@dataclass(frozen=True)
class SnapshotOffer:
    """What one archive tells another about a snapshot, besides its objects."""

    ref: str  # ns/name:tag to move on the receiving side
    snapshot: SnapshotId  # the manifest's object id, prefixed
    signatures: tuple[str, ...]  # object ids of signature bundles
    provenance: dict[str, Any]  # the _PROVENANCE_FIELDS, dates as ISO strings
    parents: tuple[tuple[str, str], ...]  # (ns/name@sha256:<hex>, relation)
    architecture: dict[str, Any]  # used only when the snapshot has no config.json to derive it from
    data: tuple[str, ...] = ()  # object ids of attached training-data manifests (docs/PROVENANCE.md)
    # False: record the snapshot under the ref's model and move no tag (a mirror carries untagged history too);
    # sent only when False, so an offer that moves its tag is the same document as before the field existed
    move_tag: bool = True
    # the sender's access policy for the snapshot when it withholds the weights ({level, until, reason}); the
    # receiver applies it only where it is stricter than its own (archive/access.py ``receive_policy``)
    access: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": TRANSFER_FORMAT,
            "ref": self.ref,
            "snapshot": self.snapshot,
            "signatures": list(self.signatures),
            "provenance": self.provenance,
            "parents": [{"ref": ref, "relation": rel} for ref, rel in self.parents],
            "architecture": self.architecture,
            "data": list(self.data),
        }
        if not self.move_tag:
            doc["move_tag"] = False
        if self.access is not None:
            doc["access"] = dict(self.access)
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> SnapshotOffer:
        """Parse and validate; every problem is a ``UsageError`` naming the field."""
        if not isinstance(doc, dict):
            raise UsageError("snapshot offer: expected a JSON object")
        # one walk for what no catalog column holds, wherever it is: provenance, architecture, access, parents
        if (problem := catalog_value_problem(doc)) is not None:
            raise UsageError(f"snapshot offer: holds {problem}, which the catalog cannot store")
        if type(doc.get("format")) is not int or doc["format"] != TRANSFER_FORMAT:
            raise UsageError(f"snapshot offer: format {doc.get('format')!r} is not {TRANSFER_FORMAT}")
        ref = parse_ref(_string(doc, "ref"))
        if ref.digest:
            raise UsageError("snapshot offer: ref must name a tag (ns/name:tag), not a digest")
        try:
            snapshot = SnapshotId(_string(doc, "snapshot"))
        except InvalidRefError as exc:
            raise UsageError(f"snapshot offer: {exc}") from None
        sigs = doc.get("signatures")
        if (
            not isinstance(sigs, list)
            or not 0 < len(sigs) <= MAX_OFFER_ITEMS
            or not all(isinstance(x, str) for x in sigs)
        ):
            raise UsageError(
                f"snapshot offer: signatures must be a list of 1 to {MAX_OFFER_ITEMS} object ids"
            )
        for oid in sigs:
            ObjectId(oid)
        prov = doc.get("provenance") or {}
        if not isinstance(prov, dict) or not all(
            k in _PROVENANCE_FIELDS and (v is None or (isinstance(v, str) and len(v) <= MAX_OFFER_TEXT))
            for k, v in prov.items()
        ):
            raise UsageError(
                f"snapshot offer: provenance may only hold strings (at most {MAX_OFFER_TEXT} characters) "
                f"for {', '.join(_PROVENANCE_FIELDS)}"
            )
        parse_provenance(prov)  # its dates too: refused here, before a puller moves any weight
        parents = []
        listed = doc.get("parents") or []
        if not isinstance(listed, list) or len(listed) > MAX_OFFER_ITEMS:  # "parents": 5 was a TypeError
            raise UsageError(f"snapshot offer: parents must be a list of at most {MAX_OFFER_ITEMS}")
        for i, p in enumerate(listed):
            if (
                not isinstance(p, dict)
                or not isinstance(p.get("ref"), str)
                or p.get("relation") not in RELATIONS
            ):
                raise UsageError(
                    f"snapshot offer: parents[{i}] needs a ref and a relation in {', '.join(RELATIONS)}"
                )
            if not parse_ref(p["ref"]).digest:
                raise UsageError(f"snapshot offer: parents[{i}].ref must name a digest (ns/name@sha256:...)")
            parents.append((p["ref"], p["relation"]))
        arch = doc.get("architecture") or {}
        if not isinstance(arch, dict) or len(json.dumps(arch)) > MAX_OFFER_TEXT:
            raise UsageError(
                f"snapshot offer: architecture must be an object of at most {MAX_OFFER_TEXT} bytes"
            )
        if (problem := architecture_problem(arch)) is not None:  # recorded as stated without a config.json
            raise UsageError(f"snapshot offer: architecture.{problem}")
        data = doc.get("data") or []
        if (
            not isinstance(data, list)
            or len(data) > MAX_OFFER_ITEMS
            or not all(isinstance(x, str) for x in data)
        ):
            raise UsageError(f"snapshot offer: data must be a list of at most {MAX_OFFER_ITEMS} object ids")
        move_tag = doc.get("move_tag", True)
        if not isinstance(move_tag, bool):
            raise UsageError("snapshot offer: move_tag must be true or false")
        access = _access(doc.get("access"))
        return cls(
            str(ref),
            snapshot,
            tuple(sigs),
            dict(prov),
            tuple(parents),
            arch,
            tuple(ObjectId(x) for x in data),
            move_tag,
            access,
        )


@dataclass(frozen=True)
class CommitResult:
    """What a receiver recorded; on the wire, the answer to ``POST /v1/transfer/commit``."""

    ref: str
    snapshot: SnapshotId
    new_snapshot: bool
    previous: str | None  # the snapshot the moved tag pointed at before
    key_fingerprint: str
    parents_missing: tuple[str, ...]  # lineage the receiver could not record because it lacks the parent
    # declared lineage the receiver left out: the parent already descends from the snapshot (a cycle); absent from
    # an older receiver's answer
    lineage_refused: tuple[str, ...] = ()
    # load-cache copies of weights the commit made withheld that could not be removed ("path (why)"): the
    # receiver's own business, so never on the wire; a pull (which commits locally) says them
    cache_left: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "snapshot": self.snapshot,
            "new_snapshot": self.new_snapshot,
            "previous": self.previous,
            "key_fingerprint": self.key_fingerprint,
            "parents_missing": list(self.parents_missing),
            "lineage_refused": list(self.lineage_refused),
        }

    @classmethod
    def from_json(cls, doc: Any) -> CommitResult:
        """A remote's answer; ``UsageError`` naming what is missing or mistyped."""
        if not isinstance(doc, dict):
            raise UsageError("commit answer: expected a JSON object")
        missing = doc.get("parents_missing")
        refused = doc.get("lineage_refused", [])
        previous = doc.get("previous")
        if not (
            isinstance(doc.get("ref"), str)
            and isinstance(doc.get("new_snapshot"), bool)
            and isinstance(doc.get("key_fingerprint"), str)
            and (previous is None or isinstance(previous, str))
            and isinstance(missing, list)
            and all(isinstance(p, str) for p in missing)
            and isinstance(refused, list)
            and all(isinstance(p, str) for p in refused)
        ):
            raise UsageError(
                "commit answer: needs ref, snapshot, new_snapshot, previous, key_fingerprint and parents_missing"
            )
        try:
            snapshot = SnapshotId(doc.get("snapshot"))  # type: ignore[arg-type]
        except InvalidRefError as exc:
            raise UsageError(f"commit answer: {exc}") from None
        return cls(
            doc["ref"],
            snapshot,
            doc["new_snapshot"],
            previous,
            doc["key_fingerprint"],
            tuple(missing),
            tuple(refused),
        )


def offer_for(archive: Archive, ref_text: Ref | str) -> tuple[SnapshotOffer, SnapshotManifest]:
    """Describe a local snapshot for sending, with its verified manifest."""
    ref, snap = archive.resolve(ref_text)
    refuse_if_withdrawn(snap, str(ref))
    manifest = archive.manifest(snap)
    with archive.catalog.session() as s:
        parents = tuple((p.label, p.relation) for p in parents_of(s, snap.row_id))
        tags = q.tags_by_snapshot(s, [snap.row_id]).get(snap.row_id, [])
        data = tuple(q.data_manifest_object_ids(s, snap.row_id))
    tag = ref.tag
    if tag is None:  # a digest ref: send it under the tag that points at it, else `latest`
        tag = "latest" if not tags or "latest" in tags else sorted(tags)[0]
    provenance = {
        name: (value.isoformat() if isinstance(value, dt.date) else value)
        for name in _PROVENANCE_FIELDS
        if (value := getattr(snap, name)) is not None
    }
    from modelarc.archive.access import offered_policy  # the access rules load only where an offer is made

    offer = SnapshotOffer(
        ref=f"{ref.model}:{tag}",
        snapshot=snap.digest,
        signatures=tuple(archive.signature_object_ids(snap)),
        provenance=provenance,
        parents=parents,
        architecture=dict(snap.architecture),
        data=data,
        access=offered_policy(archive, snap),
    )
    return offer, manifest


def parse_provenance(doc: dict[str, Any]) -> Provenance:
    """An offer's provenance as recorded; ``UsageError`` for a date that is not ``YYYY-MM-DD`` or an unknown
    cutoff precision. Run as the offer is parsed (a puller has moved nothing yet, a server has taken no upload's
    word for it), and again when it is recorded."""
    try:
        provenance = Provenance.from_json(doc)
    except ValueError as exc:
        raise UsageError(f"snapshot offer: bad date in provenance: {exc}") from None
    if provenance.cutoff_precision not in (None, "year", "month", "day"):
        raise UsageError("snapshot offer: cutoff_precision must be year, month or day")
    refuse_impossible_dates(provenance, "snapshot offer: provenance")
    refuse_unstorable_text(provenance, "snapshot offer: provenance")
    return provenance


def objects_of(offer: SnapshotOffer, manifest: SnapshotManifest) -> list[ObjectId]:
    """Every object a receiver needs: the manifest first (so a partial pull can read it), then bundles, then data."""
    head = [ObjectId(offer.snapshot.hex)] + [ObjectId(o) for o in offer.signatures + offer.data]
    return head + sorted(manifest.object_ids() - set(head))


def _access(value: Any) -> dict[str, Any] | None:
    """The offer's ``access``: absent, or {level: gated|restricted, until: YYYY-MM-DD or null, reason: text,
    files: [glob, ...] (optional)}."""
    if value is None:
        return None
    problem = "snapshot offer: access must be {level: gated|restricted, until: YYYY-MM-DD or null, reason: text}"
    if not isinstance(value, dict) or set(value) - {"level", "until", "reason", "files"}:
        raise UsageError(problem)
    files = value.get("files") or []
    if not isinstance(files, list) or len(files) > MAX_OFFER_ITEMS or not all(isinstance(f, str) for f in files):
        raise UsageError(f"snapshot offer: access.files must be a list of at most {MAX_OFFER_ITEMS} glob patterns")
    # every rule the policy's own are held to (archive/access.py), here: a commit records the snapshot and its policy
    # in one transaction, and a pattern refused there would refuse a commit `check` had let through
    from modelarc.archive.access import parse_files

    files = list(parse_files(files, "snapshot offer: access.files"))
    level, until, reason = value.get("level"), value.get("until"), value.get("reason")
    if level not in ("gated", "restricted") or not (reason is None or isinstance(reason, str)):
        raise UsageError(problem)
    if reason is not None and len(reason) > MAX_OFFER_TEXT:
        raise UsageError(f"snapshot offer: access.reason is longer than {MAX_OFFER_TEXT} characters")
    if until is not None:
        try:
            iso_day(until if isinstance(until, str) else "")
        except ValueError:
            raise UsageError(problem) from None
    return {"level": level, "until": until, "reason": reason, **({"files": files} if files else {})}


def _string(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise UsageError(f"snapshot offer: {name} must be a non-empty string")
    return value
