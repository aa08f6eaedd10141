"""A date that has not come yet, or a release before the training cutoff, is provably false: a push states none
(docs/PROVENANCE.md "Training cutoff and release date"). Refused with one line naming the field, before anything is
archived; today (UTC) and one day of slack for time zones stand.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from modelfactory import write_model

from modelarc.archive.provenance.data import parse_data_manifest

TODAY = dt.datetime.now(dt.UTC).date()
TOMORROW = (TODAY + dt.timedelta(days=1)).isoformat()
DAY_AFTER = (TODAY + dt.timedelta(days=2)).isoformat()

REFUSED = {
    "cutoff in 2099": (["--cutoff", "2099-12-31"], "cutoff: cutoff 2099-12-31 is after today"),
    "cutoff two days ahead": (["--cutoff", DAY_AFTER], f"cutoff: cutoff {DAY_AFTER} is after today"),
    "release year 2098": (["--released", "2098"], "release_date: release date 2098-01-01 is after today"),
    "released before the cutoff": (
        ["--cutoff", "2024-06", "--released", "2024-05-15"],
        "release_date: release date 2024-05-15 is before the training cutoff 2024-06-01",
    ),
}


@pytest.mark.parametrize(("options", "said"), REFUSED.values(), ids=REFUSED.keys())
def test_a_push_stating_an_impossible_date_is_refused(
    arc, tmp_path: Path, options: list[str], said: str
) -> None:
    result = arc("push", write_model(tmp_path / "m"), "acme/m:v1", *options, ok=False)
    assert said in result.stderr
    assert arc.json("ls") == []  # nothing recorded


ACCEPTED = {
    "cutoff tomorrow (a time zone ahead of UTC)": ["--cutoff", TOMORROW],
    "released today": ["--released", TODAY.isoformat()],
    "a release year that may end after the cutoff": ["--cutoff", "2024-06", "--released", "2024"],
    "a release month holding the cutoff day": ["--cutoff", "2024-06-20", "--released", "2024-06"],
}


@pytest.mark.parametrize("options", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_dates_that_may_be_true_are_recorded(arc, tmp_path: Path, options: list[str]) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/m:v1", *options)


MANIFEST = """\
version: 1
datasets:
  - name: crawl
    role: pretrain
    time_range: {start: "2020", end: "%s"}
"""


def test_a_training_data_time_range_ending_after_today_is_refused(arc, tmp_path: Path) -> None:
    data = tmp_path / "data.yaml"
    data.write_text(MANIFEST % "2099-06")
    result = arc("push", write_model(tmp_path / "m"), "acme/m:v1", "--data", data, ok=False)
    assert "datasets[0].time_range.end: 2099-06 is after today" in result.stderr
    assert arc.json("ls") == []
    data.write_text(MANIFEST % TOMORROW)
    arc("push", write_model(tmp_path / "m"), "acme/m:v1", "--data", data)


def test_a_recorded_training_data_manifest_is_replayed_as_it_was_attached() -> None:
    """A rebuild reads a manifest an archive attached before the rule: it stays as recorded."""
    raw = (MANIFEST % "2099-06").encode()
    parse_data_manifest(raw, "recorded", recorded=True)
    with pytest.raises(Exception, match="is after today"):
        parse_data_manifest(raw, "received")
