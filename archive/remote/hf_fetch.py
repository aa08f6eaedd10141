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
standard layout, under names that are verified hashes only, with the revision's verified listing beside it
(archive/remote/hf_cache.py), so that ``HF_HUB_OFFLINE=1`` can import from it later: an offline import takes a
revision only whole (every listed file present, a link to the blob its listing names, whose bytes hash to that name),
and a revision the cache holds without such a listing (huggingface_hub fetches file by file) only with
``--allow-partial``, recorded as possibly partial (docs/SECURITY.md, "Hub imports").
"""

from __future__ import annotations

import errno
import functools
import hashlib
import ipaddress
import json
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
from modelarc.archive.remote.hf_cache import (
    LISTING_FORMAT,
    LISTING_VERSION,
    NotRegularFileError,
    cache_root,
    listing_path,
    read_cache_file,
    real_folder,
    replace_atomically,
    repo_cache,
    write_new_file,
)
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
MAX_ENDPOINT_CHARS = 2048  # an endpoint a cached listing names becomes a source URL shown by `show`


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
    # None for the whole revision; else what these files are of it (an offline import with --allow-partial)
    partial: str | None = None
    # where the bytes came from: online, the endpoint; offline, the endpoint modelarc's listing in the cache names
    # (the online import that filled it wrote it there), None when that is not known (a cache huggingface_hub filled,
    # or a listing written before listings named it): a cached blob's hash proves its bytes, not their origin
    endpoint: str | None = None


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
    try:  # without blocking: a FIFO there would hang the import (a token file may be a link: `hf auth` tools make one)
        text = read_cache_file(token_path, MAX_TOKEN_FILE, follow_link=True)
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


def _publish(
    repo: str,
    revision: str,
    listing: HubListing,
    folder: Path,
    warn: Callable[[str], None] | None,
    endpoint: str,
) -> None:
    """Move the verified files into the Hugging Face cache in its layout (``blobs/<hash>``, ``snapshots/<commit>/<path>``
    a relative link to it, ``refs/<revision>``), each name made from a verified hash or a checked path, and write the
    revision's verified listing beside them (hf_cache.py), which an offline import needs to know it has every file.

    The cache is a courtesy, the archive is the product: a file the cache cannot take (read-only, a link where a
    folder should be, a name its disk refuses) costs that file only, and one ``warn`` line says the cache is
    incomplete. The listing is written even then, so that an offline import names what the cache lacks and is
    refused, instead of archiving part of the revision as the whole. The listing names ``endpoint``, the one the
    files came from, which an offline import records as their source."""
    repo_dir = repo_cache(repo)
    snapshot = repo_dir / "snapshots" / listing.commit
    failed: list[tuple[str, OSError]] = []
    try:
        for sub in (repo_dir / "blobs", snapshot, repo_dir / "refs"):
            real_folder(repo_dir, sub)
    except OSError as exc:
        if warn:
            warn(
                f"the Hugging Face cache {repo_dir} was not written ({_why(exc)}); the archive has the revision"
            )
        return
    for file in listing.files:
        try:
            _publish_file(repo_dir, snapshot, file, folder)
        except OSError as exc:
            failed.append((f"'{printable_path(file.path)}'", exc))
    try:
        real_folder(repo_dir, listing_path(repo_dir, listing.commit).parent)
        replace_atomically(
            repo_dir,
            listing_path(repo_dir, listing.commit),
            functools.partial(write_new_file, data=_listing_json(listing, endpoint)),
        )
    except OSError as exc:
        failed.append(("its file listing", exc))
    if revision != listing.commit and not is_commit(revision):  # a commit is a snapshot name, never a ref
        ref = repo_dir / "refs" / revision
        try:
            real_folder(repo_dir, ref.parent)
            replace_atomically(repo_dir, ref, functools.partial(write_new_file, data=listing.commit.encode()))
        except OSError as exc:
            failed.append((f"refs/{revision}", exc))
    if failed and warn:
        what, first = failed[0]
        more = f" and {len(failed) - 1} more" if len(failed) > 1 else ""
        warn(
            f"the Hugging Face cache {repo_dir} lacks {what}{more} of commit {listing.commit} ({_why(first)}); the "
            "archive has the whole revision, but an offline import of it is refused until an online one fills the cache"
        )


def _publish_file(repo_dir: Path, snapshot: Path, file: HubFile, folder: Path) -> None:
    link = snapshot / file.path
    real_folder(repo_dir, link.parent)
    blob = repo_dir / "blobs" / file.digest
    try:
        os.replace(folder / file.path, blob)
    except OSError as exc:  # the private folder is in the system temp dir when none could be made beside the cache
        if exc.errno != errno.EXDEV:
            raise
        replace_atomically(repo_dir, blob, functools.partial(shutil.copyfile, folder / file.path))
    replace_atomically(repo_dir, link, functools.partial(os.symlink, os.path.relpath(blob, link.parent)))


def _listing_json(listing: HubListing, endpoint: str) -> bytes:
    """The listing as modelarc keeps it in the cache (docs/FORMAT.md, "Hugging Face cache listing"): the shape of the
    Hub's own ``model_info`` JSON, read back by ``parse_listing`` with every check an endpoint's listing gets, plus
    the ``endpoint`` it came from (never read from an endpoint's own answer: only from a listing modelarc wrote)."""
    siblings: list[dict[str, Any]] = [
        {"rfilename": f.path, "size": f.size}
        | ({"lfs": {"sha256": f.sha256, "size": f.size}} if f.sha256 else {"blobId": f.blob_id})
        for f in listing.files
    ]
    siblings += [{"rfilename": path} for path in listing.skipped]  # skipped again when read: no hash needed
    doc = {
        "format": LISTING_FORMAT,
        "version": LISTING_VERSION,
        "sha": listing.commit,
        # an endpoint with a path (a mirror under a prefix) is not one a reader takes: its origin is left unknown
        "endpoint": endpoint if _is_endpoint(endpoint) else None,
        "siblings": siblings,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


# ------------------------------------------------------------------------------------------------------ offline
def _fetch_offline(
    repo: str, revision: str, folder: Path, where: str, store: Path | None, allow_partial: bool
) -> tuple[str, dict[str, str], list[str], str | None, str | None]:
    """(commit, hashes by path, skipped paths, None or what part of the revision it is, the endpoint its listing
    names or None) of the cached revision, copied into ``folder``. Only the whole revision its listing (written by ``_publish``) names is taken: every listed
    file a link into this repo's ``blobs/`` folder, to the blob its listing names, whose bytes hash to that name. A
    cache without a listing (huggingface_hub's, filled file by file) or lacking files is taken only with
    ``allow_partial``, and said to be partial. Every file is found first, so that a revision the disks cannot hold
    is refused (``_check_room``) before a byte is copied."""
    missing = SourceError(
        f"{where}: not in the local cache and downloads are off (HF_HUB_OFFLINE) or the endpoint is unreachable"
    )
    repo_dir = repo_cache(repo)
    commit = revision.lower() if is_commit(revision) else _cached_ref(repo_dir, revision, where, missing)
    snapshot = repo_dir / "snapshots" / commit
    if snapshot.is_symlink() or not snapshot.is_dir():
        raise missing
    found, skipped = _cached_files(snapshot, where)
    listing, endpoint = _cached_listing(repo_dir, commit, where)
    if listing is not None:
        expected = {f.path: f.digest for f in listing.files}
        found, partial = _listed_part(found, listing, allow_partial, where)
        skipped = list(listing.skipped)
    elif allow_partial:
        expected = {}
        found = {rel: entry for rel, entry in found.items() if os.path.exists(entry)}  # its blob is there
        partial = f"the files a Hugging Face cache not written by modelarc held of Hub commit {commit}; it may lack others"
    else:
        raise SourceError(
            f"{where}: the cache holds commit {commit} without modelarc's listing of its files (huggingface_hub "
            "fills it file by file), so it may lack some: import it online, or pass --allow-partial to archive "
            "what it holds, recorded as possibly partial"
        )
    if not found:
        raise SourceError(f"{where}: the cached revision (commit {commit}) has no files to archive")
    blobs = os.path.realpath(repo_dir / "blobs")
    shown = {rel: f"{where}: the cached file '{printable_path(rel)}'" for rel in found}
    linked = {rel: _linked_blob(entry, blobs, shown[rel], expected.get(rel)) for rel, entry in found.items()}
    if listing is not None and (extra := [rel for rel in found if rel not in expected]):
        raise SourceError(
            f"{shown[extra[0]]} is not in the revision's listing "
            f"({printable_path(str(listing_path(repo_dir, commit)))})"
        )
    _check_room(sum(_cached_size(entry) for entry in found.values()), folder, store, where)
    hashes = {rel: _copy_blob(real, folder / rel, shown[rel]) for rel, real in linked.items()}
    return commit, hashes, skipped, partial, endpoint


def _listed_part(
    found: dict[str, Path], listing: HubListing, allow_partial: bool, where: str
) -> tuple[dict[str, Path], str | None]:
    """(the cached files to take, None or what part of the revision they are): every listed file must be there
    (a link to a blob that is there), unless ``allow_partial``."""
    absent = [f.path for f in listing.files if f.path not in found or not os.path.exists(found[f.path])]
    total = len(listing.files)
    if absent and not allow_partial:
        raise SourceError(
            f"{where}: the cache lacks {len(absent)} of the {total} files of commit {listing.commit} "
            f"({_some(absent)}); offline, a revision is imported only whole: import it online, or pass "
            "--allow-partial"
        )
    partial = None
    if absent:
        partial = (
            f"{total - len(absent)} of the {total} files of Hub commit {listing.commit}; the Hugging Face cache "
            f"lacked {_some(absent)}"
        )
    # .cache/ files are skipped as online (huggingface_hub may have fetched one; .git paths are never found)
    left_out = {*absent, *listing.skipped}
    return {rel: entry for rel, entry in found.items() if rel not in left_out}, partial


def _some(paths: list[str]) -> str:
    shown = ", ".join(f"'{printable_path(p)}'" for p in paths[:3])
    return shown + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _cached_ref(repo_dir: Path, revision: str, where: str, missing: SourceError) -> str:
    """The commit ``refs/<revision>`` names, read without blocking (a FIFO there hung the import) or following a link."""
    ref = repo_dir / "refs" / revision
    shown = f"{where}: the cache's ref {printable_path(str(ref))}"
    try:
        data = read_cache_file(ref, 100)
    except (FileNotFoundError, NotADirectoryError):
        raise missing from None
    except NotRegularFileError:
        raise SourceError(f"{shown} is not a regular file") from None
    except OSError as exc:
        raise SourceError(f"{shown} cannot be read ({_why(exc)})") from None
    commit = data.decode("ascii", "replace").strip()
    if not _HEX40.fullmatch(commit):
        raise SourceError(f"{shown} names no commit")
    return commit


def _cached_listing(repo_dir: Path, commit: str, where: str) -> tuple[HubListing | None, str | None]:
    """(the listing ``_publish`` wrote for ``commit``, checked as an endpoint's is, or None if there is none; the
    endpoint it names, or None: a listing written before listings named it)."""
    path = listing_path(repo_dir, commit)
    shown = f"{where}: the cache's listing {printable_path(str(path))}"
    try:
        data = read_cache_file(path, MAX_LISTING_BYTES)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise SourceError(f"{shown} cannot be read ({_why(exc)})") from None
    if len(data) > MAX_LISTING_BYTES:
        raise SourceError(f"{shown} is larger than {MAX_LISTING_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise SourceError(f"{shown} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != LISTING_FORMAT:
        raise SourceError(f"{shown} is not a modelarc listing")
    if doc.get("version") != LISTING_VERSION:
        raise SourceError(
            f"{shown} has version {printable_path(doc.get('version'))}; this modelarc reads version {LISTING_VERSION}"
        )
    endpoint = doc.get("endpoint")
    if endpoint is not None and not _is_endpoint(endpoint):
        raise SourceError(f"{shown} names endpoint '{printable_path(endpoint)}', not an http(s)://host[:port] URL")
    return parse_listing(doc, shown, commit), endpoint


def _is_endpoint(value: object) -> bool:
    """http(s)://host[:port] and nothing more: no path, query, fragment or user part. A listing's endpoint becomes
    the snapshot's source, ``ENDPOINT/org/name/tree/<commit>``; with a path or a ``?`` it could name another
    repository (``https://huggingface.co/other/repo/tree/main?``), and a cache is anyone's to write."""
    from urllib.parse import urlsplit

    from modelarc.archive.remote.config import is_http_url

    if not (isinstance(value, str) and len(value) <= MAX_ENDPOINT_CHARS and is_http_url(value)):
        return False
    parts = urlsplit(value)
    return "?" not in value and "#" not in value and "@" not in parts.netloc and parts.path in ("", "/")


def _cached_files(snapshot: Path, where: str) -> tuple[dict[str, Path], list[str]]:
    """(entry by relative path, skipped .git paths) of a cached snapshot folder: every file or link in it, a link to a
    folder included (``_copy_blob`` refuses it)."""
    found: dict[str, Path] = {}
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
            found[rel] = entry
        dirs[:] = [d for d in dirs if not is_git_path((Path(base) / d).relative_to(snapshot).as_posix())]
    return found, skipped


def _cached_size(entry: Path) -> int:
    """The size of the blob a cached file links to (0 when it is not there: ``_copy_blob`` then says why)."""
    try:
        return os.stat(entry).st_size
    except OSError:
        return 0


def _linked_blob(entry: Path, blobs: str, shown: str, expected: str | None) -> str:
    """The blob ``entry`` links to, refused unless it is in ``blobs``, named by a hash (``expected``, when the
    revision's listing names one)."""
    if not entry.is_symlink():
        raise SourceError(f"{shown} is not a link into the cache's blobs folder")
    real = os.path.realpath(entry)
    name = os.path.basename(real)
    if os.path.dirname(real) != blobs or not (_HEX40.fullmatch(name) or _HEX64.fullmatch(name)):
        raise SourceError(
            f"{shown} links outside the cache's blobs folder, or to a blob not named by its hash"
        )
    if expected is not None and name != expected:
        raise SourceError(
            f"{shown} links to blob {name}, not to {expected}, which the revision's listing names"
        )
    return real


def _copy_blob(real: str, dest: Path, shown: str) -> str:
    """Copy the blob ``real`` to ``dest``, refused unless its bytes hash to its name; its name."""
    name = os.path.basename(real)
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
    repo: str,
    revision: str,
    endpoint: str,
    *,
    offline: bool,
    transfer: Transfer | None = None,
    allow_partial: bool = False,
) -> Iterator[Fetched]:
    """The verified files of ``repo`` at ``revision``, in a private folder that is removed when the block ends
    (whatever happens, and only once every download thread has ended). Online, a block that ends without an
    exception also fills the Hugging Face cache. Offline, ``allow_partial`` takes what the cache holds of a revision
    it may not hold whole (``Fetched.partial`` says so); ``Fetched.endpoint`` is the endpoint the cache's listing
    names, or None when not known."""
    import httpx

    # offline, HF_ENDPOINT has nothing to do with it: the files are the cache's, from wherever they came
    where = f"{repo}@{revision} {'in the Hugging Face cache' if offline else f'on {endpoint}'}"
    transfer = transfer or Transfer()
    folder = _private_folder()
    partial = None
    origin: str | None = endpoint
    try:
        try:
            if offline:
                commit, hashes, skipped, partial, origin = _fetch_offline(
                    repo, revision, folder, where, transfer.store, allow_partial
                )
                listing = None
            else:
                listing = _fetch_online(endpoint, repo, revision, folder, where, transfer)
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
        yield Fetched(folder, commit, hashes, tuple(skipped), offline, partial, origin)
        if listing is not None:
            _publish(repo, revision, listing, folder, transfer.warn, endpoint)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
