"""The places an archive keeps its own state in (home, store, load cache, SQLite catalog), where no file a command
writes for the user may land, and which no push reads (archive/ingest.py leaves them out of a source folder: the
home holds the private signing key, and a snapshot's files may be handed to anyone who can read it).

A snapshot names its files, and one from elsewhere names them as it likes: a snapshot holding ``registry.db``,
pulled with ``--force`` into the home, replaced the catalog (every command then failed), and without ``--force`` a
pull could still add files under ``store/records/`` (which a rebuild replays) or ``store/objects/``. A file the user
names (``pull --signature``, ``export -o``) is held to the same rule: nothing but the archive's own code writes
there, so nothing else can leave it in a state the archive did not choose.
"""

from __future__ import annotations

import os
from pathlib import Path

from modelarc.config import Settings
from modelarc.errors import DestinationError
from modelarc.storage.location import is_s3_url

_SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def state_places(settings: Settings) -> tuple[Path, ...]:
    """Every folder and file the archive of ``settings`` owns, resolved (a symlinked home is its target)."""
    places = [settings.home, settings.cache_path]
    if settings.store_url is not None and not is_s3_url(settings.store_url):
        places.append(Path(settings.store_url))
    scheme, _, rest = settings.database_url.partition(":///")
    if scheme.startswith("sqlite") and rest and not rest.startswith(":memory:"):
        database = rest.partition("?")[0]
        places += [Path(database + side) for side in _SQLITE_SIDE_FILES]
    return tuple(resolved(p.expanduser().absolute()) for p in places)


def refuse_state_place(target: Path, places: tuple[Path, ...], shown: str) -> None:
    """``DestinationError`` if ``target`` (or where its existing folders lead) is one of ``places`` or inside one."""
    place = place_holding(resolved(target.absolute()), places)
    if place is not None:
        raise DestinationError(
            f"refusing to write {shown}: {target} is inside this archive's own files ({place}); choose "
            "another destination"
        )


def place_holding(real: Path, places: tuple[Path, ...]) -> Path | None:
    """The one of ``places`` that ``real`` (a resolved path) is, or is inside; None when it is in none of them."""
    for place in places:
        if real == place or place in real.parents:
            return place
    return None


def resolved(path: Path) -> Path:
    """Where ``path`` leads once the folders a write makes exist: its existing part with symlinks followed, and a
    ``..`` after a part that does not exist yet taken as the OS will take it once that part is made (it cancels
    that part). Appending the missing rest as typed, ``X/nosuch/../home`` was compared as written and passed every
    check while the write, after making ``nosuch``, landed in ``X/home``."""
    return Path(os.path.realpath(path.absolute()))
