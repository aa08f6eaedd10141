"""The archive as Hugging Face repositories: the read side of the Hub browsing routes (api/hub_browse.py).

A model is a repository; its revisions are tags and snapshot ids (archive/catalog/revisions.py). What each answer
means, where the Hub's model does not fit ours, is written down in docs/API.md ("Browsing with Hugging Face tools"):
- a repository's card is its head snapshot's (``main``, else ``latest``): license, architecture, cutoff, parents
  (``base_model``) and datasets, as the exported model card states them (archive/catalog/card.py);
- a commit is a snapshot: its id is the snapshot id's first 40 hex digits, its title the push description (or
  ``push NS/NAME:TAG``), its date the push, its author who pushed it; a tag's history is the snapshots it named;
- a file's last commit is the oldest commit of the revision's history since which the file has not changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from modelarc.archive.catalog.card import CardSubject, card_metadata, hub_tags
from modelarc.archive.catalog.repo_tree import RepoTree
from modelarc.archive.catalog.revisions import Revision, commit_id
from modelarc.archive.catalog.search import parse_count, parse_day
from modelarc.archive.repository import Archive
from modelarc.errors import UsageError
from modelarc.registry import revision_history as rh
from modelarc.registry.model_heads import CardFacts, ModelOrder, card_facts, list_model_heads
from modelarc.registry.refs import SnapshotId, parse_model_name
from modelarc.registry.snapshot_search import SnapshotFilters, format_cutoff_value
from modelarc.registry.snapshots import FileRecord, SnapshotRecord, files_of_snapshots

_HISTORY_BATCH = 16  # older snapshots whose files are read at once while looking for a path's last change
_SHOWN = 80  # characters of a client's filter an error quotes


# ----------------------------------------------------------------------------------------------- listing
@dataclass(frozen=True)
class RepoQuery:
    """``GET /api/models``: filters on each model's head snapshot, the author (namespace), and the order."""

    filters: SnapshotFilters
    author: str | None = None
    order: ModelOrder = "name"
    descending: bool = True


SORTS: dict[str, ModelOrder] = {"lastModified": "modified", "createdAt": "created", "id": "name"}


def repo_query(
    *,
    filters: Sequence[str] = (),
    search: str | None = None,
    author: str | None = None,
    num_parameters: str | None = None,
    sort: str | None = None,
    descending: bool = True,
) -> RepoQuery:
    """The Hub's list parameters as a catalog query; ``UsageError`` for a filter or sort this archive cannot answer.

    ``filters`` (ANDed): ``license:ID``, ``dataset:NAME``, ``base_model:NS/NAME``, ``base_model:RELATION:NS/NAME``,
    ``cutoff_before:DATE``, ``cutoff_after:DATE``, ``arch:X`` or a bare ``X`` (model type or architecture class,
    as ``modelarc ls --arch``), and ``modelarc`` (every model). ``num_parameters``: ``min:7B``, ``max:70B`` or both,
    comma-separated.
    """
    found: dict[str, str] = {}
    for value in filters:
        key, sep, rest = value.partition(":")
        key = key if sep else "arch"
        rest = rest if sep else value
        if value == "modelarc":
            continue
        if (
            key not in ("license", "dataset", "base_model", "cutoff_before", "cutoff_after", "arch")
            or not rest
        ):
            raise UsageError(
                f"unsupported filter {value[:_SHOWN]!r}: use license:ID, dataset:NAME, base_model:NS/NAME, "
                "cutoff_before:DATE, cutoff_after:DATE or an architecture (docs/API.md)"
            )
        if found.setdefault(key, rest) != rest:
            raise UsageError(f"two different {key} filters: at most one of each kind")
    minimum = maximum = None
    for part in (num_parameters or "").split(","):
        bound, _sep, count = part.strip().partition(":")
        if not part.strip():
            continue
        if bound not in ("min", "max") or not count:
            raise UsageError("num_parameters is min:COUNT, max:COUNT or both, e.g. min:1B,max:70B")
        if bound == "min":
            minimum = parse_count(count)
        else:
            maximum = parse_count(count)
    parent, relation = None, None
    if "base_model" in found:
        relation_text, sep, model_text = found["base_model"].rpartition(":")
        parent, relation = parse_model_name(model_text), (relation_text if sep else None)
    if sort is not None and sort not in SORTS:
        raise UsageError(
            f"unsupported sort {sort[:_SHOWN]!r}: lastModified, createdAt or id (the archive counts no downloads, "
            "likes or trends)"
        )
    return RepoQuery(
        filters=SnapshotFilters(
            cutoff_before=parse_day(found["cutoff_before"]) if "cutoff_before" in found else None,
            cutoff_after=parse_day(found["cutoff_after"]) if "cutoff_after" in found else None,
            arch=found.get("arch"),
            min_params=minimum,
            max_params=maximum,
            trained_on=found.get("dataset"),
            license=found.get("license"),
            name=search or None,
            parent_model=parent,
            parent_relation=relation,
        ),
        author=author,
        order=SORTS[sort] if sort else "name",
        descending=descending,
    )


@dataclass(frozen=True)
class RepoCard:
    """A model as a Hub repository at one revision: its snapshot there, the card that snapshot has, and its files
    when they were asked for. ``snapshot`` is None for a model with neither ``main`` nor ``latest``."""

    model: str
    author: str  # the namespace
    created_at: dt.datetime
    snapshot: SnapshotRecord | None
    card: CardSubject | None
    files: tuple[FileRecord, ...] | None = None

    @property
    def sha(self) -> str | None:
        return commit_id(self.snapshot.digest) if self.snapshot else None

    def card_data(self) -> dict[str, object] | None:
        return card_metadata(self.card)[0] if self.card else None

    def tags(self) -> list[str]:
        return hub_tags(self.card) if self.card else []


def list_repos(
    archive: Archive, query: RepoQuery, *, limit: int, offset: int = 0, with_files: bool = False
) -> list[RepoCard]:
    """One page of repositories; the card facts (and files) of the whole page come from one query each."""
    with archive.catalog.session() as s:
        heads = list_model_heads(
            s,
            query.filters,
            author=query.author,
            order=query.order,
            descending=query.descending,
            limit=limit,
            offset=offset,
        )
        ids = [h.head.row_id for h in heads if h.head is not None]
        facts = card_facts(s, ids)
        files = files_of_snapshots(s, ids) if with_files else {}
    return [
        RepoCard(
            model=h.model,
            author=h.namespace,
            created_at=h.created_at,
            snapshot=h.head,
            card=_card(h.head, facts.get(h.head.row_id, CardFacts())) if h.head else None,
            files=tuple(files[h.head.row_id]) if h.head and with_files else None,
        )
        for h in heads
    ]


def repo_card(archive: Archive, rev: Revision) -> RepoCard:
    """The repository at ``rev``, with its files."""
    snap = rev.snapshot
    with archive.catalog.session() as s:
        facts = card_facts(s, [snap.row_id]).get(snap.row_id, CardFacts())
        files = files_of_snapshots(s, [snap.row_id])[snap.row_id]
    ns, _name = parse_model_name(rev.model)
    return RepoCard(rev.model, ns, rev.model_created_at, snap, _card(snap, facts), tuple(files))


def _card(snap: SnapshotRecord, facts: CardFacts) -> CardSubject:
    return CardSubject(
        snapshot=snap.digest,
        architecture=snap.architecture,
        license=snap.license,
        parents=facts.parents,
        datasets=facts.datasets,
        cutoff=format_cutoff_value(snap.cutoff, snap.cutoff_precision),
        cutoff_precision=snap.cutoff_precision if snap.cutoff else None,
        parameter_count=snap.parameter_count,
    )


# ----------------------------------------------------------------------------------------------- commits
@dataclass(frozen=True)
class Commit:
    """A snapshot as a commit of a Hub repository."""

    id: str  # the snapshot id's first 40 hex digits
    snapshot: SnapshotId
    title: str
    message: str
    date: dt.datetime  # when it was pushed (UTC)
    authors: tuple[str, ...]


def revision_commits(archive: Archive, rev: Revision, *, limit: int, offset: int = 0) -> list[Commit]:
    """One page of the revision's history, newest first: the snapshots its tag has named (registry/
    revision_history.py), or only the snapshot itself when the revision is an immutable id."""
    with archive.catalog.session() as s:
        if rev.tag is None:
            snaps = [rev.snapshot][offset : offset + limit]
        else:
            snaps = rh.tag_history(s, rev.model_id, rev.tag, limit=limit, offset=offset)
        pushed_as = rh.first_tags(s, rev.model_id, [sn.row_id for sn in snaps])
    return [_commit(rev.model, sn, pushed_as.get(sn.row_id)) for sn in snaps]


def _commit(model: str, snap: SnapshotRecord, pushed_as: str | None) -> Commit:
    lines = (snap.description or "").strip().splitlines()
    title = lines[0].strip() if lines else f"push {model}:{pushed_as}" if pushed_as else f"push {snap.label}"
    body = "\n".join(lines[1:]).strip()
    notes = [f"modelarc snapshot {snap.digest}"]
    if snap.withdrawn:
        notes.append(f"withdrawn on {snap.tombstoned_at:%Y-%m-%d}: {snap.tombstone_reason}")
    return Commit(
        id=commit_id(snap.digest),
        snapshot=snap.digest,
        title=title,
        message="\n\n".join([body, *notes] if body else notes),
        date=snap.created_at,
        authors=(snap.pushed_by,) if snap.pushed_by else (),
    )


# ----------------------------------------------------------------------------------------------- files
def snapshot_tree(archive: Archive, snap: SnapshotRecord) -> RepoTree:
    """The snapshot's files and folders with their git ids, from the catalog's file rows (no file is read)."""
    with archive.catalog.session() as s:
        files = files_of_snapshots(s, [snap.row_id])[snap.row_id]
    return RepoTree((f.path, f.size, f.sha256) for f in files)


def last_commits(archive: Archive, rev: Revision, tree: RepoTree, paths: Sequence[str]) -> dict[str, Commit]:
    """For each path of ``tree`` (the revision's), the oldest commit of the revision's history since which the
    path (a file's content, or everything in a folder) is what it is now.

    Walks the history from the newest snapshot back, a few snapshots' file lists at a time, until every path has
    changed or the history ends; a path unchanged since the oldest entry gets that entry.
    """
    with archive.catalog.session() as s:
        history = rh.tag_history(s, rev.model_id, rev.tag) if rev.tag is not None else []
        if not history or history[0].row_id != rev.snapshot.row_id:  # an id, or the tag moved meanwhile
            history = [rev.snapshot]
        now = {p: tree.oid(p) for p in paths}
        found: dict[str, int] = {}
        for start in range(1, len(history), _HISTORY_BATCH):
            batch = history[start : start + _HISTORY_BATCH]
            files = files_of_snapshots(s, [sn.row_id for sn in batch])
            for i, sn in enumerate(batch, start):
                older = RepoTree((f.path, f.size, f.sha256) for f in files[sn.row_id])
                for path in [p for p in now if p not in found and older.oid(p) != now[p]]:
                    found[path] = i - 1
            if len(found) == len(now):
                break
        chosen = {p: found.get(p, len(history) - 1) for p in now}
        used = sorted(set(chosen.values()))
        pushed_as = rh.first_tags(s, rev.model_id, [history[i].row_id for i in used])
    commits = {i: _commit(rev.model, history[i], pushed_as.get(history[i].row_id)) for i in used}
    return {p: commits[i] for p, i in chosen.items()}
