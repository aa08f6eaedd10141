"""Conditional requests (RFC 9110 section 13): ``If-None-Match``, ``If-Match`` and ``If-Range`` against an ETag.

One reading of the headers for every route that answers with an ETag: the /v1 catalog (304 on If-None-Match) and the
Hub file route, where a tag can move, so the same URL can name other bytes tomorrow. There ``If-Range`` matters most:
a client resuming a download with a stale validator must get the whole new file (200), never the rest of the new
file spliced onto the start of the old one (206). Dates (``If-Modified-Since`` and the like) are not validators here:
no route sends ``Last-Modified``, so an ``If-Range`` date never matches and the whole file is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class Precondition(Enum):
    """What the validators of a GET or HEAD ask for, evaluated in the order of RFC 9110 13.2.2."""

    PROCEED = 200
    NOT_MODIFIED = 304
    FAILED = 412


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def weak_match(header: str, etag: str) -> bool:
    """``If-None-Match``: the weak comparison (``W/"x"`` matches ``"x"``), or ``*`` (the resource exists)."""
    return any(t == "*" or t.removeprefix("W/") == etag.removeprefix("W/") for t in _tags(header))


def strong_match(header: str, etag: str) -> bool:
    """``If-Match``: the strong comparison (a weak tag on either side never matches), or ``*``."""
    if etag.startswith("W/"):
        return False
    return any(t == "*" or t == etag for t in _tags(header))


def precondition(headers: Mapping[str, str], etag: str) -> Precondition:
    """For a GET or HEAD of an existing resource whose current ETag is ``etag`` (quoted, as sent).

    ``If-Match`` that names no current tag is 412; then ``If-None-Match`` that names it (or ``*``) is 304.
    """
    if_match = headers.get("if-match")
    if if_match is not None and not strong_match(if_match, etag):
        return Precondition.FAILED
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and weak_match(if_none_match, etag):
        return Precondition.NOT_MODIFIED
    return Precondition.PROCEED


def range_applies(headers: Mapping[str, str], etag: str) -> bool:
    """Whether a ``Range`` header may be honoured: yes without ``If-Range``; with it, only when it is exactly the
    current strong ETag (RFC 9110 13.1.5). A date, a weak tag or another tag means "send the whole file"."""
    if_range = headers.get("if-range")
    if if_range is None:
        return True
    value = if_range.strip()
    return not etag.startswith("W/") and value == etag
