"""Where a store lives: a folder path, or ``s3://BUCKET/PREFIX`` on any S3-compatible service.

``open_backend`` is the one place that turns a location string into a backend. An S3 location imports
``storage/s3.py`` (and so boto3) only when it is opened: a local store never loads the AWS SDK, which costs a CLI
command a noticeable part of its start-up. The endpoint, region and credentials of an S3 store never appear in the
URL: they come from the standard AWS sources (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws/...``), so a URL can
be logged and shared without leaking anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from modelarc.errors import UsageError
from modelarc.storage.backend import Backend, key_parts

S3_SCHEME = "s3://"
# S3's rules for new buckets (3-63 characters; lowercase letters, digits, dots, hyphens; a letter or digit at
# both ends), which MinIO, Ceph RGW and R2 share. Older us-east-1 buckets may break them; those are not supported.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class S3Location(NamedTuple):
    bucket: str
    prefix: str  # "" for the bucket's root, else slash-separated without leading or trailing slash

    def url(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{self.bucket}"


def is_s3_url(location: str) -> bool:
    return location[: len(S3_SCHEME)].lower() == S3_SCHEME


def check_bucket_name(bucket: str) -> str:
    """``bucket`` if S3 would accept it as a bucket name, else a ``UsageError`` saying what is wrong."""
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP_ADDRESS.fullmatch(bucket):
        raise UsageError(
            f"invalid S3 bucket name {bucket!r}: 3-63 lowercase letters, digits, dots or hyphens, "
            "starting and ending with a letter or digit"
        )
    return bucket


def check_prefix(prefix: str) -> str:
    """The prefix without surrounding slashes; ``UsageError`` for empty, ``.`` or ``..`` segments."""
    inner = prefix.strip("/")
    if inner:
        try:
            key_parts(inner)
        except UsageError:
            raise UsageError(
                f"invalid S3 prefix {prefix!r}: no empty, '.' or '..' segments between slashes"
            ) from None
    return inner


def parse_s3_url(url: str) -> S3Location:
    """``s3://BUCKET`` or ``s3://BUCKET/PREFIX`` as its parts; ``UsageError`` for anything malformed.

    >>> parse_s3_url("s3://models/team-a/")
    S3Location(bucket='models', prefix='team-a')
    """
    if not is_s3_url(url):
        raise UsageError(f"not an S3 URL: {url!r} (expected s3://BUCKET/PREFIX)")
    rest = url[len(S3_SCHEME) :]
    if "?" in rest or "#" in rest:
        raise UsageError("an S3 store URL takes no query or fragment: s3://BUCKET/PREFIX")
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket:
        # never echo this part: it may hold an access key and secret
        raise UsageError(
            "an S3 store URL holds no credentials: use AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or ~/.aws/credentials"
        )
    if not bucket:
        raise UsageError(f"S3 URL {url!r} names no bucket: s3://BUCKET/PREFIX")
    if ":" in bucket:
        raise UsageError(
            f"S3 URL {url!r} has a port: an S3 store URL names a bucket, not a server; "
            "set the endpoint with AWS_ENDPOINT_URL"
        )
    return S3Location(check_bucket_name(bucket), check_prefix(prefix))


def check_location(location: str | Path) -> str | Path:
    """``location`` if it is ``s3://BUCKET/PREFIX`` or a folder path; ``UsageError`` for an empty one or any other
    ``scheme://`` (a folder named ``garbage:`` is never what ``garbage://x`` meant)."""
    if isinstance(location, str):
        if not location:
            raise UsageError("empty store location: use a folder path or s3://BUCKET/PREFIX")
        if is_s3_url(location):
            parse_s3_url(location)
        elif _SCHEME.match(location):
            scheme = location.split("://", 1)[0]
            raise UsageError(
                f"unsupported store URL scheme {scheme!r}: use a folder path or s3://BUCKET/PREFIX"
            )
    return location


def open_backend(location: str | Path, *, create: bool = True) -> Backend:
    """The backend for a store location: ``s3://BUCKET/PREFIX`` or a folder path.

    A missing folder is created only with ``create`` (``modelarc init``, ``mirror add``); without it a missing
    folder is a ``StoreAccessError``, so opening an archive never leaves an empty store behind.

    >>> open_backend("s3://models/prod")  # doctest: +SKIP
    S3Backend('s3://models/prod')
    """
    check_location(location)
    if isinstance(location, str) and is_s3_url(location):
        parsed = parse_s3_url(location)
        from modelarc.storage.s3 import S3Backend  # boto3 only for S3 stores

        return S3Backend(parsed.bucket, parsed.prefix)
    from modelarc.storage.local import LocalBackend

    return LocalBackend(Path(location), create=create)


def is_local_location(location: str | Path) -> bool:
    return not (isinstance(location, str) and is_s3_url(location))


def canonical_location(location: str | Path) -> str:
    """One spelling per store, so "is this the store the home already uses?" compares like with like:
    ``s3://BUCKET/PREFIX`` without trailing slashes, or an absolute folder path. ``UsageError`` for a location
    ``open_backend`` would refuse."""
    check_location(location)
    if isinstance(location, str) and is_s3_url(location):
        return parse_s3_url(location).url()
    return str(Path(location).expanduser().absolute())


def location_within(inner: str | Path, outer: str | Path) -> bool:
    """Whether the store at ``inner`` lies at or below the one at ``outer``: for folders after resolving symlinks
    (two spellings of one folder are one place), for S3 in the same bucket under the same prefix segments."""
    inner_s3 = isinstance(inner, str) and is_s3_url(inner)
    outer_s3 = isinstance(outer, str) and is_s3_url(outer)
    if inner_s3 != outer_s3:
        return False
    if isinstance(inner, str) and isinstance(outer, str) and inner_s3:
        a, b = parse_s3_url(inner), parse_s3_url(outer)
        outer_parts = b.prefix.split("/") if b.prefix else []
        inner_parts = a.prefix.split("/") if a.prefix else []
        return a.bucket == b.bucket and inner_parts[: len(outer_parts)] == outer_parts
    return _resolved(inner).is_relative_to(_resolved(outer))


def _resolved(location: str | Path) -> Path:
    """The folder with its symlinks resolved; a loop of links (RuntimeError on Python < 3.13, OSError ELOOP after)
    is the user's one-line error, not a traceback."""
    path = Path(location).expanduser()
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        raise UsageError(f"cannot follow the links of {path}: {getattr(exc, 'strerror', None) or exc}") from None
