"""A model card from a Hub endpoint is hostile input (archive/remote/hf_card.py): a 1 KB README of nested YAML
aliases took 1.36 GB and left a 312 MB catalog row; now its front matter is read without aliases, bounded, and only
short strings are taken from it."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from modelfactory import tiny_tensors, write_model

from modelarc.archive.remote.hf_card import MAX_CARD_BYTES, card_list, card_text, read_card

BOMB = (
    "---\nlicense: apache-2.0\na: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    + "datasets: *i\nbase_model: *i\n---\n# bomb\n"
)


def test_an_alias_bomb_is_no_card_and_costs_little(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(BOMB)
    assert len(BOMB) < 2000
    # in a child limited to 512 MB of address space: expanding the aliases would need gigabytes
    probe = f"from modelarc.archive.remote.hf_card import read_card; print(read_card(__import__('pathlib').Path({str(readme)!r})))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}"


def test_a_plain_card_is_read(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("---\nlicense: mit\nbase_model: [org/a, org/b]\ndatasets: the-pile\n---\n# card\n")
    card = read_card(readme)
    assert card_text(card["license"]) == "mit"
    assert card_list(card["base_model"]) == ["org/a", "org/b"] and card_list(card["datasets"]) == ["the-pile"]


@pytest.mark.parametrize(
    "front",
    ["license: {a: b}", "license: [" + ", ".join(["x"] * 5) + "]", "license: " + "x" * 300, "license: true"],
)
def test_what_is_not_a_short_string_is_not_taken(tmp_path: Path, front: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"---\n{front}\n---\n")
    assert card_text(read_card(readme).get("license")) is None


def test_a_card_past_the_bound_or_a_fifo_is_no_card(tmp_path: Path) -> None:
    big = tmp_path / "README.md"
    big.write_text("---\nlicense: mit\n---\n" + "x" * MAX_CARD_BYTES)
    assert read_card(big) == {}
    fifo = tmp_path / "fifo.md"
    os.mkfifo(fifo)
    assert read_card(fifo) == {}  # not waited on
    assert card_list(["a"] * 65) == [] and card_list([1, "b", None]) == ["1", "b"]


def test_an_import_of_a_repo_whose_card_is_a_bomb_takes_the_weights_and_nothing_from_the_card(
    arc, hub, tmp_path: Path
) -> None:
    served = write_model(tmp_path / "served", tiny_tensors(seed=2), extra_files={"README.md": BOMB.encode()})
    hub.add("org/bomb", served)
    arc("push", "hf://org/bomb", "org/bomb:v1")
    shown = arc.json("show", "org/bomb:v1")
    assert shown["license"] is None
    [event] = arc.json("audit", "--action", "import")
    assert event["details"]["datasets"] == [] and event["details"]["base_model"] == []
