"""The Hugging Face cache as modelarc reads and writes it: where it is, and the few safe ways to touch a path in it.

The cache (``HF_HUB_CACHE``, ``HF_HOME/hub`` or the default) is shared with huggingface_hub and with anything else
the user runs, so nothing in it is trusted: a folder may be a link that takes a write elsewhere, a file may be a FIFO
that blocks a plain ``open()`` for ever, a name may be a link. Every read here opens without following a link and
without blocking, and reads only a regular file; every write goes through a real folder of the repo's cache and an
atomic rename.

Beside huggingface_hub's layout (``blobs/``, ``snapshots/<commit>/``, ``refs/``) modelarc keeps its own folder,
``.modelarc/`` in the repo's cache folder, which huggingface_hub's cache scan does not read (it reads only those
three): ``listings/<commit>.json``, the verified file listing of each revision it wrote (docs/FORMAT.md, "Hugging
Face cache listing"), without which an offline import cannot know the cache holds the whole revision, and ``tmp/``
for its temporary names, so that one left by a crash is never taken for a ref or a snapshot file.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

OWN_FOLDER = ".modelarc"
LISTING_FORMAT = "modelarc.hf-cache-listing"
LISTING_VERSION = 1
# the source an offline import records when the endpoint its cached files came from is not known: the repo and the
# commit, no endpoint claimed (docs/FORMAT.md, "Hugging Face cache listing")
CACHE_SOURCE_SCHEME = "hf-cache:"


def cache_root() -> Path:
    """Where huggingface_hub keeps its cache, read at call time like the other ``HF_*`` settings."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def repo_cache(repo: str) -> Path:
    # repo ids are checked to hold no "..", "--" or "/" beyond the one (hf_import._SOURCE): the name is one segment
    return cache_root() / f"models--{repo.replace('/', '--')}"


def listing_path(repo_dir: Path, commit: str) -> Path:
    """Where modelarc keeps the verified listing of ``commit`` (40 hex digits, checked by the caller)."""
    return repo_dir / OWN_FOLDER / "listings" / f"{commit}.json"


def real_folder(repo_dir: Path, folder: Path) -> None:
    """Make ``folder`` (inside ``repo_dir``), or ``OSError`` if ``repo_dir`` or any part of ``folder`` below it is a
    link (or not a folder): a write through it would land outside the cache."""
    repo_dir.parent.mkdir(parents=True, exist_ok=True)
    parts = folder.relative_to(repo_dir).parts
    for here in (repo_dir, *(repo_dir.joinpath(*parts[: i + 1]) for i in range(len(parts)))):
        if here.is_symlink():
            raise OSError(f"{here} is a link, not a folder")
        here.mkdir(exist_ok=True)  # FileExistsError for a file there


def replace_atomically(repo_dir: Path, target: Path, make: Callable[[Path], object]) -> None:
    """``make`` a temporary path, then rename it to ``target``: a reader sees the old entry or the new, never half of
    one. The temporary name is short and fixed-length (a name derived from ``target``'s passed NAME_MAX for long file
    names) and lives in ``.modelarc/tmp/`` of the same repo cache (same disk, so the rename is atomic)."""
    tmp_dir = repo_dir / OWN_FOLDER / "tmp"
    real_folder(repo_dir, tmp_dir)
    tmp = tmp_dir / f"{secrets.token_hex(8)}.tmp"
    try:
        make(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, which must not exist: ``O_EXCL`` and ``O_NOFOLLOW`` never write through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with open(fd, "wb") as fh:
        fh.write(data)


def read_cache_file(path: Path | str, limit: int, *, follow_link: bool = False) -> bytes:
    """At most ``limit`` + 1 bytes of the regular file ``path`` (so a caller can tell a larger one). ``OSError`` if it
    is missing or, unless ``follow_link``, a link (``O_NOFOLLOW``); ``NotRegularFileError`` if it is a FIFO, device
    or folder: the open does not block (``O_NONBLOCK``), where a plain ``open()`` of a FIFO waits for a writer for
    ever."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_link else getattr(os, "O_NOFOLLOW", 0))
    fd = os.open(path, flags)
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path} is not a regular file")
        return fh.read(limit + 1)


class NotRegularFileError(OSError):
    """A cache path that is not a regular file (a FIFO, socket, device or folder)."""
