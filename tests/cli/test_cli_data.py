"""Training-data manifests: validated, attached append-only, datasets shared across snapshots, audited."""

import hashlib
import json
from pathlib import Path

import pytest
from modelfactory import tiny_tensors, write_model

MANIFEST_YAML = """\
version: 1
datasets:
  - name: the-pile
    version: "1.0"
    source: https://example.org/pile
    license: mixed
    size_bytes: 825000000000
    tokens: 300000000000
    time_range: {start: "2010", end: "2020-06"}
    sha256: %s
    role: pretrain
  - name: alpaca
    revision: abc123
    records: 52000
    role: instruction
    notes: synthetic instructions
""" % ("ab" * 32)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_push_with_data_attaches_datasets(arc, tmp_path: Path) -> None:
    manifest = _write(tmp_path, "data.yaml", MANIFEST_YAML)
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1", "--data", manifest, "--released", "2023-02-01")
    shown = arc.json("show", "acme/tiny:v1")
    assert [(d["name"], d["role"]) for d in shown["datasets"]] == [
        ("the-pile", "pretrain"),
        ("alpaca", "instruction"),
    ]
    assert shown["release_date"] == "2023-02-01"
    pile = shown["datasets"][0]
    assert pile["time_range"] == {
        "start": "2010",
        "end": "2020-06",
        "start_precision": "year",
        "end_precision": "month",
    }
    assert pile["tokens"] == 300000000000
    assert "dataset:      pretrain the-pile" in arc("show", "acme/tiny:v1").stdout


def test_time_range_bounds_keep_the_precision_the_manifest_gave(arc, tmp_path: Path) -> None:
    """``end: "2020-06"`` is content through June: the catalog, ``data ls``, ``data show`` and --json say 2020-06,
    not 2020-06-01, and the same dates written to the day are another description (another row)."""
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    spans = ("{start: '2010', end: '2020-06'}", "{start: '2010-01-01', end: '2020-06-01'}")
    for i, span in enumerate(spans):
        text = f"version: 1\ndatasets:\n  - {{name: the-pile, role: pretrain, time_range: {span}}}\n"
        arc("data", "attach", "acme/tiny:v1", _write(tmp_path, f"d{i}.yaml", text))
    listed = arc("data", "ls").stdout.splitlines()
    assert ["2010..2020-06" in r for r in listed] == [True, False]
    assert "2010-01-01..2020-06-01" in listed[1]
    assert [v["time_range"] for v in arc.json("data", "show", "the-pile")] == [
        {"start": "2010", "end": "2020-06", "start_precision": "year", "end_precision": "month"},
        {"start": "2010-01-01", "end": "2020-06-01", "start_precision": "day", "end_precision": "day"},
    ]
    shown = arc("data", "show", "the-pile").stdout
    assert "time range: 2010 .. 2020-06\n" in shown
    # no sha256 was stated: the key is a hash of the description, and is not called the data's sha256
    key = arc.json("data", "show", "the-pile")[0]["content_hash"]
    assert "  sha256 " not in shown and f"content hash {key}" in shown


def test_datasets_are_shared_across_snapshots_and_attach_is_audited(arc, tmp_path: Path) -> None:
    json_manifest = _write(
        tmp_path,
        "data.json",
        json.dumps(
            {
                "version": 1,
                "datasets": [{"name": "the-pile", "version": "1.0", "sha256": "ab" * 32, "role": "pretrain"}],
            }
        ),
    )
    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "acme/a:v1")
    arc("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "acme/b:v1")
    first = arc.json("data", "attach", "acme/a:v1", json_manifest)
    second = arc.json("data", "attach", "acme/b:v1", json_manifest)
    assert first["datasets"][0]["new"] is True and second["datasets"][0]["new"] is False
    rows = arc.json("data", "ls")
    assert len(rows) == 1 and rows[0]["snapshots"] == 2
    detail = arc.json("data", "show", "the-pile")
    assert sorted(u["model"] for u in detail[0]["used_by"]) == ["acme/a", "acme/b"]
    events = [e for e in arc.json("audit", "--action", "data.attach")]
    assert len(events) == 2 and events[0]["details"]["datasets"] == ["the-pile"]
    arc("data", "attach", "acme/a:v1", json_manifest)  # append-only: a second attachment is added, not merged
    assert len(arc.json("audit", "--action", "data.attach")) == 3
    assert arc.json("data", "ls")[0]["snapshots"] == 2  # still two snapshots, whatever acme/a attached twice
    assert "the-pile" in arc("data", "ls").stdout


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "version: 1\ndatasets:\n  - name: x\n    role: pretrain\n    time_range: {start: '2023-13'}\n",
            # the words docs/PROVENANCE.md quotes, not the schema's regular expression
            "datasets[0].time_range.start: '2023-13' is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)",
        ),
        (
            "version: 1\ndatasets:\n  - name: x\n    role: pretrain\n    time_range: {end: '2023-02-30'}\n",
            "datasets[0].time_range.end: '2023-02-30' is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)",
        ),
        ("version: 1\ndatasets:\n  - name: x\n    role: homework\n", "datasets[0].role"),
        ("version: 1\ndatasets:\n  - role: pretrain\n", "'name' is a required property"),
        (
            "version: 1\ndatasets:\n  - name: x\n    role: eval\n    size_bytes: -5\n",
            "datasets[0].size_bytes",
        ),
        ("version: 1\ndatasets: [ {name: x, role: eval\n", "not valid YAML"),
        ("version: 2\ndatasets: [{name: x, role: eval}]\n", "version: 1 was expected"),
    ],
)
def test_invalid_manifests_are_refused_naming_the_field(arc, tmp_path: Path, text: str, message: str) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    bad = _write(tmp_path, "bad.yaml", text)
    before = (arc.json("ls"), arc.json("stats"), arc.json("data", "ls"))
    assert message in arc.fail("data", "attach", "acme/tiny:v1", bad).stderr
    assert (
        message
        in arc.fail(
            "push", write_model(tmp_path / "m2", tiny_tensors(seed=5)), "acme/other:v1", "--data", bad
        ).stderr
    )
    assert (arc.json("ls"), arc.json("stats"), arc.json("data", "ls")) == before


def test_unknown_dataset_and_missing_file(arc, tmp_path: Path) -> None:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    assert "no dataset named" in arc.fail("data", "show", "nope").stderr
    assert "cannot read" in arc.fail("data", "attach", "acme/tiny:v1", tmp_path / "missing.yaml").stderr


def test_gc_keeps_the_training_data_manifests_of_live_and_withdrawn_snapshots(arc, tmp_path: Path) -> None:
    pushed_with = _write(tmp_path, "data.yaml", MANIFEST_YAML)
    attached = _write(tmp_path, "data.json", json.dumps({
        "version": 1, "datasets": [{"name": "books", "sha256": "cd" * 32, "role": "pretrain"}]}))
    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "acme/a:v1", "--data", pushed_with)
    arc("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "acme/b:v1")
    arc("data", "attach", "acme/b:v1", attached)
    arc("push", write_model(tmp_path / "c", tiny_tensors(seed=3)), "acme/c:v1")
    arc("data", "attach", "acme/c:v1", attached)
    arc("rm", "acme/c:v1", "--reason", "withdrawn; its provenance stays")
    # the documents as given are kept as objects, named by the sha256 of their bytes
    documents = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (pushed_with, attached)]
    store = arc.home / "store" / "objects"
    assert all((store / oid[:2] / oid).is_file() for oid in documents)

    assert arc.json("gc")["objects_removed"] == 0
    assert [oid for oid in documents if not (store / oid[:2] / oid).is_file()] == []
    assert arc.json("fsck")["ok"]
    assert sorted(u["model"] for u in arc.json("data", "show", "books")[0]["used_by"]) == ["acme/b", "acme/c"]
    # exports read the documents back from the store for the hashes they declared
    for ref, declared in (("acme/a:v1", "ab" * 32), ("acme/b:v1", "cd" * 32), ("acme/c:v1", "cd" * 32)):
        assert declared in arc("export", ref, "--format", "cyclonedx").stdout, ref
    arc("verify", "acme/a:v1")


def _three_datasets(arc, tmp_path: Path) -> None:
    """acme/a uses books, code and the-pile; acme/b uses the-pile too."""
    manifest = _write(
        tmp_path,
        "three.json",
        json.dumps(
            {
                "version": 1,
                "datasets": [
                    {"name": name, "sha256": digit * 64, "role": "pretrain"}
                    for name, digit in (("the-pile", "a"), ("code", "b"), ("books", "c"))
                ],
            }
        ),
    )
    arc("push", write_model(tmp_path / "a", tiny_tensors(seed=1)), "acme/a:v1", "--data", manifest)
    arc("push", write_model(tmp_path / "b", tiny_tensors(seed=2)), "acme/b:v1")
    arc("data", "attach", "acme/b:v1", _write(tmp_path, "pile.json", json.dumps({
        "version": 1, "datasets": [{"name": "the-pile", "sha256": "a" * 64, "role": "eval"}]})))


def _next_command(stderr: str) -> list[str]:
    """The `data ls` arguments the hint on stderr gives for the next page."""
    (hint,) = [ln for ln in stderr.splitlines() if ln.startswith("more datasets: modelarc data ls")]
    return hint.removeprefix("more datasets: modelarc ").split()


def test_data_ls_pages_through_every_dataset_once_by_name(arc, tmp_path: Path) -> None:
    _three_datasets(arc, tmp_path)
    first = arc("data", "ls", "--limit", "2", "--json")
    assert [(r["name"], r["snapshots"]) for r in json.loads(first.stdout)] == [("books", 1), ("code", 1)]
    nxt = _next_command(first.stderr)
    assert nxt[:5] == ["data", "ls", "--limit", "2", "--json"] and nxt[5] == "--cursor"
    last = arc(*nxt)
    assert [(r["name"], r["snapshots"]) for r in json.loads(last.stdout)] == [("the-pile", 2)]
    assert last.stderr == ""  # the last page says nothing more
    # text pages the same way; a page that ends exactly at the last dataset has no next page either
    text = arc("data", "ls", "--limit", "1")
    assert text.stdout.startswith("books ") and len(text.stdout.splitlines()) == 1
    assert _next_command(text.stderr)[:4] == ["data", "ls", "--limit", "1"]
    assert arc("data", "ls", "--limit", "3").stderr == ""


def test_data_ls_output_is_unchanged_when_everything_fits_one_page(arc, tmp_path: Path) -> None:
    _three_datasets(arc, tmp_path)
    out = arc("data", "ls")
    assert out.stderr == ""
    assert [ln.split()[0] for ln in out.stdout.splitlines()] == ["books", "code", "the-pile"]
    assert out.stdout.splitlines()[2].endswith("used by 2 snapshots")


@pytest.mark.parametrize(
    "cursor", ["not-a-cursor", "eyJvIjogMn0", "eyJhIjogOTk5OTl9", "eyJhIjogLTF9", "eyJhIjogdHJ1ZX0", "%%%"]
)
def test_data_ls_refuses_a_bad_cursor_in_one_line(arc, tmp_path: Path, cursor: str) -> None:
    """Garbage, another list's cursor ({"o": 2}), a dataset that does not exist, a negative or boolean key."""
    _three_datasets(arc, tmp_path)
    err = arc.fail("data", "ls", "--cursor", cursor).stderr
    assert err.startswith("error: invalid dataset cursor") and len(err.strip().splitlines()) == 1
