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
    for option in ("--cutoff", "--released"):
        result = arc.fail("push", folder, "acme/m:v1", option, "")
        assert result.exit_code == 2 and "is empty" in result.stderr
    assert arc.json("ls") == []
