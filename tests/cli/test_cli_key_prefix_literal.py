"""``keys trust``/``distrust`` take a fingerprint prefix as text: ``%%%%`` or ``____`` is no prefix of any key (it
was a LIKE pattern matching every key, so with one key known it named that key)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("command", ["trust", "distrust"])
@pytest.mark.parametrize("prefix", ["%%%%", "____", "%"])
def test_a_wildcard_fingerprint_prefix_names_no_key(arc, command: str, prefix: str) -> None:
    result = arc.fail("keys", command, prefix)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {prefix!r} does not name exactly one known key (see `modelarc keys list`)"
    )
    assert [k["trusted"] for k in arc.json("keys", "list")] == [True]
