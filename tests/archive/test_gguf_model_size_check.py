"""A GGUF file whose metadata describes a model far larger than the weights it holds is refused before anything is
allocated: transformers takes its defaults for the hyperparameters a file lacks, so a 192-byte GGUF (architecture
llama, one tensor of 16 floats) had a 7B Llama allocated and `run` killed for memory (about 22 GB)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np

from modelarc.archive.repository import Archive

PROBE = """
import sys
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.models import load_model
from modelarc.errors import UsageError
try:
    load_model(Archive.open(sys.argv[1]), "g/tiny:v1", device="cpu")
except UsageError as exc:
    print("refused:", exc)
"""


def test_a_gguf_describing_a_model_larger_than_its_weights_is_refused_in_bounded_memory(
    archive: Archive, tmp_path: Path
) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    w = gguf.GGUFWriter(str(folder / "m.gguf"), "llama")  # no hyperparameters: transformers' defaults are 7B
    w.add_tensor("a", np.ones(16, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    archive.push(folder, "g/tiny:v1")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(archive.settings.home)],
        capture_output=True,
        text=True,
        timeout=300,
        # 6 GiB of address space: torch alone maps a few; a 7B model in float32 needs 28
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused:" in done.stdout and "m.gguf holds 16 weights" in done.stdout, done.stdout
