"""The model card (README.md front matter) of a repository imported from a Hub endpoint, read as hostile input.

What an import takes from a card is a license, base models, their relation and datasets: short strings. A card is
whatever the endpoint served, and huggingface_hub's ``ModelCard.load`` is PyYAML's safe loader, which expands
aliases: a 1 KB README of nested aliases took 1.36 GB of memory and left a 312 MB catalog row. So: the front matter
of at most ``MAX_CARD_BYTES``, no aliases, a bounded depth, and only strings (or lists of strings) of bounded
length; anything else is as if the card did not say it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from modelarc.archive.bounded_yaml import BoundedLoader

MAX_CARD_BYTES = 1 << 20  # real cards are a few KB; their front matter far less
MAX_DEPTH = 16
MAX_TEXT = 256  # a license id, a repo id, a dataset name
MAX_ITEMS = 64


class _CardLoader(BoundedLoader):
    max_depth = MAX_DEPTH
    document = "a model card"


def read_card(readme: Path) -> dict[str, Any]:
    """The card's front matter as a mapping; empty when there is none or it cannot be read within the bounds (a
    malformed card is not a reason to refuse the weights)."""
    try:
        fd = os.open(readme, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO is not waited on
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_CARD_BYTES + 1)
    if len(raw) > MAX_CARD_BYTES:
        return {}
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    if not text.startswith("---"):
        return {}
    front, sep, _rest = text[3:].partition("\n---")
    if not sep:
        return {}
    try:
        data = yaml.load(front, Loader=_CardLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def card_text(value: Any) -> str | None:
    """``value`` if it is a string of at most ``MAX_TEXT`` characters (a number is taken as its text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = str(value)
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT and "\0" not in value else None


def card_list(value: Any) -> list[str]:
    """A string, or a list of at most ``MAX_ITEMS`` strings, each as ``card_text`` takes it; else nothing."""
    if value is None:
        return []
    items = [value] if not isinstance(value, list) else value
    if len(items) > MAX_ITEMS:
        return []
    return [text for v in items if (text := card_text(v)) is not None]
