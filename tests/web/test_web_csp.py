"""The web catalog's Content-Security-Policy refuses nothing the pages use: a real Chromium renders each page,
the lineage SVG included, and reports no policy violation (a style or an arrowhead the policy would block)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from liveserver import serve
from modelfactory import write_model
from test_web_catalog import CHROMIUM_FLAGS, chromium_path

from modelarc.archive.repository import Archive
from modelarc.registry.records import Provenance


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("csp")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _ = Archive.init(base / "home")
    first = archive.push(write_model(base / "a"), "acme/base:v1")
    archive.push(
        write_model(base / "b", extra_files={"README.md": b"tuned"}),
        "acme/tuned:v1",
        Provenance(parents=((f"acme/base@{first.snapshot}", "finetune"),)),
    )
    with serve(archive) as url:
        yield url
    archive.close()


def test_pages_render_without_a_policy_violation(site: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            page: Any = browser.new_page()
            problems: list[str] = []
            page.on(
                "console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None
            )
            for path in (
                "/",
                "/ui/models/acme/tuned",
                "/ui/snapshots/acme/tuned/v1",
                "/ui/timeline",
                "/ui/datasets",
            ):
                answer = page.goto(site + path)
                assert answer is not None and answer.status == 200, path
                assert "default-src 'none'" in answer.headers["content-security-policy"]
                if path.startswith("/ui/snapshots/"):
                    assert page.locator("#lineage svg").count() == 1  # the graph rendered inline
            # the inline stylesheet applied: the header bar has its colour, not the browser's default
            assert page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor") != (
                "rgba(0, 0, 0, 0)"
            )
            assert problems == []
        finally:
            browser.close()
