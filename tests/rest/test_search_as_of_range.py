"""An ``as_of`` whose period ends past 9999-12-31 (the last day a date holds) is a 400 naming the date, from the
server as from the CLI (archive/catalog/search.py ``parse_as_of``), not a 500 or an OverflowError traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from liveserver import served_base_model
from transferkit import make_home

PAST_THE_LAST_DAY = ["9999-12-31", "9999-12", "9999"]


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with served_base_model(module_database_url, tmp_path_factory.mktemp("asof")) as (_archive, url):
        yield {"url": url}


@pytest.mark.parametrize("as_of", PAST_THE_LAST_DAY)
def test_the_server_answers_400_to_an_as_of_past_the_last_day(site: dict[str, Any], as_of: str) -> None:
    response = httpx.get(f"{site['url']}/v1/snapshots", params={"as_of": as_of}, timeout=30)
    assert response.status_code == 400, response.text[:500]
    assert f"as-of date '{as_of}' is out of range" in response.json()["detail"]


def test_the_last_day_itself_is_an_as_of_the_server_takes(site: dict[str, Any]) -> None:
    response = httpx.get(f"{site['url']}/v1/snapshots", params={"as_of": "9999-12-30"}, timeout=30)
    assert response.status_code == 200 and [(r["model"], r["tags"]) for r in response.json()] == [
        ("acme/base", ["v1"])
    ]


def test_ls_remote_with_an_as_of_past_the_last_day_is_one_usage_error(
    site: dict[str, Any], tmp_path: Path
) -> None:
    ana = make_home(tmp_path, "ana")
    ana("remote", "add", "origin", site["url"])
    refused = ana("ls", "--remote", "origin", "--as-of", "9999-12-31", ok=False)
    assert refused.exit_code == 2 and "as-of date '9999-12-31' is out of range" in refused.stderr


@pytest.mark.parametrize("command", ["ls", "timeline"])
@pytest.mark.parametrize("as_of", PAST_THE_LAST_DAY)
def test_a_local_as_of_past_the_last_day_is_one_usage_error(tmp_path: Path, command: str, as_of: str) -> None:
    ana = make_home(tmp_path, "ana")
    refused = ana(command, "--as-of", as_of, ok=False)
    assert refused.exit_code == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"error: as-of date '{as_of}' is out of range: the latest is 9999-12-30"
    )
