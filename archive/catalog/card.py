"""A snapshot's Hugging Face model card metadata: one function for the exported README.md and the Hub routes.

The fields are the ones the Hub reads: ``base_model`` (the parents' ``ns/name``), ``base_model_relation``,
``datasets``, ``license``, ``tags``, plus a ``modelarc`` block (snapshot id, cutoff) that the Hub ignores and tools can
read back. The Hub knows four relations (finetune, quantized, merge, adapter); for ours that it cannot express
(distilled, continued-pretrain) or for parents related in different ways, ``base_model_relation`` is left out (the
Hub infers one) and a note says why. ``hub_tags`` adds the tags the Hub computes from such a card.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelarc.registry.refs import SnapshotId
from modelarc.registry.snapshots import ParentLink

# Our lineage relations that the Hub's ``base_model_relation`` can express; the others have no Hub equivalent.
HF_RELATIONS = {"finetune": "finetune", "quantized": "quantized", "merge": "merge", "adapter": "adapter"}
_LICENSE_ID = re.compile(r"[A-Za-z0-9.+-]+")


@dataclass(frozen=True)
class CardSubject:
    """The catalog's facts about one snapshot that its card states."""

    snapshot: SnapshotId
    architecture: dict[str, Any]
    license: str | None
    parents: tuple[ParentLink, ...]
    datasets: tuple[str, ...]  # names, each once
    cutoff: str | None  # YYYY, YYYY-MM or YYYY-MM-DD
    cutoff_precision: str | None
    parameter_count: int


def card_metadata(c: CardSubject) -> tuple[dict[str, Any], list[str]]:
    """The card's metadata, and notes on what could not be expressed in it."""
    notes: list[str] = []
    meta: dict[str, Any] = {"tags": ["modelarc"]}
    if c.architecture.get("model_type"):
        meta["tags"].append(str(c.architecture["model_type"]))
    if c.license:
        if _LICENSE_ID.fullmatch(c.license):
            meta["license"] = c.license.lower()  # Hub license ids are lower-case SPDX-like ids
        else:
            meta["license"] = "other"
            meta["license_name"] = re.sub(r"[^a-z0-9.]+", "-", c.license.lower()).strip("-")
            notes.append(f"License as recorded: {c.license}.")
    if c.parents:
        names = list(dict.fromkeys(p.model for p in c.parents))
        meta["base_model"] = names[0] if len(names) == 1 else names
        ours = sorted({p.relation for p in c.parents})
        hub = {HF_RELATIONS.get(r) for r in ours}
        if len(hub) == 1 and None not in hub:
            meta["base_model_relation"] = hub.pop()
        else:
            notes.append(
                f"base_model_relation is omitted: the declared relation ({', '.join(ours)}) has no single "
                "Hugging Face equivalent (finetune, quantized, merge, adapter)."
            )
    if c.datasets:
        meta["datasets"] = list(dict.fromkeys(c.datasets))
    meta["modelarc"] = {
        "snapshot": str(c.snapshot),  # plain str: the YAML dumper would tag a str subclass
        "training_cutoff": c.cutoff,
        "training_cutoff_precision": c.cutoff_precision,
        "parameter_count": c.parameter_count,
    }
    return meta, notes


def hub_tags(c: CardSubject) -> list[str]:
    """The repository tags the Hub would compute from this card, plus our ``cutoff:`` tag.

    The card's own tags (``modelarc``, the model type), then ``license:<id>`` (ids only; a free-text license is in
    the card as ``other``), ``base_model:<ns/name>`` and ``base_model:<relation>:<ns/name>`` for each parent,
    ``dataset:<name>`` and ``cutoff:<YYYY[-MM[-DD]]>``. Each is a filter of ``GET /api/models`` (docs/API.md).
    """
    meta, _notes = card_metadata(c)
    tags = list(meta["tags"])
    if c.license and _LICENSE_ID.fullmatch(c.license):
        tags.append(f"license:{c.license.lower()}")
    for p in c.parents:
        tags += [f"base_model:{p.model}", f"base_model:{p.relation}:{p.model}"]
    tags += [f"dataset:{name}" for name in c.datasets]
    if c.cutoff:
        tags.append(f"cutoff:{c.cutoff}")
    return list(dict.fromkeys(tags))
