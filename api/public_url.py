"""The URL clients reach this server at (``serve --public-url``, ``MODELARC_PUBLIC_URL``), used for every URL the
server hands out in place of what each request's Host header says.

Without it the server names itself as the request's Host (checked well-formed: api/limits.py ``host_problem``),
which is right for a client that reaches it directly. Behind a proxy that does not pass the public host on, that
name is the proxy's upstream name; and behind a shared cache that does not key its entries on Host, one client's
Host would end up in the ``Link: rel="next"`` and 307 ``Location`` answers other clients get. With a public URL the
request's Host is not read for URLs at all: the scope's scheme, server and Host header are set to the public URL's
before routing, so Starlette's URLs (``request.url``, the trailing-slash redirect) are built from it alone.

Only ``http(s)://HOST[:PORT]``: a path prefix would need every absolute path the pages and routes hand out to carry
it, which they do not (serve at the root of a host name, or proxy a host name to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import Scope

from modelarc.api.limits import HOST_VALUE
from modelarc.errors import UsageError

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHOWN = 80  # characters of a refused value the message repeats


@dataclass(frozen=True)
class PublicUrl:
    scheme: str
    netloc: str  # host[:port] as a Host header names it: the port only when it is not the scheme's default
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PublicUrl:
        """``UsageError`` (one line, the value clipped) for anything but ``http(s)://HOST[:PORT]`` and an optional
        trailing ``/``."""
        shown = repr(text[:_SHOWN])
        usage = f"give the URL clients reach this server at as http(s)://HOST[:PORT], not {shown}"
        candidate = text.strip().removesuffix("/")
        if not candidate or any(c in candidate for c in "?#@") or not candidate.isprintable():
            raise UsageError(usage + " (no path, query, user or control character)")
        try:
            parts = urlsplit(candidate)
            port = parts.port
        except ValueError:  # a port that is not a number or beyond 65535, an unclosed [
            raise UsageError(usage) from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise UsageError(usage)
        if parts.path:
            raise UsageError(usage + " (no path: serve at the root of a host name)")
        if port == 0 or HOST_VALUE.fullmatch(parts.netloc) is None:
            raise UsageError(usage)
        port = port or _DEFAULT_PORTS[scheme]
        host = (parts.netloc.rsplit(":", 1)[0] if parts.port is not None else parts.netloc).lower()  # one spelling
        netloc = host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
        return cls(scheme=scheme, netloc=netloc, host=host, port=port)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def apply(self, scope: Scope) -> None:
        """Make ``scope`` (in place, as uvicorn's proxy-headers middleware does) name this URL: a request with no
        Host header (HTTP/1.0) gets one, and one with a Host gets this one instead."""
        scope["scheme"] = self.scheme
        scope["server"] = (self.host.strip("[]"), self.port)
        headers = [(name, value) for name, value in scope["headers"] if name != b"host"]
        scope["headers"] = [*headers, (b"host", self.netloc.encode("ascii"))]
