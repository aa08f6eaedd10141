"""One Hub revision's files, fetched and verified into a private folder: the bytes of ``push hf://``.

The Hub endpoint (``HF_ENDPOINT``) is untrusted, and so is what it says. huggingface_hub's downloader named cache
files after the endpoint's ``ETag`` header, so an ETag that was a path made it link any local file into a snapshot
(the archive's own signing key was archived that way) or write the endpoint's bytes anywhere (a ``.pth`` file in
site-packages). So this module does not use it: it asks for the listing as JSON, validates every name, size and
hash in it before a byte is written, checks the disks have room for what it lists, downloads the files over httpx
(up to ``jobs`` at once, archive/remote/hf_download.py, which Ctrl-C and SIGTERM stop at once) into a fresh private
folder under names taken from the validated listing, and checks each file's bytes against the listed hash (sha256 for
an LFS file, the git blob id otherwise). What is recorded is the listing's commit and these verified hashes, never a
header's word. The user's token goes only to the endpoint, and never over plain http unless the endpoint is this
machine (docs/SECURITY.md, "Hub imports").

The Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME/hub`` or the default) is written after an online import in the
standard layout, under names that are verified hashes only, so that ``HF_HUB_OFFLINE=1`` can import from it later;
an offline import accepts only files whose cache blob hashes to its own name (docs/SECURITY.md, "Hub imports").
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modelarc.archive.catalog.units import human_bytes
from modelarc.archive.ingest import SKIPPED_DIRS
from modelarc.archive.limits import MAX_FILES_PER_SNAPSHOT
from modelarc.archive.manifest import is_git_path, is_partial_name, path_clash, path_problem, printable_path
from modelarc.archive.remote.hf_download import Budget, Deadline, Stopper, download_all, git_blob_sha1
from modelarc.errors import DiskFullError, SourceError

_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX40_ANY_CASE = re.compile(r"[0-9a-fA-F]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# what a listing of MAX_FILES_PER_SNAPSHOT siblings needs: the Hub lists each as ~200 bytes of JSON (name, size, blob
# id, LFS sha256 and sizes) plus its path, so 100,000 files with paths of ~100 bytes make ~30 MB. The listing is
# parsed whole before it is judged, and hostile JSON costs up to ~20 times its size to parse: no more is read.
MAX_LISTING_BYTES = 32 << 20
# the Hub's own limit is 50 GB per file; a mirror of it may hold more, but no published file is near a TiB
MAX_HUB_FILE_BYTES = 1 << 40
MAX_REDIRECTS = 5
_CHUNK = 1 << 20
DEFAULT_JOBS = 4  # the CLI's --jobs default too; huggingface_hub used 8 workers


@dataclass(frozen=True)
class HubFile:
    """One listed file: ``sha256`` for an LFS file, else ``blob_id`` (the git blob sha1) is what its bytes must hash to."""

    path: str
    size: int
    sha256: str | None
    blob_id: str | None

    @property
    def digest(self) -> str:
        """The hash its bytes are checked against: the name of its blob in the Hugging Face cache."""
        return self.sha256 or self.blob_id or ""


@dataclass(frozen=True)
class HubListing:
    commit: str
    files: tuple[HubFile, ...]
    skipped: tuple[str, ...]  # ``.git`` paths and files in ``.cache/`` folders, which no snapshot holds


@dataclass(frozen=True)
class Fetched:
    """A revision's verified files in ``folder`` (private, removed when the ``fetch`` block ends)."""

    folder: Path
    commit: str
    hashes: dict[str, str]  # path -> verified sha256 (LFS) or git blob sha1
    skipped: tuple[str, ...]
    from_cache: bool


def cache_root() -> Path:
    """Where huggingface_hub keeps its cache, read at call time like the other ``HF_*`` settings."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def _repo_cache(repo: str) -> Path:
    # repo ids are checked to hold no "..", "--" or "/" beyond the one (hf_import._SOURCE): the name is one segment
    return cache_root() / f"models--{repo.replace('/', '--')}"


# ------------------------------------------------------------------------------------------------------ the listing
def parse_listing(info: object, where: str, revision: str | None = None) -> HubListing:
    """The ``model_info`` JSON (with ``blobs=true``) as a ``HubListing``, or one ``SourceError`` naming what is wrong:
    everything is checked before a byte is written. A ``revision`` that is a commit (40 hex digits) pins the
    listing: one for another commit is refused, not imported under the pin."""
    if not isinstance(info, dict):
        raise SourceError(f"{where}: the endpoint's listing is not a JSON object")
    commit = info.get("sha")
    if not isinstance(commit, str) or not _HEX40.fullmatch(commit):
        raise SourceError(
            f"{where}: the endpoint's commit {printable_path(commit)} is not 40 lowercase hex digits"
        )
    if revision is not None and is_commit(revision) and commit != revision.lower():
        raise SourceError(f"{where}: the endpoint answered commit {commit}, not the commit {revision} asked for")
    siblings = info.get("siblings")
    if not isinstance(siblings, list):
        raise SourceError(f"{where}: the endpoint's listing has no list of files")
    if len(siblings) > MAX_FILES_PER_SNAPSHOT:
        raise SourceError(
            f"{where}: {len(siblings):,} files listed, more than the limit of {MAX_FILES_PER_SNAPSHOT:,} "
            "(see docs/FORMAT.md, Limits)"
        )
    files: list[HubFile] = []
    skipped: list[str] = []
    for sib in siblings:
        if not isinstance(sib, dict):
            raise SourceError(f"{where}: a listed file is not a JSON object")
        path = sib.get("rfilename")
        problem = path_problem(path)
        if problem is not None:
            raise SourceError(f"{where}: listed file '{printable_path(path)}' {problem}")
        assert isinstance(path, str)
        if is_partial_name(path.rsplit("/", 1)[-1]):  # as a folder push refuses one (archive/ingest.py)
            raise SourceError(
                f"{where}: listed file '{printable_path(path)}' is named like the temp file of an interrupted "
                "'modelarc pull', which is not archived"
            )
        # as a folder import skips them (archive/ingest.py): git metadata, and tool caches in .cache/ folders
        if is_git_path(path) or any(part in SKIPPED_DIRS for part in path.split("/")[:-1]):
            skipped.append(path)
            continue
        files.append(_listed_file(sib, path, where))
    _check_no_clash([f.path for f in files], where)
    if not files:  # said here, of the revision: the folder it would be downloaded into is a private detail
        raise SourceError(f"{where}: the revision (commit {commit}) has no files to archive")
    return HubListing(commit, tuple(files), tuple(skipped))


def is_commit(revision: str) -> bool:
    """Whether ``revision`` names a commit (40 hex digits) rather than a branch or tag."""
    return _HEX40_ANY_CASE.fullmatch(revision) is not None


def _listed_file(sib: dict[str, Any], path: str, where: str) -> HubFile:
    shown = f"{where}: listed file '{printable_path(path)}'"
    size = sib.get("size")
    if type(size) is not int or not 0 <= size <= MAX_HUB_FILE_BYTES:
        raise SourceError(
            f"{shown} has size {printable_path(size)}, not an integer from 0 to {MAX_HUB_FILE_BYTES}"
        )
    blob_id = sib.get("blobId")
    if blob_id is not None and (not isinstance(blob_id, str) or not _HEX40.fullmatch(blob_id)):
        raise SourceError(f"{shown} has blob id {printable_path(blob_id)}, not 40 lowercase hex digits")
    lfs = sib.get("lfs")
    sha256 = None
    if lfs is not None:
        if not isinstance(lfs, dict):
            raise SourceError(f"{shown} has malformed LFS details")
        sha256 = lfs.get("sha256")
        if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
            raise SourceError(f"{shown} has LFS sha256 {printable_path(sha256)}, not 64 lowercase hex digits")
        if "size" in lfs and lfs["size"] != size:
            raise SourceError(f"{shown} has LFS size {printable_path(lfs['size'])}, not its size {size}")
    if sha256 is None and blob_id is None:
        raise SourceError(f"{shown} has neither an LFS sha256 nor a blob id to check it against")
    return HubFile(path, size, sha256, None if sha256 else blob_id)


def _check_no_clash(paths: list[str], where: str) -> None:
    clash = path_clash(paths)
    if clash is not None and clash[1] is None:
        raise SourceError(f"{where}: the endpoint's listing names a file twice")
    if clash is not None:
        raise SourceError(
            f"{where}: listed file '{printable_path(clash[0])}' lies inside another listed file"
        )


# ------------------------------------------------------------------------------------------------------ online
def _private_folder() -> Path:
    """A fresh 0700 folder beside the Hugging Face cache (the disk a Hub download is expected to use, and where the
    verified files are moved into the cache without a copy), or in the system temp dir if that cannot be made."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".modelarc-import-", dir=root))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="modelarc-hf-import-"))


def is_loopback_http(endpoint: str) -> bool:
    """Whether ``endpoint`` is plain http to this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    import httpx

    url = httpx.URL(endpoint)
    if url.scheme != "http":
        return False
    if url.host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(url.host).is_loopback
    except ValueError:
        return False


def may_carry_token(endpoint: str) -> bool:
    """The token may go to an https endpoint, or to an http one on this machine: over plain http to any other host,
    anyone on the path could read it and use it as the user on the Hub."""
    return endpoint.lower().startswith("https://") or is_loopback_http(endpoint)


def _headers(endpoint: str) -> tuple[dict[str, str], bool]:
    """(the headers of every request: a user agent, and the user's token where ``may_carry_token`` allows, as gated
    repos need it; whether a configured token was withheld). The token goes to the endpoint only: httpx drops it on a
    redirect to another origin (scheme, host or port), except http -> https on the same host
    (tests/cli/test_cli_hf_token.py holds both rules).

    Not huggingface_hub's ``build_hf_headers``: to name the user's AI agent in its user agent it fetched
    ``{HF_ENDPOINT}/api/agent-harnesses`` (an unbounded answer from the untrusted endpoint, cached in HF_HOME) and
    matched the environment variables that answer named; and its token lookup, for a browser login near expiry,
    posts the refresh token to ``{HF_ENDPOINT}/oauth/token`` (``_configured_token`` reads it without a request).
    """
    import platform

    from huggingface_hub import __version__ as hf_version
    from huggingface_hub import constants as hf_constants

    from modelarc import __version__

    headers = {
        "user-agent": f"modelarc/{__version__}; hf_hub/{hf_version}; python/{platform.python_version()}",
        "Accept-Encoding": "identity",
    }
    token = _configured_token(hf_constants)
    if not may_carry_token(endpoint):
        return headers, token is not None
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers, False


MAX_TOKEN_FILE = 4096  # a Hugging Face token is ~40 characters


def _configured_token(hf_constants: Any) -> str | None:
    """The user's Hugging Face token as configured (HF_TOKEN, HUGGING_FACE_HUB_TOKEN, else the token file of
    `hf auth login`), or None; none at all with HF_HUB_DISABLE_IMPLICIT_TOKEN. Read here, with no request:
    huggingface_hub's lookup may post a browser login's refresh token, or exchange an OIDC token, at
    ``{HF_ENDPOINT}/oauth/token`` (the untrusted endpoint, with no deadline), and store the answer as the token."""
    # the environment as it is now (huggingface_hub's constants were fixed when it was first imported)
    if os.environ.get("HF_HUB_DISABLE_IMPLICIT_TOKEN", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return None
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if value := os.environ.get(name, "").strip():
            return value
    hf_home = os.environ.get("HF_HOME") or hf_constants.HF_HOME
    token_path = os.environ.get("HF_TOKEN_PATH") or os.path.join(os.path.expanduser(hf_home), "token")
    try:
        with open(token_path, "rb") as fh:
            text = fh.read(MAX_TOKEN_FILE + 1)
    except OSError:
        return None
    token = text.decode("utf-8", "replace").strip() if len(text) <= MAX_TOKEN_FILE else ""
    return token if token and token.isprintable() else None


def _error_for(response: Any, what: str, where: str, repo: str, revision: str, endpoint: str) -> SourceError:
    code = response.headers.get("X-Error-Code", "")
    if code == "RepoNotFound":
        return SourceError(f"no repository {repo} on {endpoint}")
    if code == "RevisionNotFound":
        return SourceError(f"no revision {revision!r} in {repo} on {endpoint}")
    if response.status_code in (401, 403):
        if not may_carry_token(endpoint):
            return SourceError(
                f"{where}: {what} refused (HTTP {response.status_code}); a token is never sent over plain http "
                "to another machine: use an https:// HF_ENDPOINT"
            )
        return SourceError(
            f"{where}: {what} refused (HTTP {response.status_code}; a gated or private repo needs HF_TOKEN)"
        )
    return SourceError(f"{where}: {what} failed (HTTP {response.status_code})")


def _read_listing(
    client: Any, endpoint: str, repo: str, revision: str, where: str, budget: Budget, stopper: Stopper
) -> Any:
    """The listing's JSON, within ``budget``: the timeout plus what has arrived so far at the minimum rate (its size is
    not known before), so headers or a body trickled a byte a second end at the timeout, not after 64 MiB."""
    import json

    url = f"{endpoint}/api/models/{repo}/revision/{quote(revision, safe='')}"
    late = SourceError(
        f"{where}: the listing ({printable_path(url)}) was not received within {budget.timeout:g} s plus its size at "
        f"{budget.min_rate:g} bytes/s (MODELARC_REMOTE_TIMEOUT, MODELARC_REMOTE_MIN_RATE)"
    )
    body = bytearray()
    with (
        Deadline(stopper, budget.timeout, late) as deadline,
        client.stream("GET", url, params={"blobs": "true"}, extensions={"trace": stopper.trace}) as response,
    ):
        if response.status_code != 200:
            raise _error_for(response, "the listing", where, repo, revision, endpoint)
        # each network read as it arrives: with a chunk size, httpx gathered 1 MiB before the deadline moved
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > MAX_LISTING_BYTES:
                raise SourceError(f"{where}: the endpoint's listing is larger than {MAX_LISTING_BYTES} bytes")
            deadline.at += len(chunk) / budget.min_rate
    try:
        return json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise SourceError(f"{where}: the endpoint's listing is not JSON") from None


@dataclass(frozen=True)
class Transfer:
    """How an online fetch runs: ``jobs`` downloads at once; ``progress`` (called from the download threads) and
    ``on_total`` for a progress bar; ``warn`` for a line the user should see; ``store`` the local store's folder
    (None for S3), which must have room for the files too."""

    jobs: int = DEFAULT_JOBS
    progress: Callable[[int], None] | None = None
    on_total: Callable[[int], None] | None = None
    warn: Callable[[str], None] | None = None
    store: Path | None = None


def _fetch_online(
    endpoint: str, repo: str, revision: str, folder: Path, where: str, transfer: Transfer
) -> HubListing:
    import httpx

    from modelarc.config import remote_timeouts

    timeout, min_rate = remote_timeouts()
    headers, withheld = _headers(endpoint)
    if withheld and transfer.warn:
        transfer.warn(
            f"{endpoint} is plain http to another machine: your Hugging Face token is not sent to it"
        )
    # a loopback endpoint is reached directly, never through a proxy from the environment (HTTP_PROXY), which
    # would receive the token in the clear
    mounts = (
        {f"http://{httpx.URL(endpoint).netloc.decode()}": httpx.HTTPTransport()}
        if is_loopback_http(endpoint)
        else None
    )
    stopper = Stopper()
    with httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=True,
        mounts=mounts,
    ) as client:
        budget = Budget(timeout, min_rate)
        listing = parse_listing(
            _read_listing(client, endpoint, repo, revision, where, budget, stopper), where, revision
        )
        total = sum(f.size for f in listing.files)
        _check_room(total, folder, transfer.store, where)
        if transfer.on_total:
            transfer.on_total(total)
        work = [
            (f"{endpoint}/{repo}/resolve/{listing.commit}/{quote(f.path)}", f, folder / f.path)
            for f in listing.files
        ]
        download_all(
            client,
            work,
            where,
            budget,
            transfer.jobs,
            transfer.progress,
            stopper,
        )
    return listing


def _check_room(total: int, folder: Path, store: Path | None, where: str) -> None:
    """Refuse, before a byte is downloaded, a revision the disks cannot hold: the private folder needs the listing's
    total size, and a local store as much again (an upper bound: compression and deduplication only shrink what it
    writes), each plus ``MODELARC_DISK_RESERVE``; on one disk the two add up, as both copies are there until the push
    ends. Without it a disk filled half-way through a large model, after the time spent downloading it."""
    from modelarc.config import disk_reserve

    reserve = disk_reserve()
    disks: dict[int, tuple[Path, int, list[str]]] = {}
    # the private folder's parent is named: the folder itself is gone once the command ends
    for place, what in ((folder.parent, "the download"), (store, "the store's copy")):
        if place is None:
            continue
        try:
            device = os.stat(place).st_dev
        except OSError:  # a store folder that is not there fails later, with its own message
            continue
        first, need, whats = disks.get(device, (place, 0, []))
        disks[device] = (first, need + total, [*whats, what])
    for place, need, whats in disks.values():
        free = shutil.disk_usage(place).free
        if free < need + reserve:
            raise DiskFullError(
                f"{where}: not enough free space: {human_bytes(need)} for {' and '.join(whats)} plus "
                f"{human_bytes(reserve)} kept free (MODELARC_DISK_RESERVE), but {place} has {human_bytes(free)} free"
            )


def _publish(repo: str, revision: str, listing: HubListing, folder: Path) -> None:
    """Move the verified files into the Hugging Face cache in its layout (``blobs/<hash>``, ``snapshots/<commit>/<path>``
    a relative link to it, ``refs/<revision>``), each name made from a verified hash or a checked path. A cache that
    cannot be written (read-only, a link where a folder should be) only costs a later offline import its files."""
    repo_dir = _repo_cache(repo)
    blobs = repo_dir / "blobs"
    snapshot = repo_dir / "snapshots" / listing.commit
    try:
        for sub in (blobs, snapshot, repo_dir / "refs"):
            _real_folder(repo_dir, sub)
        for file in listing.files:
            link = snapshot / file.path
            if not _real_folder(repo_dir, link.parent):
                continue
            blob = blobs / file.digest
            os.replace(folder / file.path, blob)
            _replace_atomically(link, functools.partial(os.symlink, os.path.relpath(blob, link.parent)))
        if revision != listing.commit and not is_commit(revision):  # a commit is a snapshot name, never a ref
            ref = repo_dir / "refs" / revision
            if _real_folder(repo_dir, ref.parent):
                _replace_atomically(ref, functools.partial(Path.write_text, data=listing.commit))
    except OSError:
        pass


def _real_folder(repo_dir: Path, folder: Path) -> bool:
    """Make ``folder`` (inside ``repo_dir``) and say whether every part of it below ``repo_dir`` is a real folder,
    not a link that would take a write elsewhere."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    if repo_dir.is_symlink():
        return False
    here = repo_dir
    for part in folder.relative_to(repo_dir).parts:
        here = here / part
        if here.is_symlink():
            return False
        here.mkdir(exist_ok=True)
    return True


def _replace_atomically(target: Path, make: Callable[[Path], object]) -> None:
    tmp = target.with_name(f".{target.name}.modelarc-{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    make(tmp)
    os.replace(tmp, target)


# ------------------------------------------------------------------------------------------------------ offline
def _fetch_offline(
    repo: str, revision: str, folder: Path, where: str, store: Path | None
) -> tuple[str, dict[str, str], list[str]]:
    """(commit, hashes by path, skipped .git paths) of the cached revision, copied into ``folder``; only a file that
    is a link into this repo's ``blobs/`` folder, to a blob named by a hash its bytes match, is taken. Every file is
    found first, so that a revision the disks cannot hold is refused (``_check_room``) before a byte is copied."""
    missing = SourceError(
        f"{where}: not in the local cache and downloads are off (HF_HUB_OFFLINE) or the endpoint is unreachable"
    )
    repo_dir = _repo_cache(repo)
    if _HEX40.fullmatch(revision):
        commit = revision
    else:
        ref = repo_dir / "refs" / revision
        try:
            with open(ref, "rb") as fh:
                commit = fh.read(100).decode("ascii", "replace").strip()
        except OSError:
            raise missing from None
        if not _HEX40.fullmatch(commit):
            raise SourceError(f"{where}: the cache's ref {printable_path(str(ref))} names no commit")
    snapshot = repo_dir / "snapshots" / commit
    if snapshot.is_symlink() or not snapshot.is_dir():
        raise missing
    blobs = os.path.realpath(repo_dir / "blobs")
    found: list[tuple[str, Path]] = []
    skipped: list[str] = []
    for base, dirs, names in os.walk(snapshot):
        for name in sorted(dirs + names):
            entry = Path(base) / name
            rel = entry.relative_to(snapshot).as_posix()
            if is_git_path(rel):
                skipped.append(rel)
                continue
            if name in dirs and not entry.is_symlink():
                continue
            if path_problem(rel) is not None or is_partial_name(name) or len(found) >= MAX_FILES_PER_SNAPSHOT:
                raise SourceError(f"{where}: the cached file '{printable_path(rel)}' cannot be archived")
            found.append((rel, entry))
        dirs[:] = [d for d in dirs if not is_git_path((Path(base) / d).relative_to(snapshot).as_posix())]
    if not found:
        raise SourceError(f"{where}: the cached revision (commit {commit}) has no files to archive")
    _check_room(sum(_cached_size(entry) for _rel, entry in found), folder, store, where)
    hashes = {
        rel: _copy_blob(entry, blobs, folder / rel, f"{where}: the cached file '{printable_path(rel)}'")
        for rel, entry in found
    }
    return commit, hashes, skipped


def _cached_size(entry: Path) -> int:
    """The size of the blob a cached file links to (0 when it is not there: ``_copy_blob`` then says why)."""
    try:
        return os.stat(entry).st_size
    except OSError:
        return 0


def _copy_blob(entry: Path, blobs: str, dest: Path, shown: str) -> str:
    if not entry.is_symlink():
        raise SourceError(f"{shown} is not a link into the cache's blobs folder")
    real = os.path.realpath(entry)
    name = os.path.basename(real)
    if os.path.dirname(real) != blobs or not (_HEX40.fullmatch(name) or _HEX64.fullmatch(name)):
        raise SourceError(
            f"{shown} links outside the cache's blobs folder, or to a blob not named by its hash"
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(real, flags)
    with open(fd, "rb") as src:
        info = os.fstat(fd)
        size = info.st_size
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(f"{shown} is not a regular file in the cache")
        digest = hashlib.sha256() if len(name) == 64 else git_blob_sha1(size)
        dest.parent.mkdir(parents=True, exist_ok=True)
        copied = 0
        with open(dest, "xb") as out:
            while chunk := src.read(_CHUNK):
                copied += len(chunk)
                digest.update(chunk)
                out.write(chunk)
    if copied != size or digest.hexdigest() != name:
        raise SourceError(f"{shown}: its bytes do not hash to its blob name {name}")
    return name


# ------------------------------------------------------------------------------------------------------ entry
@contextmanager
def fetch(
    repo: str, revision: str, endpoint: str, *, offline: bool, transfer: Transfer | None = None
) -> Iterator[Fetched]:
    """The verified files of ``repo`` at ``revision``, in a private folder that is removed when the block ends
    (whatever happens, and only once every download thread has ended). Online, a block that ends without an
    exception also fills the Hugging Face cache."""
    import httpx

    where = f"{repo}@{revision} on {endpoint}"
    folder = _private_folder()
    try:
        try:
            if offline:
                store = transfer.store if transfer is not None else None
                commit, hashes, skipped = _fetch_offline(repo, revision, folder, where, store)
                listing = None
            else:
                listing = _fetch_online(endpoint, repo, revision, folder, where, transfer or Transfer())
                commit, hashes, skipped = (
                    listing.commit,
                    {f.path: f.digest for f in listing.files},
                    list(listing.skipped),
                )
        except httpx.TimeoutException as exc:
            raise SourceError(
                f"{where}: the endpoint did not answer in time ({type(exc).__name__})"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise SourceError(
                f"{where}: download failed ({type(exc).__name__}: {printable_path(str(exc).splitlines()[0] if str(exc) else '')})"
            ) from None
        except OSError as exc:
            raise SourceError(f"{where}: download failed ({exc.strerror or type(exc).__name__})") from None
        yield Fetched(folder, commit, hashes, tuple(skipped), offline)
        if listing is not None:
            _publish(repo, revision, listing, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
