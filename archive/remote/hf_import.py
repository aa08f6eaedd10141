"""Importing a model from a Hugging Face Hub endpoint: ``modelarc push hf://org/name[@revision] REF``.

Downloads with huggingface_hub (so ``HF_ENDPOINT``, the ``HF_HOME``/``HF_HUB_CACHE`` cache and ``HF_HUB_OFFLINE``
are honoured; they are read at call time, not when huggingface_hub was first imported), then pushes the downloaded
snapshot folder like any other. Provenance recorded: source URL (endpoint, repo, resolved commit), per-file etags
(sha256 for LFS files, git blob id otherwise) in the audit event, and license, base_model and datasets from the
model card. A base_model that is already archived (any tag; its newest snapshot) becomes a declared parent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelarc.archive.push import PushResult
from modelarc.archive.repository import Archive
from modelarc.errors import SourceError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.records import Provenance
from modelarc.registry.refs import parse_ref

_SOURCE = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[^\s]+))?$")
HF_TO_RELATION = {"finetune": "finetune", "quantized": "quantized", "merge": "merge", "adapter": "adapter"}


@dataclass(frozen=True)
class HubSource:
    repo: str
    revision: str


def parse_hub_source(text: str) -> HubSource | None:
    if not text.startswith("hf://"):
        return None
    m = _SOURCE.match(text)
    if m is None:
        raise SourceError(f"invalid Hub source {text!r}: expected hf://org/name[@revision]")
    return HubSource(m["repo"], m["rev"] or "main")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def hub_endpoint() -> str:
    """``HF_ENDPOINT`` (default https://huggingface.co), refused in one line unless it is http(s)://host[:port]:
    huggingface_hub would fail on it deep in its HTTP client."""
    # here, not at the top: only an hf:// push needs it, and every push imports this module
    from modelarc.archive.remote.config import is_http_url

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if not is_http_url(endpoint):
        raise UsageError(f"HF_ENDPOINT {endpoint!r} is not an http(s)://host[:port] URL; unset it for huggingface.co")
    return endpoint


def download(source: HubSource) -> tuple[Path, str, dict[str, str], str]:
    """(local snapshot folder, commit sha, etags by path, endpoint) for the source."""
    endpoint = hub_endpoint()
    import httpx
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub import errors as hf_errors

    where = f"{source.repo}@{source.revision} on {endpoint}"
    etags: dict[str, str] = {}
    try:
        folder = Path(
            snapshot_download(
                source.repo,
                revision=source.revision,
                endpoint=endpoint,
                cache_dir=_cache_dir(),
                local_files_only=_offline(),
            )
        )
        commit = folder.name
        if not _offline():
            info = HfApi(endpoint=endpoint).model_info(source.repo, revision=commit, files_metadata=True)
            commit = info.sha or commit
            for sib in info.siblings or []:
                lfs = getattr(sib, "lfs", None)
                etags[sib.rfilename] = (lfs.sha256 if lfs else None) or getattr(sib, "blob_id", None) or ""
    except hf_errors.RepositoryNotFoundError:
        raise SourceError(f"no repository {source.repo} on {endpoint}") from None
    except hf_errors.RevisionNotFoundError:
        raise SourceError(f"no revision {source.revision!r} in {source.repo} on {endpoint}") from None
    except hf_errors.LocalEntryNotFoundError:
        raise SourceError(
            f"{where}: not in the local cache and downloads are off (HF_HUB_OFFLINE) or the endpoint is unreachable"
        ) from None
    except (OSError, hf_errors.HfHubHTTPError, httpx.HTTPError) as exc:
        raise SourceError(
            f"{where}: download failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    return folder, commit, etags, endpoint


def _card(folder: Path) -> dict[str, Any]:
    from modelarc.archive.remote.hf_card import read_card

    return read_card(folder / "README.md")


def _as_list(value: Any) -> list[str]:
    from modelarc.archive.remote.hf_card import card_list

    return card_list(value)


def import_from_hub(
    archive: Archive,
    source: HubSource,
    ref_text: str,
    provenance: Provenance,
    *,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> tuple[PushResult, dict[str, Any]]:
    parse_ref(ref_text)  # a bad REF fails before anything is downloaded
    from modelarc.archive.remote.hf_card import card_text

    folder, commit, etags, endpoint = download(source)
    card = _card(folder)
    parents = list(provenance.parents)
    unresolved = []
    relation = HF_TO_RELATION.get(card_text(card.get("base_model_relation")) or "finetune", "finetune")
    with archive.catalog.session() as s:
        for base in _as_list(card.get("base_model")):
            ns, _, name = base.partition("/")
            model = q.find_model(s, ns, name) if name else None
            # its newest snapshot still held: a withdrawn one is no parent to declare
            live = [sn for sn in (q.list_snapshots(s, model) if model else []) if not sn.withdrawn]
            if live:
                parents.append((f"{base}@{live[0].digest}", relation))
            else:
                unresolved.append(base)
    license_ = provenance.license or card_text(card.get("license"))
    source_url = provenance.source_url or f"{endpoint}/{source.repo}/tree/{commit}"
    prov = replace(provenance, parents=tuple(parents), license=license_, source_url=source_url)
    # the Hub cache's snapshot folder holds symlinks into its blobs/ folder, outside it: following them is the point
    result = archive.push(folder, ref_text, prov, progress=progress, on_total=on_total, follow_symlinks=True)
    details = {
        "repo": source.repo,
        "revision": source.revision,
        "commit": commit,
        "endpoint": endpoint,
        "etags": etags,
        "base_model": _as_list(card.get("base_model")),
        "base_model_unarchived": unresolved,
        "datasets": _as_list(card.get("datasets")),
        "license": card_text(card.get("license")),
    }
    with archive.catalog.session() as s:
        q.audit(s, archive.settings.actor, "import", result.ref, snapshot=result.snapshot, **details)
    return result, details
