"""Exports of a snapshot's provenance for tools outside modelarc.

- :func:`export_cyclonedx`: a CycloneDX 1.6 ML-BOM (JSON), checked by cyclonedx-python-lib's strict validator
  (:mod:`modelarc.archive.exports.cyclonedx` documents the document's shape and what is written by hand).
- :func:`export_model_card`: a Hugging Face model card README.md (:mod:`modelarc.archive.exports.modelcard`).

Both describe one snapshot, resolved once (:mod:`modelarc.archive.exports.subject`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

# Each exporter's module is imported when that format is asked for: cyclonedx-python-lib loads jsonschema (and its
# lark grammars, seconds) for its validator, which a model card has no use for.


def export_cyclonedx(archive: Archive, ref: str) -> str:
    from modelarc.archive.exports.cyclonedx import export_cyclonedx as export

    return export(archive, ref)


def export_model_card(archive: Archive, ref: str) -> str:
    from modelarc.archive.exports.modelcard import export_model_card as export

    return export(archive, ref)


EXPORTERS: dict[str, Callable[[Archive, str], str]] = {
    "cyclonedx": export_cyclonedx,
    "model-card": export_model_card,
}

__all__ = ["EXPORTERS", "export_cyclonedx", "export_model_card"]
