"""modelarc: an archive for machine-learning models.

The public Python API is small and loaded lazily so ``import modelarc`` stays cheap::

    import modelarc
    with modelarc.Archive.open() as archive:
        archive.push("path/to/model", "org/name:v1")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Archive", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Archive":
        from modelarc.archive.repository import Archive

        return Archive
    raise AttributeError(f"module 'modelarc' has no attribute {name!r}")
