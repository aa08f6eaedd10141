"""What a request may carry: every parameter has a bounded type and every body a size limit, checked before parsing.

One unbounded value is enough to make one anonymous request cost seconds of CPU and gigabytes of memory (a 200 MB
object id), or a 500 (a 5000-digit page number that Python refuses to convert, a parameter count beyond the catalog's
64-bit integers). The bounds below are declared in the OpenAPI document, so clients and the schemathesis tests see
them too; docs/API.md ("Limits") lists them with their reasons.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Path, Query, Request
from starlette.convertors import PathConvertor, register_url_convertor

from modelarc.api.receiving import body_memory
from modelarc.errors import PayloadTooLargeError, UnsupportedMediaTypeError, UsageError
from modelarc.registry.bounds import CATALOG_INT_MAX, catalog_value_problem

MAX_INT = CATALOG_INT_MAX  # the catalog's integers are signed 64-bit (SQLite INTEGER, PostgreSQL BIGINT)
MAX_TEXT = 300  # a free-text filter or a REF: ns and name are at most 100 characters, a tag 128
MAX_PAGE = 100_000  # HTML catalog pages of 50 rows: five million rows deep is further than anyone pages

# The REF grammar of registry/refs.py, so a malformed name is refused by the schema (400) before any lookup.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
REV_PATTERN = r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|sha256:[0-9a-f]{4,64})$"
DATE_PATTERN = r"^(?:[0-9]{4}(?:-[0-9]{2}(?:-[0-9]{2})?)?)?$"  # empty: no filter, as in the HTML form
COUNT_PATTERN = (
    r"^(?: *[0-9]{1,19}(?:\.[0-9]{1,9})? *[kKmMbBtT]? *)?$"  # parse_count's grammar, bounded; empty too
)
OBJECT_ID_PATTERN = r"^[0-9a-f]{64}$"
# free text may hold anything but NUL, which no database text column stores (PostgreSQL refuses it: a 500, not a 400).
# Declared on /v1's parameters for the OpenAPI document; every request's path and query are held to it by the app's
# middleware (``url_text_problem``), every JSON body by ``read_json``.
TEXT_PATTERN = r"^[^\x00]*$"
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")

Text = Annotated[str | None, Query(max_length=MAX_TEXT, pattern=TEXT_PATTERN)]
Date = Annotated[
    str | None, Query(max_length=10, pattern=DATE_PATTERN, description="YYYY, YYYY-MM or YYYY-MM-DD.")
]
Count = Annotated[
    str | None,
    Query(max_length=40, pattern=COUNT_PATTERN, description=f"e.g. 135M, 7B or 1500000; at most {MAX_INT}."),
]
Namespace = Annotated[str, Path(max_length=100, pattern=NAME_PATTERN, description="A namespace, e.g. acme.")]
Name = Annotated[str, Path(max_length=100, pattern=NAME_PATTERN, description="A model name.")]
Revision = Annotated[
    str, Path(max_length=135, pattern=REV_PATTERN, description="A tag or sha256:<hex or unique prefix>.")
]
# NUL: refused by the app's middleware for every path (a pattern here defeats the fuzzer)
PathText = Annotated[str, Path(max_length=MAX_TEXT)]
ObjectIdText = Annotated[
    str, Path(min_length=64, max_length=64, pattern=OBJECT_ID_PATTERN, description="64 lowercase hex digits.")
]


class AnyTextConvertor(PathConvertor):
    """A path parameter that matches any text, slashes and line breaks included (starlette's ``path`` stops at a
    line break): such a request reaches its route, whose declared bound refuses it with a 400, instead of matching
    no route at all (a 404 that says nothing about what was wrong)."""

    regex = r"[\s\S]*"


register_url_convertor("anytext", AnyTextConvertor())  # routes write {name:anytext}


def require_json(request: Request) -> None:
    """A JSON route reads only a JSON body: ``application/json`` or a ``+json`` type, parameters allowed (415).

    So a plain HTML form (``text/plain``, ``application/x-www-form-urlencoded``) can never post to it.
    """
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaTypeError(
            f"send the body as application/json, not {media[:80] or 'without a Content-Type'}"
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before one byte of the body is read; a chunked body is read
    only up to the limit. Either way the server holds at most ``limit`` bytes of it, counted while it is read in the
    process's memory for request bodies (503 when that is full), and a client that stops sending is answered 408
    (api/receiving.py).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _CONTENT_LENGTH.fullmatch(declared):
            raise UsageError("Content-Length is not a number of bytes")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"the body may be at most {limit} bytes; this one declares {declared}")
    async with body_memory(request, limit if declared is None else int(declared)):
        body = bytearray()
        async for block in request.stream():
            body += block
            if len(body) > limit:
                raise PayloadTooLargeError(f"the body may be at most {limit} bytes")
        return bytes(body)


# A Host header as browsers and HTTP clients send it: a DNS name or IPv4 address, or a bracketed IPv6 address, and
# an optional port. Starlette builds the URLs this server hands out from it (``Link: <...>; rel="next"``, the 307 of
# a trailing slash), and h11 lets any visible character through: ``>`` ``;`` ``"`` or a space in it would end the
# URL inside the Link header and add a ``rel`` or a target of the sender's choosing (docs/SECURITY.md).
HOST_VALUE = re.compile(r"(?:[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def host_problem(request: Request) -> str | None:
    """Why this request's Host header cannot name this server in a URL, or ``None`` (none at all is fine: an
    HTTP/1.0 request, answered with the address it came to)."""
    hosts = [value for name, value in request.scope.get("headers", ()) if name == b"host"]
    if not hosts:
        return None
    if len(hosts) > 1:
        return "the request has more than one Host header"
    if HOST_VALUE.fullmatch(hosts[0].decode("latin-1")) is None:
        return "the Host header is not a host name or address with an optional port"
    return None


def url_text_problem(request: Request) -> str | None:
    """Why text in this request's path or query string cannot reach a query or a row (a NUL), or ``None``.

    Checked once for every route, by the app's middleware, on the decoded path and every decoded query name and
    value: the HTML form, the Hub's list filters and path parameters reach the catalog as well as /v1's do.
    """
    if "\x00" in request.scope.get("path", ""):
        return "the path holds a NUL character (%00), which no name here may contain"
    if any("\x00" in key or "\x00" in value for key, value in request.query_params.multi_items()):
        return "the query string holds a NUL character (%00), which no text here may contain"
    return None


async def read_json(request: Request, limit: int, expected: str) -> Any:
    """The request's JSON body, read to at most ``limit`` bytes (413) and parsed: ``UsageError`` (400) when it is not
    JSON, or holds what no catalog column can (a NUL or a lone UTF-16 surrogate in any string, NaN or Infinity),
    wherever it may be stored."""
    try:
        doc = json.loads(await read_body(request, limit))
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper than the parser's stack
        raise UsageError(f"the body is not JSON; expected {expected}") from None
    if (problem := catalog_value_problem(doc)) is not None:
        raise UsageError(f"the body holds {problem}, which no text here may contain")
    return doc
