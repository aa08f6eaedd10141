"""Reading signed JSON documents (bundles, statements, DSSE envelopes) field by field, failing as SignatureError.

A signed document comes from anywhere: every field is checked for presence and JSON type before it is used, and
every failure names where it was found, so that a bad signature is one clear line, never a KeyError.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from modelarc.errors import SignatureError

_JSON_NAMES = {str: "string", dict: "object", list: "array", int: "integer", bool: "boolean"}


def parse_json(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        # bytes are read as UTF-8 only (json.loads would also take UTF-16/32): a bundle is stored and shown as text
        doc = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    # JSONDecodeError and UnicodeDecodeError are ValueErrors; deep nesting raises RecursionError.
    except (ValueError, TypeError, RecursionError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SignatureError(f"{what} is not valid JSON: {reason}") from exc
    expect(isinstance(doc, dict), f"{what} is not a JSON object")
    return doc  # type: ignore[no-any-return]


def field(obj: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in obj:
        raise SignatureError(f"{where} has no {name!r} field")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SignatureError(f"{where} field {name!r} is not a JSON {_JSON_NAMES.get(kind, kind.__name__)}")
    return value


def optional_field(obj: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    if obj.get(name) is None:
        return None
    return field(obj, name, kind, where)


def b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{what} is not valid base64") from exc


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SignatureError(message)
