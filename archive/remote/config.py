"""Named remotes (``modelarc remote add origin URL``), kept in ``<home>/remotes.json``.

The file holds bearer tokens, so it is written atomically with mode 0600. Format (version 1)::

    {"format": 1, "remotes": {"origin": {"url": "http://host:8470", "token": "ma_..."}}}
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from modelarc.errors import NotFoundError, UsageError

REMOTES_FILE = "remotes.json"
REMOTES_FORMAT = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: a final "$" let "origin\n" in
# what an HTTP header value can carry as a bearer token: visible ASCII, no space, tab, newline or control character
_TOKEN = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True)
class Remote:
    name: str
    url: str
    token: str | None = None


def load_remotes(home: Path) -> dict[str, Remote]:
    path = home / REMOTES_FILE
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != REMOTES_FORMAT:
            raise UsageError(f"{path}: unknown format {doc.get('format')!r}")
        remotes = {
            name: Remote(name, entry["url"], entry.get("token")) for name, entry in doc["remotes"].items()
        }
        for remote in remotes.values():  # hand-edited or damaged: a number where text belongs fails every request
            if not isinstance(remote.url, str) or not isinstance(remote.token, str | None):
                raise TypeError(f"remote {remote.name!r} has a url or token that is not text")
        return remotes
    # RecursionError: damaged into "[[[[..." nested deeper than the parser's stack
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UsageError(f"{path} is unreadable ({exc}); fix or remove it") from None


def get_remote(home: Path, name: str) -> Remote:
    remotes = load_remotes(home)
    if name not in remotes:
        known = ", ".join(sorted(remotes)) or "none yet"
        raise NotFoundError(f"no remote named {name!r} (known: {known}); add one with `modelarc remote add`")
    # one written before tokens were checked, or edited by hand since: every request would fail deep inside (its
    # name is not judged again: one an older modelarc took stays usable)
    _check_address(remotes[name])
    return remotes[name]


def check_remote(remote: Remote) -> None:
    """Refuse, before anything is contacted or written, a remote no request could be sent to: a bad name, a URL
    that is not http(s)://host[:port] with a port from 1 to 65535, a token no HTTP header can carry."""
    if not _NAME.fullmatch(remote.name):
        raise UsageError(f"remote name {remote.name!r}: use letters, digits, '.', '_' or '-'")
    _check_address(remote)


def _check_address(remote: Remote) -> None:
    """The URL and the token of ``check_remote``."""
    if not is_http_url(remote.url):
        raise UsageError(
            f"remote URL {without_password(remote.url)!r} must be http(s)://host[:port], with a port from 1 to 65535"
        )
    if urlsplit(remote.url).username is not None:  # sent nowhere (the token is), and shown in every error
        raise UsageError(
            f"remote URL {without_password(remote.url)!r} carries a user name or password: give the URL without "
            "it and the remote's token with --token"
        )
    check_token(remote)


def without_password(url: str) -> str:
    """``url`` as an error may show it: a password in its user part (``http://user:pw@host``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    # the user part ends at the authority's "@"; with none there (a password holding "/" ends the authority as
    # urlsplit cuts it), at the last "@" before any query or fragment ("@" in a query is no user part)
    tail = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    slash = rest.find("/", 0, tail)
    end = slash if slash >= 0 and "@" in rest[:slash] else tail
    user, at, after = rest[:end].rpartition("@")
    if not (sep and at and ":" in user):
        return url
    return f"{scheme}{sep}{user.split(':', 1)[0]}:***@{after}{rest[end:]}"


def is_http_url(url: str) -> bool:
    """http(s)://host[:port][/path], a port from 1 to 65535, no whitespace or control character: a URL an HTTP
    client can send a request to, rather than fail on deep inside."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError: not a number, or beyond 65535
    except ValueError:  # also "Invalid IPv6 URL": an unclosed [
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and port != 0
        and not any(c.isspace() or not c.isprintable() for c in url)
    )


def check_token(remote: Remote) -> None:
    """A token goes into an ``Authorization`` header as it is; the message never shows it (it is a secret)."""
    if remote.token and not _TOKEN.fullmatch(remote.token):
        raise UsageError(
            f"the token of remote {remote.name!r} has a space, a line break, a control or a non-ASCII character: "
            "give the token exactly as `modelarc token create` printed it"
        )


def save_remote(home: Path, remote: Remote) -> None:
    check_remote(remote)
    remotes = load_remotes(home)
    remotes[remote.name] = Remote(remote.name, remote.url.rstrip("/"), remote.token)
    _write(home, remotes)


def remove_remote(home: Path, name: str) -> Remote:
    """Forget remote ``name``; the remote it was."""
    remotes = load_remotes(home)
    if name not in remotes:
        raise NotFoundError(f"no remote named {name!r}")
    removed = remotes.pop(name)
    _write(home, remotes)
    return removed


def _write(home: Path, remotes: dict[str, Remote]) -> None:
    doc = {
        "format": REMOTES_FORMAT,
        "remotes": {
            r.name: {"url": r.url, **({"token": r.token} if r.token else {})} for r in remotes.values()
        },
    }
    path = home / REMOTES_FILE
    tmp = path.with_name(f".{REMOTES_FILE}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
