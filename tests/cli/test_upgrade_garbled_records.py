"""`modelarc upgrade` reads records as hostile input: a record whose fields have the wrong JSON type (a list or an
object where text belongs, as anyone who can write the store may plant) is never a traceback; upgrade goes on and
exits as it would without it. (The actor is left alone: a record without a text actor cannot be read at all, and
every command that reads records names it as damaged.) On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from modelfactory import tiny_tensors, write_model
from recordkit import plant
from recordkit import records as _records

ArchiveCli = Any  # tests/cli/conftest.py
KINDS = ("key", "snapshot", "tag", "data", "withdraw", "access", "grant")


def _every_kind(arc: ArchiveCli, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "r/g:v1")
    arc("push", write_model(tmp_path / "n", tiny_tensors(seed=5)), "r/g:v2")
    arc("tag", "r/g:v1", "stable")
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"version": 1, "datasets": [{"name": "logs", "records": 10, "role": "finetune"}]}))
    arc("data", "attach", "r/g:v1", data)
    arc("access", "set", "r/g", "gated", "--reason", "licence")
    arc("token", "create", "--scope", "read", "--name", "alice")
    arc("access", "grant", "r/g", "alice", "--reason", "co-author")
    arc("rm", "r/g:v2", "--reason", "withdrawn")


@pytest.mark.parametrize("garble", [lambda v: [v], lambda v: {"x": v}], ids=["list", "object"])
def test_records_with_fields_of_the_wrong_type_are_no_traceback(
    arc: ArchiveCli, tmp_path: Path, garble: Any
) -> None:
    _every_kind(arc, tmp_path)
    planted = 0
    for kind in KINDS:
        for genuine in _records(arc, kind)[:1]:
            for field in sorted(set(genuine) - {"name", "format", "version", "kind", "at", "actor"}):
                planted += 1
                plant(arc, genuine, dt.timedelta(microseconds=planted), **{field: garble(genuine[field])})
    assert planted > 40
    result = arc("upgrade", ok=False)
    assert "Traceback" not in result.output and result.exit_code == 0, result.output
