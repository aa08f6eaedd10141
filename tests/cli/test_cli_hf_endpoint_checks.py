"""``push hf://...`` with an ``HF_ENDPOINT`` that is not http(s)://host[:port] is one error line naming
HF_ENDPOINT, before huggingface_hub is asked for anything (it failed deep in its HTTP client, a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ArchiveCli


@pytest.mark.parametrize("endpoint", ["garbage", "ftp://hub.example", "http://[::1", "http://hub:99999", "http://"])
def test_an_hf_endpoint_that_is_no_http_url_is_refused_in_one_line(
    tmp_path: Path, sqlite_url: str, endpoint: str
) -> None:
    home = ArchiveCli(tmp_path / "home", sqlite_url)
    home("init")
    home.env["HF_ENDPOINT"] = endpoint
    result = home.fail("push", "hf://org/name", "ns/hf:v1")
    assert result.exit_code == 2
    shown = endpoint.rstrip("/")
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: HF_ENDPOINT {shown!r} is not an http(s)://host[:port] URL; unset it for huggingface.co"
    )
    assert home.json("ls") == []
