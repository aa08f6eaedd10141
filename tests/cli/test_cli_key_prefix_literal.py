"""``keys trust``/``distrust`` take a fingerprint prefix as text: ``%%%%`` or ``____`` is no prefix of any key (it
was a LIKE pattern matching every key, so with one key known it named that key)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", ["trust", "distrust"])
@pytest.mark.parametrize("prefix", ["%%%%", "____"])
def test_a_wildcard_fingerprint_prefix_names_no_key(arc, command: str, prefix: str) -> None:
    result = arc.fail("keys", command, prefix)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {prefix!r} names no known keys; it must name exactly one (see `modelarc keys list`)"
    )
    assert [k["trusted"] for k in arc.json("keys", "list")] == [True]


@pytest.mark.parametrize("command", ["trust", "distrust"])
def test_a_prefix_under_four_characters_is_called_too_short(arc, command: str) -> None:
    """Three characters of the only key's fingerprint were refused as "does not name exactly one known key",
    which it did; the rule is the length."""
    (key,) = arc.json("keys", "list")
    for prefix in (key["fingerprint"][:3], "%"):
        result = arc.fail("keys", command, prefix)
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {prefix!r} is too short: give at least 4 characters of a fingerprint (`modelarc keys list`)"
        )
    assert [k["trusted"] for k in arc.json("keys", "list")] == [True]
    arc("keys", "trust", key["fingerprint"][:4])  # four are enough
