"""modelarc: an archive for machine-learning models.

The public Python API is small and loaded lazily so ``import modelarc`` stays cheap::

    import modelarc
    model = modelarc.load_model("acme/tiny:v1", device="auto")       # CUDA when present, else CPU
    model = modelarc.load_model("acme/tiny:v1", cache=True)          # decoded once, mapped on later loads
    state = modelarc.load_state_dict("acme/tiny:v1", device="cpu", dtype="bfloat16")
    snap = modelarc.open("acme/tiny:v1", lock="modelarc.lock")        # metadata, lazy snap.tensor(name)

Each function opens the archive at ``$MODELARC_HOME`` unless ``archive=`` is given.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Archive", "__version__", "load_model", "load_state_dict", "load_tokenizer", "open"]


def _archive(archive: Any) -> Any:
    from modelarc.archive.repository import Archive

    return archive if archive is not None else Archive.open()


def _ref(archive: Any, ref: str, lock: Any) -> str:
    if lock is None:
        return ref
    from modelarc.archive.runtime.lockfile import resolve_through_lock

    return resolve_through_lock(archive, ref, lock)


def open(ref: str, *, lock: Any = None, archive: Any = None) -> Any:  # noqa: A001 - the verb users expect
    from modelarc.archive.runtime.loading import open_snapshot

    arc = _archive(archive)
    return open_snapshot(arc, _ref(arc, ref, lock))


def load_state_dict(
    ref: str,
    device: str = "auto",
    dtype: Any = None,
    *,
    lock: Any = None,
    archive: Any = None,
    cache: bool = False,
) -> Any:
    """``cache=True``: keep a verified decoded copy in the load cache (``modelarc cache ls``) and map it next time."""
    from modelarc.archive.runtime.loading import load_state_dict as _load

    arc = _archive(archive)
    return _load(arc, _ref(arc, ref, lock), device=device, dtype=dtype, cache=cache)


def load_model(
    ref: str,
    device: str = "auto",
    dtype: Any = None,
    *,
    lock: Any = None,
    archive: Any = None,
    trust_remote_code: bool = False,
    cache: bool = False,
) -> Any:
    """``cache=True``: keep a verified decoded copy in the load cache (``modelarc cache ls``) and map it next time."""
    from modelarc.archive.runtime.models import load_model as _load

    arc = _archive(archive)
    return _load(
        arc, _ref(arc, ref, lock), device=device, dtype=dtype, trust_remote_code=trust_remote_code, cache=cache
    )


def load_tokenizer(ref: str, *, lock: Any = None, archive: Any = None) -> Any:
    from modelarc.archive.runtime.models import load_tokenizer as _load

    arc = _archive(archive)
    return _load(arc, _ref(arc, ref, lock))


def __getattr__(name: str) -> Any:
    if name == "Archive":
        from modelarc.archive.repository import Archive

        return Archive
    raise AttributeError(f"module 'modelarc' has no attribute {name!r}")
