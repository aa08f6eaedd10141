"""ls filters, timeline and as-of answers, on SQLite and PostgreSQL."""

import datetime as dt
from pathlib import Path

import pytest
from modelfactory import tiny_tensors, write_model

from modelarc.archive.repository import Archive
from modelarc.registry.models import DataAttachment, Dataset, Snapshot, SnapshotDataset, TagHistory


def _push(arc, tmp_path: Path, ref: str, seed: int, *extra: str, **sizes: int) -> str:
    return arc.json(
        "push", write_model(tmp_path / f"m{seed}", tiny_tensors(seed=seed, **sizes)), ref, *extra
    )["snapshot"]


def _models(rows) -> list[str]:
    return [f"{r['model']}:{','.join(r['tags'])}" for r in rows]


@pytest.fixture
def catalog(arc, tmp_path: Path):
    ids = {
        "old": _push(arc, tmp_path, "acme/old:v1", 1, "--cutoff", "2021", "--license", "mit"),
        "mid": _push(
            arc,
            tmp_path,
            "acme/mid:v1",
            2,
            "--cutoff",
            "2023-03",
            "--license",
            "apache-2.0",
            "--parent",
            "acme/old:v1",
            "--relation",
            "finetune",
        ),
        "new": _push(
            arc,
            tmp_path,
            "acme/new:v1",
            3,
            "--cutoff",
            "2024-06-15",
            "--license",
            "apache-2.0",
            "--parent",
            "acme/mid:v1",
            "--relation",
            "quantized",
            layers=4,
        ),
        "none": _push(arc, tmp_path, "other/nocutoff:v1", 4),
    }
    return arc, ids


def test_cutoff_filters_respect_precision(catalog) -> None:
    arc, _ids = catalog
    assert _models(arc.json("ls", "--cutoff-before", "2023-03-15")) == [
        "acme/old:v1"
    ]  # 2023-03 is not all before
    assert set(_models(arc.json("ls", "--cutoff-before", "2023-04"))) == {"acme/old:v1", "acme/mid:v1"}
    assert _models(arc.json("ls", "--cutoff-before", "2021-06-01")) == []  # "2021" runs to the end of 2021
    assert _models(arc.json("ls", "--cutoff-after", "2023-12-31")) == ["acme/new:v1"]
    assert set(_models(arc.json("ls", "--cutoff-after", "2022-01-01"))) == {"acme/mid:v1", "acme/new:v1"}


def test_other_filters_alone_and_combined(catalog) -> None:
    arc, _ids = catalog
    assert len(arc.json("ls", "--arch", "llama")) == 4
    assert len(arc.json("ls", "--arch", "LlamaForCausalLM")) == 4
    assert arc.json("ls", "--arch", "gpt2") == []
    assert set(_models(arc.json("ls", "--license", "apache-2.0"))) == {"acme/mid:v1", "acme/new:v1"}
    big = sum(t.size for t in tiny_tensors(layers=4).values())
    assert _models(arc.json("ls", "--min-params", str(big))) == ["acme/new:v1"]
    assert "acme/new:v1" not in _models(arc.json("ls", "--max-params", str(big - 1)))
    assert set(_models(arc.json("ls", "--descendant-of", "acme/old:v1"))) == {"acme/mid:v1", "acme/new:v1"}
    assert _models(
        arc.json(
            "ls", "--descendant-of", "acme/old:v1", "--license", "apache-2.0", "--cutoff-after", "2024-01"
        )
    ) == ["acme/new:v1"]
    assert len(arc.json("ls", "--limit", "2")) == 2


def test_trained_on_filter(catalog, monkeypatch) -> None:
    arc, ids = catalog
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    archive = Archive.open(arc.home)
    with archive, archive.catalog.session() as s:  # datasets attached straight through the ORM
        snap = s.query(Snapshot).filter_by(digest=ids["mid"]).one()
        ds = Dataset(content_hash="a" * 64, name="the-pile", version="1")
        att = DataAttachment(snapshot_id=snap.id, actor="tester")
        s.add_all([ds, att])
        s.flush()
        s.add(SnapshotDataset(snapshot_id=snap.id, dataset_id=ds.id, attachment_id=att.id, role="pretrain"))
    assert _models(arc.json("ls", "--trained-on", "the-pile")) == ["acme/mid:v1"]
    assert arc.json("ls", "--trained-on", "c4") == []


def test_timeline_orders_by_cutoff_with_unknown_last(catalog) -> None:
    arc, _ids = catalog
    rows = arc.json("timeline")
    assert [r["model"] for r in rows] == ["acme/old", "acme/mid", "acme/new", "other/nocutoff"]
    assert [r["cutoff"] for r in rows] == ["2021", "2023-03", "2024-06-15", None]
    text = arc("timeline").stdout
    assert text.index("acme/old") < text.index("acme/new")


def test_as_of_replays_tags_and_existence(arc, tmp_path: Path, monkeypatch) -> None:
    first = _push(arc, tmp_path, "acme/m:latest", 1)
    second = _push(arc, tmp_path, "acme/m:latest", 2)
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    archive = Archive.open(arc.home)
    past = dt.datetime(2020, 1, 1)
    with archive, archive.catalog.session() as s:  # move history into the past so dates are unambiguous
        s.query(Snapshot).filter_by(digest=first).update({"created_at": past})
        first_id = s.query(Snapshot).filter_by(digest=first).one().id
        s.query(TagHistory).filter_by(new_snapshot_id=first_id).update({"moved_at": past})
        s.query(Snapshot).filter_by(digest=second).update({"created_at": dt.datetime(2022, 1, 1)})
        second_id = s.query(Snapshot).filter_by(digest=second).one().id
        s.query(TagHistory).filter_by(new_snapshot_id=second_id).update({"moved_at": dt.datetime(2022, 1, 1)})
    then = {r["snapshot"]: r["tags"] for r in arc.json("ls", "--as-of", "2021-06-01")}
    assert then == {first: ["latest"]}
    now = {r["snapshot"]: r["tags"] for r in arc.json("ls")}
    assert now == {first: [], second: ["latest"]}
    assert arc.json("ls", "--as-of", "2019") == []


def test_bad_filter_values_are_clear_errors(catalog) -> None:
    arc, _ids = catalog
    assert "invalid date" in arc.fail("ls", "--cutoff-before", "2023-13").stderr
    assert "invalid parameter count" in arc.fail("ls", "--min-params", "lots").stderr
    assert "no model" in arc.fail("ls", "--descendant-of", "acme/ghost:v1").stderr
    assert "invalid date" in arc.fail("timeline", "--as-of", "soon").stderr


# docs/PROVENANCE.md: a cutoff is a period; it is before D when the whole period ends before D, and after D when
# the whole period starts after D. So a cutoff equal to D (or a period containing D) is neither before nor after.
BOUNDARY_CUTOFFS = {
    "day/d14": "2023-05-14", "day/d15": "2023-05-15", "day/d16": "2023-05-16",
    "month/apr": "2023-04", "month/may": "2023-05", "month/jun": "2023-06",
    "year/y2022": "2022", "year/y2023": "2023", "year/y2024": "2024",
}
DAYS = ["day/d14", "day/d15", "day/d16"]
MONTHS = ["month/apr", "month/may", "month/jun"]

# (filter date, cutoffs before it, cutoffs after it), written out by hand from the documented rule
CUTOFF_BOUNDARIES = [
    # day precision: the day before, at, and after the filter date
    ("2023-05-15", ["day/d14", "month/apr", "year/y2022"], ["day/d16", "month/jun", "year/y2024"]),
    ("2023-05-14", ["month/apr", "year/y2022"], ["day/d15", "day/d16", "month/jun", "year/y2024"]),
    ("2023-05-16", ["day/d14", "day/d15", "month/apr", "year/y2022"], ["month/jun", "year/y2024"]),
    # month precision: the filter date one day before May, on its first day, on its last day, one day after it
    ("2023-04-30", ["year/y2022"], [*DAYS, "month/may", "month/jun", "year/y2024"]),
    ("2023-05-01", ["month/apr", "year/y2022"], [*DAYS, "month/jun", "year/y2024"]),
    ("2023-05-31", [*DAYS, "month/apr", "year/y2022"], ["month/jun", "year/y2024"]),
    ("2023-06-01", [*DAYS, "month/apr", "month/may", "year/y2022"], ["year/y2024"]),
    # year precision: one day before 2023, its first day, its last day, one day after it
    ("2022-12-31", [], [*DAYS, *MONTHS, "year/y2023", "year/y2024"]),
    ("2023-01-01", ["year/y2022"], [*DAYS, *MONTHS, "year/y2024"]),
    ("2023-12-31", [*DAYS, *MONTHS, "year/y2022"], ["year/y2024"]),
    ("2024-01-01", [*DAYS, *MONTHS, "year/y2022", "year/y2023"], []),
]


@pytest.fixture
def boundary_catalog(arc, tmp_path: Path, monkeypatch):
    for seed, (model, cutoff) in enumerate(BOUNDARY_CUTOFFS.items(), start=10):
        _push(arc, tmp_path, f"{model}:v1", seed, "--cutoff", cutoff, hidden=8, vocab=16)
    _push(arc, tmp_path, "none/unknown:v1", 99, hidden=8, vocab=16)  # no cutoff: never before or after anything
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    archive = Archive.open(arc.home)
    from fastapi.testclient import TestClient

    from modelarc.api.app import create_app

    with archive, TestClient(create_app(lambda: archive)) as client:
        yield arc, client


def test_cutoff_filters_at_their_boundaries_in_ls_and_v1(boundary_catalog) -> None:
    arc, client = boundary_catalog
    wrong = []
    for day, before, after in CUTOFF_BOUNDARIES:
        for option, expected in (("cutoff-before", before), ("cutoff-after", after)):
            listed = sorted(r["model"] for r in arc.json("ls", f"--{option}", day))
            answer = client.get("/v1/snapshots", params={option.replace("-", "_"): day})
            assert answer.status_code == 200, answer.text
            served = sorted(r["model"] for r in answer.json())
            for where, got in ((f"ls --{option} {day}", listed), (f"/v1/snapshots?{option} {day}", served)):
                if got != sorted(expected):
                    wrong.append(f"{where}: {got} != {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


def test_an_empty_answer_says_so(arc, tmp_path: Path) -> None:
    """`timeline` and `audit` printed nothing at all for an empty answer, and `audit --action rm` found nothing
    without saying that the log calls a withdrawal `tombstone`."""
    assert arc("timeline").stdout == "the archive is empty\n"
    _push(arc, tmp_path, "acme/m:v1", 1)
    assert arc("timeline", "--arch", "bert").stdout == "no snapshots match\n"
    assert arc("audit", "--action", "push", "--since", "2999").stdout == "no audit events match\n"
    arc("rm", "acme/m:v1", "--reason", "test")
    said = arc("audit", "--action", "rm").stdout
    assert said.startswith("the log has no action 'rm'; it has: ") and "tombstone" in said and "push" in said
    assert arc.json("audit", "--action", "rm") == []
    assert [e["action"] for e in arc.json("audit", "--action", "tombstone")] == ["tombstone"]
