"""Importing a model from a Hugging Face Hub endpoint: ``modelarc push hf://org/name[@revision] REF``.

The endpoint (``HF_ENDPOINT``) is untrusted: archive/remote/hf_fetch.py lists, validates, downloads and verifies the
revision's files into a private folder (``HF_HOME``/``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are honoured; they are
read at call time), which is then pushed like any other. Provenance recorded: source URL (endpoint, repo, the
listing's validated commit; offline, the endpoint modelarc's listing in the cache names, else
``hf-cache:org/name@<commit>``, which claims no endpoint), per-file hashes the bytes were checked against (sha256 for LFS files, git blob id
otherwise) in the audit event, and license, base_model and datasets from the model card. A base_model that is
already archived (any tag; its newest snapshot) becomes a declared parent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelarc.archive.manifest import printable_path
from modelarc.archive.own_state import place_holding, resolved, state_places
from modelarc.archive.push import HUB_SCHEME, PushResult
from modelarc.archive.remote.hf_cache import CACHE_SOURCE_SCHEME, cache_root
from modelarc.archive.remote.hf_fetch import DEFAULT_JOBS, Fetched, Transfer, fetch
from modelarc.archive.repository import Archive
from modelarc.errors import DestinationError, SourceError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.records import Provenance
from modelarc.registry.refs import parse_ref

# what the Hub accepts as a repo id (ASCII letters, digits, "_", ".", "-"; at most 96 characters a part), less
# what it refuses ("..", "--", a ".git" end): the id also names the cache folder models--org--name
_SOURCE = re.compile(
    r"^hf://(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})(?:@(?P<rev>.*))?$",
    re.DOTALL,
)
# a branch or tag (refs/pr/N included) or a 40-hex commit: it is part of a URL and names refs/<revision> in the cache,
# so no "..", ".", empty or hidden segment
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
MAX_REVISION_CHARS = 200
HF_TO_RELATION = {"finetune": "finetune", "quantized": "quantized", "merge": "merge", "adapter": "adapter"}


@dataclass(frozen=True)
class HubSource:
    repo: str
    revision: str


def parse_hub_source(text: str) -> HubSource | None:
    if not text.startswith(HUB_SCHEME):
        return None
    m = _SOURCE.fullmatch(text)
    repo = m["repo"] if m else ""
    if (
        m is None
        or ".." in repo
        or "--" in repo
        or any(p.endswith((".", "-")) for p in repo.split("/"))
        or (repo.lower().endswith(".git"))
    ):
        raise SourceError(f"invalid Hub source {printable_path(text)!r}: expected hf://org/name[@revision]")
    revision = m["rev"]
    if revision is None:
        return HubSource(repo, "main")
    if len(revision) > MAX_REVISION_CHARS or not _REVISION.fullmatch(revision) or ".." in revision:
        raise SourceError(
            f"invalid Hub revision {printable_path(revision)!r}: expected a branch or tag name, refs/pr/N or a "
            "40-hex commit"
        )
    return HubSource(repo, revision)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` (default https://huggingface.co), refused in one line unless it is http(s)://host[:port]:
    huggingface_hub would fail on it deep in its HTTP client."""
    # here, not at the top: only an hf:// push needs it, and every push imports this module
    from modelarc.archive.remote.config import is_http_url

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if not is_http_url(endpoint):
        raise UsageError(
            f"HF_ENDPOINT {endpoint!r} is not an http(s)://host[:port] URL; unset it for huggingface.co"
        )
    return endpoint


@contextmanager
def download(
    source: HubSource, transfer: Transfer | None = None, *, allow_partial: bool = False
) -> Iterator[tuple[Fetched, str]]:
    """(the verified files in a private folder, endpoint) for the source; the folder is removed when the block ends.
    Every failure is one ``SourceError`` (``DiskFullError`` if the disks cannot hold it) and happens before the
    caller records anything."""
    endpoint = hub_endpoint()
    with fetch(
        source.repo,
        source.revision,
        endpoint,
        offline=_offline(),
        transfer=transfer,
        allow_partial=allow_partial,
    ) as fetched:
        yield fetched, endpoint


def refuse_cache_in_archive(archive: Archive) -> None:
    """``DestinationError`` if the Hugging Face cache is inside this archive's own files: the download folder made
    beside it and the cache written after it would be, and nothing but the archive's data goes there (a push refused
    the download folder as "inside this archive's own files", naming the folder, not HF_HOME)."""
    root = cache_root()
    place = place_holding(resolved(root.absolute()), state_places(archive.settings))
    if place is not None:
        raise DestinationError(
            f"the Hugging Face cache {printable_path(str(root))} (HF_HOME/hub, or HF_HUB_CACHE) is inside this "
            f"archive's own files ({printable_path(str(place))}), where nothing else is written: set HF_HOME or "
            "HF_HUB_CACHE to a folder outside it"
        )


def _local_store(archive: Archive) -> Path | None:
    """The store's folder if it is on this machine (a Hub import checks it has room), None for S3."""
    from modelarc.storage.location import canonical_location, is_local_location

    location = archive.settings.store_location
    return Path(canonical_location(location)) if is_local_location(location) else None


def _card(folder: Path) -> dict[str, Any]:
    from modelarc.archive.remote.hf_card import read_card

    return read_card(folder / "README.md")


def _as_list(value: Any) -> list[str]:
    from modelarc.archive.remote.hf_card import card_list

    return card_list(value)


def source_of(repo: str, commit: str, endpoint: str | None) -> str:
    """The source URL a Hub import records: the commit's page on the endpoint the bytes came from, or, for cached
    files of unknown origin, ``hf-cache:org/name@<commit>``. A cached blob's hash proves its bytes, not where they
    were downloaded from: naming https://huggingface.co for them would be a claim nothing checked (a mirror, or a
    local server standing in for the Hub, fills the cache just the same)."""
    if endpoint is None:
        return f"{CACHE_SOURCE_SCHEME}{repo}@{commit}"
    return f"{endpoint}/{repo}/tree/{commit}"


def import_from_hub(
    archive: Archive,
    source: HubSource,
    ref_text: str,
    provenance: Provenance,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    jobs: int = DEFAULT_JOBS,
    fetch_progress: Callable[[int], None] | None = None,
    on_fetch_total: Callable[[int], None] | None = None,
    allow_partial: bool = False,
) -> tuple[PushResult, dict[str, Any]]:
    """Download ``source`` (``jobs`` files at once; ``fetch_progress``/``on_fetch_total`` follow the download's bytes,
    called from its threads) and push it as ``ref_text`` (``progress``/``on_total`` follow the push). Offline,
    ``allow_partial`` archives what the cache holds of a revision it may not hold whole, recorded as such."""
    ref = parse_ref(ref_text)  # a bad REF fails before anything is downloaded
    with archive.catalog.session() as s:  # so does a name refused as a lookalike of one archived here
        q.refuse_name_clash(s, ref.namespace, ref.name)
    refuse_cache_in_archive(archive)
    transfer = Transfer(jobs, fetch_progress, on_fetch_total, warn, _local_store(archive))
    with download(source, transfer, allow_partial=allow_partial) as (fetched, _endpoint):
        return _record(archive, source, ref_text, provenance, fetched, progress, on_total, warn)


def _record(
    archive: Archive,
    source: HubSource,
    ref_text: str,
    provenance: Provenance,
    fetched: Fetched,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
    warn: Callable[[str], None] | None,
) -> tuple[PushResult, dict[str, Any]]:
    from modelarc.archive.remote.hf_card import card_text

    folder, commit = fetched.folder, fetched.commit
    if fetched.skipped and warn:
        warn(f"{source.repo}: skipped {len(fetched.skipped)} file(s) under .git or .cache/, which no snapshot holds")
    card = _card(folder)
    parents = list(provenance.parents)
    unresolved = []
    relation = HF_TO_RELATION.get(card_text(card.get("base_model_relation")) or "finetune", "finetune")
    with archive.catalog.session() as s:
        for base in _as_list(card.get("base_model")):
            ns, _, name = base.partition("/")
            model = q.find_model(s, ns, name) if name else None
            spelled = q.spelled_otherwise(s, ns, name, limit=2) if name and model is None else []
            if len(spelled) == 1:  # Hub ids ignore case: `Acme/Base` on a card is this archive's acme/base
                base = spelled[0]
                model = q.find_model(s, *base.split("/", 1))
            # its newest snapshot still held: a withdrawn one is no parent to declare
            live = [sn for sn in (q.list_snapshots(s, model) if model else []) if not sn.withdrawn]
            if live:
                parents.append((f"{base}@{live[0].digest}", relation))
            else:
                unresolved.append(base)
    license_ = provenance.license or card_text(card.get("license"))
    source_url = provenance.source_url or source_of(source.repo, commit, fetched.endpoint)
    description = provenance.description
    # the source URL names the whole commit: the record says what part of it the snapshot holds
    if fetched.partial is not None:
        note = f"Possibly partial: {fetched.partial} (imported offline with --allow-partial)."
        description = f"{description}\n\n{note}" if description else note
        if warn:
            warn(f"{source.repo}: the snapshot may be partial: {fetched.partial}")
    prov = replace(
        provenance, parents=tuple(parents), license=license_, source_url=source_url, description=description
    )
    # the private folder holds only regular files written from verified bytes: no link is followed
    # only what the user stated is held against a snapshot the model already has: the rest is derived here
    result = archive.push(
        folder, ref_text, prov, progress=progress, on_total=on_total, follow_symlinks=False, stated=provenance
    )
    details = {
        "repo": source.repo,
        "revision": source.revision,
        "commit": commit,
        # where the bytes came from; offline, what modelarc's listing in the cache names, None when not known
        "endpoint": fetched.endpoint,
        # the hash each file's bytes were checked against (named etags since the first version of this event)
        "etags": fetched.hashes,
        "skipped_git_paths": list(fetched.skipped),
        # offline, the bytes came from the Hugging Face cache (checked against their blob names), not the endpoint
        "from_cache": fetched.from_cache,
        # None for the whole revision; else what part of it the snapshot may be (offline, --allow-partial)
        "partial": fetched.partial,
        "base_model": _as_list(card.get("base_model")),
        "base_model_unarchived": unresolved,
        "datasets": _as_list(card.get("datasets")),
        "license": card_text(card.get("license")),
    }
    with archive.catalog.session() as s:
        q.audit(s, archive.settings.actor, "import", result.ref, snapshot=result.snapshot, **details)
    return result, details
