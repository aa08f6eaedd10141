"""The HTML catalog in a real headless Chromium (Debian's, driven by Playwright) against `modelarc serve` on 127.0.0.1.

`make test` exports MODELARC_TEST_CHROMIUM from scripts/ci/chromium.sh (which installs the browser when missing).
Without a browser these tests are skipped locally and fail under CI=true. Screenshots go to $MODELARC_SCREENSHOTS,
default tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from liveserver import serve
from modelfactory import TINY_CONFIG, finetune, tiny_tensors, write_model

from modelarc.archive.provenance.data import attach_data, load_data_manifest
from modelarc.archive.provenance.withdrawal import withdraw
from modelarc.archive.repository import Archive
from modelarc.registry.records import Provenance

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(os.environ.get("MODELARC_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "screenshots")
XSS = '<script>window.__pwned = true</script><img src=x onerror="window.__pwned = true">'


def chromium_path() -> str:
    path = os.environ.get("MODELARC_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if Path(path).is_file():
        return path
    message = "no Chromium for the browser tests: run `make test` (scripts/ci/chromium.sh installs it)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as mp:  # the archive keeps its settings; the env is restored at once
        mp.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    d = dt.date
    first = archive.push(
        write_model(base / "base"),
        "acme/base:v1",
        Provenance(cutoff=d(2021, 6, 1), cutoff_precision="month", license="apache-2.0"),
    )
    data = base / "data.yaml"
    data.write_text(
        "version: 1\ndatasets:\n  - {name: the-pile, version: '1.0', role: pretrain, license: mixed,"
        " time_range: {start: '2015', end: '2021-05'}}\n"
    )
    attach_data(archive, "acme/base:v1", load_data_manifest(data))
    archive.push(
        write_model(base / "tuned", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"])),
        "acme/tuned:v1",
        Provenance(
            cutoff=d(2022, 3, 1),
            cutoff_precision="month",
            description=XSS,
            parents=((f"acme/base@{first.snapshot}", "finetune"),),
        ),
    )
    gpt2 = {**TINY_CONFIG, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}
    archive.push(
        write_model(base / "other", tiny_tensors(seed=7), config=gpt2),
        "other/gpt:v2",
        Provenance(cutoff=d(2023, 1, 1), cutoff_precision="year", license="mit"),
    )
    archive.push(write_model(base / "gone", tiny_tensors(seed=8)), "acme/gone:v1")
    withdraw(archive, "acme/gone:v1", reason="license revoked by the rights holder")
    with serve(archive) as url:
        yield {"url": url, "archive": archive}
    archive.close()


@pytest.fixture(scope="module")
def browser(site) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000  # a real rendered page, not an empty image
    return path


def result_models(page: Any) -> list[str]:
    return [a.inner_text() for a in page.locator("table.snapshots a.model-link").all()]


def test_home_lists_the_archive(site, page) -> None:
    page.goto(site["url"] + "/")
    assert page.locator("h1").inner_text() == "Archived models"
    assert sorted(set(result_models(page))) == ["acme/base", "acme/gone", "acme/tuned", "other/gpt"]
    assert page.locator("tr.withdrawn-row").count() == 1
    shot(page, "home")


def search_in_form(site, page, field: str, value: str) -> list[str]:
    """Type one filter into the home page's form, submit it like a user, return the models listed."""
    page.goto(site["url"] + "/")
    page.fill(f"input[name={field}]", value)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return result_models(page)


def test_search_filters_narrow_the_results(site, page) -> None:
    assert search_in_form(site, page, "cutoff_before", "2022-01-01") == ["acme/base"]
    assert page.input_value("input[name=cutoff_before]") == "2022-01-01"  # the form keeps what was asked
    shot(page, "search-cutoff-before")
    assert search_in_form(site, page, "arch", "gpt2") == ["other/gpt"]
    assert search_in_form(site, page, "name", "TUNED") == ["acme/tuned"]
    assert search_in_form(site, page, "trained_on", "the-pile") == ["acme/base"]
    assert search_in_form(site, page, "descendant_of", "acme/base:v1") == ["acme/tuned"]
    assert search_in_form(site, page, "cutoff_after", "not-a-date") == []
    assert "not-a-date" in page.locator("#error").inner_text()
    shot(page, "search-error")


def test_links_lead_from_home_to_model_snapshot_lineage_dataset_and_timeline(site, page) -> None:
    page.goto(site["url"] + "/")
    page.locator("a.model-link", has_text="acme/tuned").first.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "acme/tuned"
    assert page.locator("table.versions tbody tr").count() == 1
    shot(page, "model")

    page.locator("table.versions a.snapshot-link").first.click()
    page.wait_for_load_state()
    assert "verified" in page.locator("#signature").inner_text()
    assert page.locator("#cutoff").inner_text() == "2022-03"
    assert page.locator("#architecture").inner_text().startswith("llama")
    assert 'modelarc.load_model("acme/tuned:v1")' in page.locator("#snippet").inner_text()
    assert page.locator("table.files tbody tr").count() == 3
    svg = page.locator("#lineage svg")
    assert svg.count() == 1 and "finetune" in svg.inner_html()
    shot(page, "snapshot")

    page.locator("#lineage a.lineage-node", has_text="acme/base").click()  # a node of the SVG graph
    page.wait_for_load_state()
    assert page.locator("h1 a").inner_text() == "acme/base"
    page.locator("a.dataset-link", has_text="the-pile").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Dataset the-pile"
    assert "acme/base" in page.locator("table.used-by").inner_text()
    shot(page, "dataset")

    page.click("text=timeline")
    page.wait_for_load_state()
    years = [h.inner_text() for h in page.locator("h2.year").all()]
    assert years == ["2021", "2022", "2023", "unknown cutoff"]
    shot(page, "timeline")


def test_user_text_is_escaped_and_withdrawn_snapshots_say_why(site, page) -> None:
    page.goto(site["url"] + "/ui/snapshots/acme/tuned/v1")
    assert page.locator("#description").inner_text() == XSS  # shown as text
    assert page.evaluate("window.__pwned === undefined") and page.dialogs == []
    page.goto(site["url"] + "/ui/snapshots/acme/gone/v1")
    assert "license revoked by the rights holder" in page.locator("#withdrawn").inner_text()
    shot(page, "withdrawn")
    response = page.goto(site["url"] + "/ui/models/acme/nothing")
    assert response.status == 404 and "no model acme/nothing" in page.locator("#error").inner_text()


def test_home_pages_through_many_snapshots(site, page, tmp_path: Path) -> None:
    from modelarc.api.html import PAGE_ROWS

    archive = site["archive"]
    for i in range(PAGE_ROWS + 2):  # with the 4 snapshots already there: one full page and 6 more
        archive.push(write_model(tmp_path / f"p{i}", tiny_tensors(seed=100 + i)), f"bulk/m{i:03d}:v1")
    page.goto(site["url"] + "/")
    assert page.locator("table.snapshots tbody tr").count() == PAGE_ROWS
    assert page.locator("#prev-page").count() == 0
    page.click("#next-page")
    page.wait_for_load_state()
    assert page.locator("table.snapshots tbody tr").count() == 6
    assert page.locator("#next-page").count() == 0
    page.click("#prev-page")
    page.wait_for_load_state()
    assert page.locator("table.snapshots tbody tr").count() == PAGE_ROWS


def test_pages_answer_without_a_browser_too(site) -> None:
    url = site["url"]
    assert httpx.get(f"{url}/ui/datasets").status_code == 200
    assert httpx.get(f"{url}/ui/datasets/unknown").status_code == 404
    assert httpx.get(f"{url}/?cutoff_before=garbage").status_code == 400
    page = httpx.get(f"{url}/ui/snapshots/acme/tuned/v1").text
    assert "<script>window.__pwned" not in page and "&lt;script&gt;" in page


def test_a_gated_snapshot_page_shows_its_policy_and_its_weight_link_is_refused(site, page) -> None:
    from modelarc.archive.access import set_policy

    reason = "embargoed <b>until</b> the paper is out"
    set_policy(site["archive"], "other/gpt", "gated", until="2999-01-01", reason=reason)
    page.goto(site["url"] + "/ui/snapshots/other/gpt/v2")
    assert "gated" in page.locator("#access").inner_text()
    assert page.locator("#embargo-until").inner_text() == "2999-01-01"
    assert page.locator("#access-reason").inner_text() == reason  # shown as text, not markup
    assert page.locator("span.gated").count() == 1  # the one weight file is marked
    shot(page, "gated")
    weights = page.locator("a.download", has_text="model.safetensors").get_attribute("href")
    config = page.locator("a.download", has_text="config.json").get_attribute("href")
    # the browser's own request context follows the links (a navigation to a file would start a download)
    assert page.request.get(site["url"] + config).status == 200  # configs stay public
    refused = page.request.get(site["url"] + weights)
    assert refused.status == 403 and refused.headers["x-error-code"] == "GatedRepo"
