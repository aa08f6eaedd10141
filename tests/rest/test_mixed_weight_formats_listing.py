"""A snapshot holding a model in two weight formats (model.safetensors written by safetensors beside model.gguf
written by gguf), over a real server on 127.0.0.1, on SQLite and PostgreSQL: /v1 lists each tensor with its file's
format and the snapshot's tensors per format, and the HTML page gives each format's dtypes apart, never the GGUF
tensors among the safetensors ones (both formats name dtypes F32 and F16)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import serve
from modelfactory import MIXED_GGUF, MIXED_SAFETENSORS, write_mixed_model

from modelarc.archive.repository import Archive


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("mixed")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    archive.push(write_mixed_model(base / "m"), "acme/mixed:v1")
    with serve(archive) as url:
        yield url
    archive.close()


def _get(url: str) -> Any:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, r.text
    return r.json() if r.headers["content-type"].startswith("application/json") else r.text


def test_v1_lists_each_tensor_under_its_own_file_and_format(site: str) -> None:
    rows = _get(f"{site}/v1/snapshots/acme/mixed/v1/tensors?limit=100")
    listed = {(t["format"], t["file"], t["name"], t["dtype"]) for t in rows}
    assert listed == {
        ("safetensors", "model.safetensors", "model.embed.weight", "F32"),
        ("safetensors", "model.safetensors", "model.norm.weight", "F16"),
        ("gguf", "model.gguf", "token_embd.weight", "F32"),
        ("gguf", "model.gguf", "blk.0.attn_q.weight", "F16"),
    }
    assert {t["name"] for t in rows if t["format"] == "safetensors"} == set(MIXED_SAFETENSORS)
    assert {t["name"] for t in rows if t["format"] == "gguf"} == set(MIXED_GGUF)


def test_v1_snapshot_counts_each_formats_tensors_apart(site: str) -> None:
    shown = _get(f"{site}/v1/snapshots/acme/mixed/v1")
    assert shown["tensors_by_format"] == {
        "gguf": {"tensors": 2, "parameters": 320, "dtypes": {"F16": 256, "F32": 64}},
        "safetensors": {"tensors": 2, "parameters": 144, "dtypes": {"F16": 16, "F32": 128}},
    }


def test_the_snapshot_page_gives_each_formats_dtypes_apart(site: str) -> None:
    page = _get(f"{site}/ui/snapshots/acme/mixed/v1")
    assert (
        '<span class="format" id="dtypes-safetensors">safetensors (144 in 2 tensors): F16: 16, F32: 128</span>'
        in page
    )
    assert '<span class="format" id="dtypes-gguf">gguf (320 in 2 tensors): F16: 256, F32: 64</span>' in page
    assert "F32: 192" not in page  # the two formats' F32 tensors are not one list
