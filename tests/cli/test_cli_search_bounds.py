"""Search options the catalog cannot hold (counts beyond 64 bits) are one `error:` line, never a traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", ["ls", "timeline"])
@pytest.mark.parametrize("option", ["--min-params", "--max-params"])
@pytest.mark.parametrize("value", ["99999999999999999999", str(2**63), "9" * 400, "9999999T"])
def test_a_parameter_count_beyond_64_bits_is_a_one_line_error(
    arc, command: str, option: str, value: str
) -> None:
    result = arc.fail(command, option, value)
    assert result.exit_code == 2
    assert "parameter count" in result.stderr and len(result.stderr) < 300


def test_the_largest_64_bit_count_is_accepted_exactly(arc) -> None:
    """float() would round 2^63-1 up to 2^63, one past what the catalog can compare against."""
    assert arc.json("ls", "--max-params", str(2**63 - 1)) == []
    assert arc.json("ls", "--min-params", "9.2B") == []


@pytest.mark.parametrize("command", ["ls", "timeline"])
@pytest.mark.parametrize("option", ["--name", "--arch", "--trained-on", "--license"])
@pytest.mark.parametrize("text", ["x" * 50_001, "_" * 25_001], ids=["50001-characters", "25001-escaped"])
def test_a_free_text_filter_longer_than_the_servers_bound_is_a_one_line_error(
    arc, command: str, option: str, text: str
) -> None:
    """SQLite refuses a LIKE pattern over 50,000 bytes (``_`` and ``%`` are escaped, so half as many of them):
    `ls --name` of that length was a traceback quoting the SQL. The bound is the server's, 300 characters."""
    result = arc.fail(command, option, text)
    assert result.exit_code == 2 and "Traceback" not in result.output
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert line == f"error: {option} is {len(text):,} characters long; at most 300 are taken", line


def test_a_free_text_filter_of_300_characters_is_taken(arc) -> None:
    assert arc.json("ls", "--name", "x" * 300) == []


@pytest.mark.parametrize(
    "args",
    [
        ("ls", "--license", ""),
        ("ls", "--cutoff-before", " "),
        ("timeline", "--name", ""),
        ("ls", "--descendant-of", ""),
        ("audit", "--since", ""),
        ("audit", "--action", ""),
        ("data", "ls", "--cursor", ""),
    ],
)
def test_an_empty_filter_is_refused_not_dropped(arc, args: tuple[str, ...]) -> None:
    """Taken as not given, `ls --license "$LICENSE"` with the variable unset listed every snapshot."""
    result = arc.fail(*args)
    assert result.exit_code == 2 and "is empty" in result.stderr and "Traceback" not in result.output


def test_an_empty_cutoff_or_release_date_is_refused_before_anything_is_archived(arc, tmp_path) -> None:
    from modelfactory import write_model

    folder = write_model(tmp_path / "m")
    # an empty --license (or description, or source) was recorded as "", and a later push stating a real one was
    # refused as other provenance
    for option in ("--cutoff", "--released", "--license", "--description", "--source"):
        for value in ("", "  "):
            result = arc.fail("push", folder, "acme/m:v1", option, value)
            assert result.exit_code == 2 and "is empty" in result.stderr
    assert arc.json("ls") == []


@pytest.mark.parametrize("command", ["ls", "timeline"])
@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--min-params", "7B", "--max-params", "1B"), ("--min-params 7B", "--max-params 1B")),
        (("--min-params", "1000001", "--max-params", "1M"), ("--min-params 1000001", "--max-params 1M")),
        (
            ("--cutoff-after", "2024-06", "--cutoff-before", "2023"),
            ("--cutoff-after 2024-06", "--cutoff-before 2023"),
        ),
        (("--cutoff-after", "2024-01-01", "--cutoff-before", "2024"), ("--cutoff-after", "--cutoff-before")),
    ],
)
def test_a_range_nothing_can_be_in_is_an_error_not_an_empty_list(
    arc, command: str, args: tuple[str, ...], names: tuple[str, ...]
) -> None:
    """Swapped bounds printed "no snapshots match", which hides the mistake; they name both options instead."""
    result = arc.fail(command, *args)
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and all(name in line for name in names), line


def test_a_range_of_one_value_is_a_search(arc, tmp_path) -> None:
    from modelfactory import write_model

    arc("push", write_model(tmp_path / "m"), "acme/m:v1", "--cutoff", "2023-05-01", "--no-progress")
    [row] = arc.json("ls")
    count = str(row["parameters"])
    assert [r["model"] for r in arc.json("ls", "--min-params", count, "--max-params", count)] == ["acme/m"]
    found = arc.json("ls", "--cutoff-after", "2023-04-30", "--cutoff-before", "2023-05-02")
    assert [r["model"] for r in found] == ["acme/m"]
