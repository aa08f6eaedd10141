"""`token create --namespace NS` and `token ls`: where each push token may push, said when it is made and listed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixture's type only: importing conftest by name clashes when tests/transfer runs too
    from conftest import ArchiveCli


def test_create_says_an_unlimited_push_token_reaches_every_namespace(arc: ArchiveCli) -> None:
    made = arc("token", "create", "--scope", "push", "--name", "ci")
    assert made.stdout.splitlines()[0].startswith("marc_")  # the token itself stays the first line
    assert "can push to every namespace; --namespace limits it" in made.stdout
    limited = arc("token", "create", "--scope", "push", "--namespace", "acme", "--namespace", "beta")
    assert "can push only to namespaces acme, beta" in limited.stdout
    assert "every namespace" not in limited.stdout
    reader = arc("token", "create", "--scope", "read")
    assert "namespace" not in reader.stdout  # a read token pushes nowhere: nothing to say


def test_ls_shows_each_tokens_namespaces_in_text_and_json(arc: ArchiveCli) -> None:
    arc("token", "create", "--scope", "push", "--name", "wide")
    arc(
        "token", "create", "--scope", "push", "--name", "narrow", "--namespace", "beta", "--namespace", "acme"
    )
    made = arc.json(
        "token", "create", "--scope", "push", "--name", "twice", "--namespace", "acme", "--namespace", "acme"
    )
    assert made["namespaces"] == ["acme"] and made["token"].startswith("marc_")
    arc("token", "create", "--scope", "admin", "--name", "root")
    listed = {t["name"]: t["namespaces"] for t in arc.json("token", "ls")}
    assert listed == {"wide": "all", "narrow": ["acme", "beta"], "twice": ["acme"], "root": "all"}
    text = {line.split()[2]: line for line in arc("token", "ls").stdout.splitlines()}
    assert "namespaces: all" in text["wide"] and "namespaces: acme,beta" in text["narrow"]
    assert "namespaces: all" in text["root"]


@pytest.mark.parametrize("namespace", ["../x", "acme/pub", "", "-lead", "a" * 101, "acme\n"])
def test_create_refuses_a_namespace_no_ref_could_have(arc: ArchiveCli, namespace: str) -> None:
    refused = arc.fail("token", "create", "--scope", "push", "--namespace", namespace)
    assert "invalid namespace" in refused.stderr
    assert arc.json("token", "ls") == []  # no token was made


@pytest.mark.parametrize("scope", ["read", "admin"])
def test_only_push_tokens_take_namespaces(arc: ArchiveCli, scope: str) -> None:
    refused = arc.fail("token", "create", "--scope", scope, "--namespace", "acme")
    assert "only a push token can be limited to namespaces" in refused.stderr
    assert arc.json("token", "ls") == []


@pytest.mark.parametrize("name", ["token:1", "token:007", "token:"])
def test_create_refuses_a_name_a_grant_would_read_as_a_token_id(arc: ArchiveCli, name: str) -> None:
    """A grant to token:1 names token 1 by its id; a token named "token:1" must not be covered by it."""
    refused = arc.fail("token", "create", "--scope", "read", "--name", name)
    [line] = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "token:<id>" in line, line
    assert arc.json("token", "ls") == []
