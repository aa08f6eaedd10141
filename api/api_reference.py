"""``/docs``: the API reference, rendered by the server from its own OpenAPI document.

FastAPI's Swagger UI and ReDoc pages load their scripts and styles from a CDN: on an archive server without
internet access (the case an archive is built for) they were blank pages, and where they did load they ran a third
party's script on the archive's origin. This page is plain HTML made from ``app.openapi()`` on the server, under
the web catalog's Content-Security-Policy (no script, nothing loaded from elsewhere), so it is complete offline and
can never disagree with ``/openapi.json``, which stays the machine-readable form.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


@dataclass(frozen=True)
class Parameter:
    name: str
    where: str  # path, query, header, cookie
    required: bool
    kind: str  # one line: the schema's type and bounds
    description: str


@dataclass(frozen=True)
class Body:
    media_types: tuple[str, ...]
    required: bool
    schema: str  # the schema as indented JSON, "" when it says nothing


@dataclass(frozen=True)
class Answer:
    status: str
    description: str
    media_types: tuple[str, ...]
    schema: str  # indented JSON, "" when the schema is empty or shared
    shared: str  # the anchor of the shared schema it uses (as every error answer does), or ""


@dataclass(frozen=True)
class Operation:
    anchor: str
    method: str
    path: str
    summary: str
    paragraphs: tuple[str, ...]
    parameters: tuple[Parameter, ...]
    body: Body | None
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class Group:
    tag: str
    operations: tuple[Operation, ...]


@dataclass(frozen=True)
class Reference:
    title: str
    version: str
    description: str
    groups: tuple[Group, ...]
    schemas: tuple[tuple[str, str], ...]  # (name, indented JSON) of components.schemas
    shared: tuple[tuple[str, str], ...]  # (anchor, indented JSON): answer schemas used more than once


def reference(doc: dict[str, Any]) -> Reference:
    """The page's content: every operation of ``doc`` under its first tag, in the document's order."""
    operations = [
        (method, path, item.get(method), item.get("parameters", []))
        for path, item in doc.get("paths", {}).items()
        for method in METHODS
        if item.get(method) is not None
    ]
    uses = Counter(
        _canonical(schema)
        for _m, _p, op, _s in operations
        for answer in op.get("responses", {}).values()
        if (schema := _first_schema(answer.get("content", {})))
    )
    shared = {text: f"answer-schema-{i}" for i, text in enumerate((t for t, n in uses.items() if n > 1), 1)}
    groups: dict[str, list[Operation]] = {}
    for method, path, op, common in operations:
        tag = (op.get("tags") or ["other"])[0]
        groups.setdefault(tag, []).append(_operation(method, path, op, common, shared))
    info = doc.get("info", {})
    schemas = doc.get("components", {}).get("schemas", {})
    return Reference(
        title=str(info.get("title", "")),
        version=str(info.get("version", "")),
        description=str(info.get("description", "")),
        groups=tuple(Group(tag, tuple(ops)) for tag, ops in groups.items()),
        schemas=tuple((name, _json(schema)) for name, schema in schemas.items()),
        shared=tuple((anchor, _json(json.loads(text))) for text, anchor in shared.items()),
    )


def _operation(
    method: str, path: str, op: dict[str, Any], common: list[dict[str, Any]], shared: dict[str, str]
) -> Operation:
    parameters = [*common, *op.get("parameters", [])]
    body = op.get("requestBody")
    return Operation(
        anchor=_anchor(op.get("operationId") or f"{method}-{path}"),
        method=method.upper(),
        path=path,
        summary=str(op.get("summary", "")),
        paragraphs=_paragraphs(str(op.get("description", ""))),
        parameters=tuple(_parameter(p) for p in parameters if "$ref" not in p),
        body=None
        if body is None
        else Body(
            media_types=tuple(body.get("content", {})),
            required=bool(body.get("required", False)),
            schema=_json_or_blank(_first_schema(body.get("content", {}))),
        ),
        answers=tuple(
            _answer(str(status), answer, shared)
            for status, answer in sorted(op.get("responses", {}).items(), key=lambda kv: str(kv[0]))
        ),
    )


def _answer(status: str, answer: dict[str, Any], shared: dict[str, str]) -> Answer:
    schema = _first_schema(answer.get("content", {}))
    anchor = shared.get(_canonical(schema), "") if schema else ""
    return Answer(
        status=status,
        description=str(answer.get("description", "")),
        media_types=tuple(answer.get("content", {})),
        schema="" if anchor else _json_or_blank(schema),
        shared=anchor,
    )


def _parameter(p: dict[str, Any]) -> Parameter:
    schema = p.get("schema", {})
    return Parameter(
        name=str(p.get("name", "")),
        where=str(p.get("in", "")),
        required=bool(p.get("required", False)),
        kind=schema_kind(schema),
        description=str(p.get("description") or schema.get("description") or ""),
    )


def schema_kind(schema: dict[str, Any]) -> str:
    """One line for a parameter's schema: its type(s) and every bound a request must keep, as the document states
    them (the page must not promise less than the server checks)."""
    if "anyOf" in schema or "oneOf" in schema:
        kinds = [schema_kind(s) for s in schema.get("anyOf", schema.get("oneOf", []))]
        return " or ".join(k for k in kinds if k) or "any"
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = str(schema.get("type", "any"))
    if kind == "array":
        kind = f"array of {schema_kind(schema.get('items', {}))}"
    bounds = [
        f"{label} {schema[key]}"
        for key, label in (
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("minimum", "min"),
            ("maximum", "max"),
            ("exclusiveMinimum", "above"),
            ("exclusiveMaximum", "below"),
            ("minItems", "min items"),
            ("maxItems", "max items"),
            ("pattern", "pattern"),
            ("format", "format"),
        )
        if key in schema
    ]
    if "enum" in schema:
        bounds.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    if "default" in schema:
        bounds.append(f"default {json.dumps(schema['default'])}")
    return f"{kind} ({'; '.join(bounds)})" if bounds else kind


def _first_schema(content: dict[str, Any]) -> Any:
    """The first media type's schema; None or ``{}`` (FastAPI's "any JSON") say nothing."""
    for media in content.values():
        schema = media.get("schema")
        if schema:
            return schema
    return None


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True)


def _json_or_blank(schema: Any) -> str:
    return _json(schema) if schema else ""


def _anchor(text: str) -> str:
    """An id that needs no escaping in a fragment (operationIds are unique in a document: OpenAPI 3.1, 4.8.10)."""
    return "op-" + re.sub(r"[^A-Za-z0-9_.-]", "-", str(text))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _paragraphs(text: str) -> tuple[str, ...]:
    """Docstring paragraphs, each folded to one line (the HTML reflows them)."""
    return tuple(" ".join(block.split()) for block in text.split("\n\n") if block.strip())
