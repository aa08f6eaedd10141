"""Exports of a snapshot's provenance for tools outside modelarc.

- :func:`export_cyclonedx`: a CycloneDX 1.6 ML-BOM (JSON), checked by cyclonedx-python-lib's strict validator
  (:mod:`modelarc.archive.exports.cyclonedx` documents the document's shape and what is written by hand).
- :func:`export_model_card`: a Hugging Face model card README.md (:mod:`modelarc.archive.exports.modelcard`).

Both describe one snapshot, resolved once (:mod:`modelarc.archive.exports.subject`).
"""

from __future__ import annotations

from collections.abc import Callable

from modelarc.archive.exports.cyclonedx import export_cyclonedx
from modelarc.archive.exports.modelcard import export_model_card
from modelarc.archive.repository import Archive

EXPORTERS: dict[str, Callable[[Archive, str], str]] = {
    "cyclonedx": export_cyclonedx,
    "model-card": export_model_card,
}

__all__ = ["EXPORTERS", "export_cyclonedx", "export_model_card"]
