"""A source beyond the documented limits is one error line, and nothing is written."""

import json
import struct
from pathlib import Path

from modelfactory import write_model


def test_push_of_a_file_with_too_many_tensors_is_one_line_and_writes_nothing(
    arc, tmp_path: Path, catalog_snapshot
) -> None:
    src = write_model(
        tmp_path / "m"
    )  # config.json and tokenizer.json sort before it and would be stored first
    header = {f"t.{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(200_000)}
    body = json.dumps(header, separators=(",", ":")).encode()
    (src / "model.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + bytes(200_000))
    objects = sorted((arc.home / "store" / "objects").rglob("*"))
    before = catalog_snapshot()
    result = arc.fail("push", src, "acme/many:v1")
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "200,000 tensors in one file" in lines[0] and "Limits" in lines[0]
    assert catalog_snapshot() == before
    assert sorted((arc.home / "store" / "objects").rglob("*")) == objects
