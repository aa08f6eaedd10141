"""Numbers given on the command line are bounded where they are parsed: an id or limit past the catalog's 64-bit
integers, a seed past torch's, or a NaN or infinite float is one `Error:` line, never an OverflowError traceback
from the database driver nor a NaN silently accepted."""

import base64
import json
from pathlib import Path

import pytest
from modelfactory import finetune, tiny_tensors, write_model

HUGE = "99999999999999999999999"
ID_MAX = str(2**31 - 1)  # the largest id every catalog can hold (PostgreSQL INTEGER): a clean "not found"


def _seed(arc, folder: Path):
    base = tiny_tensors()
    arc("push", write_model(folder / "a", base), "acme/tiny:v1")
    arc("push", write_model(folder / "b", finetune(base, ["model.layers.0.mlp.weight"])), "acme/tiny:v2")
    return arc


# One seeded archive per backend, shared by the module's tests: they fail before changing it, or read it, or (the
# token test) gate acme/tiny, which no other test here looks at. The scrub that runs has an archive of its own: it
# writes the audit entry test_scrub_refuses_a_float_that_is_not_finite looks for.
@pytest.fixture(scope="module")
def seeded(module_arc, tmp_path_factory: pytest.TempPathFactory):
    return _seed(module_arc, tmp_path_factory.mktemp("models"))


@pytest.fixture
def own_seeded(arc, tmp_path: Path):
    return _seed(arc, tmp_path)


# For tests of option parsing: the value is refused before any query (by click, or by `access decide`'s own check of
# its argument), so nothing of the catalog's backend is exercised and SQLite alone suffices; the seeded archive is
# there so that a value let through would run. PostgreSQL's narrower ids are covered by the tests that query.
parsing_only = pytest.mark.parametrize("module_database_url", ["sqlite"], indirect=True)


@parsing_only
@pytest.mark.parametrize(
    "args",
    [
        ("audit", "--limit", HUGE),
        ("ls", "--limit", HUGE),
        ("timeline", "--limit", HUGE),
        ("data", "ls", "--limit", HUGE),
        ("diff", "acme/tiny:v1", "acme/tiny:v2", "--limit", HUGE),
        ("token", "revoke", HUGE),
        ("token", "revoke", str(2**31)),  # past PostgreSQL's INTEGER ids
        ("rerun", HUGE),
        ("rerun", str(2**31)),
        ("access", "decide", HUGE, "grant", "--reason", "r"),
        ("access", "decide", str(2**31), "grant", "--reason", "r"),
        ("run", "acme/tiny:v1", "--prompt", "hi", "--seed", HUGE),
        (
            "run",
            "acme/tiny:v1",
            "--prompt",
            "hi",
            "--seed",
            str(2**64),
        ),  # torch.manual_seed's range ends below
        ("run", "acme/tiny:v1", "--prompt", "hi", "--seed", "-1"),
        ("scrub", "--max-bytes", HUGE),
        ("serve", "--port", "70000"),
    ],
)
def test_integer_past_its_range_is_one_error_line(seeded, args) -> None:
    result = seeded.fail(*args)
    assert result.exit_code == 2
    assert "range" in result.stderr or "not a request id" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("token", "revoke", ID_MAX), "no token"),
        (("rerun", ID_MAX), "no run record"),
        (("access", "decide", ID_MAX, "grant", "--reason", "r"), "no access request"),
    ],
)
def test_the_largest_id_is_looked_up_and_not_found(seeded, args, message) -> None:
    result = seeded.fail(*args)
    assert result.exit_code == 3 and message in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("audit", "--limit", str(2**63 - 2)),
        ("ls", "--limit", str(2**63 - 2)),
        ("timeline", "--limit", str(2**63 - 2)),
        ("data", "ls", "--limit", str(2**63 - 2)),
        ("diff", "acme/tiny:v1", "acme/tiny:v2", "--limit", str(2**63 - 2)),
    ],
)
def test_the_largest_limit_is_accepted(seeded, args) -> None:
    seeded(*args)


def test_the_largest_scrub_max_bytes_is_accepted(own_seeded) -> None:
    own_seeded("scrub", "--max-bytes", str(2**63 - 1), "--no-progress")


@parsing_only
@pytest.mark.parametrize("option", ["--max-seconds", "--rate"])
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity"])
def test_scrub_refuses_a_float_that_is_not_finite(seeded, option, value) -> None:
    result = seeded.fail("scrub", option, value)
    assert result.exit_code == 2 and option in result.stderr
    assert seeded.json("audit", "--action", "scrub") == []  # no scrub ran


@parsing_only
@pytest.mark.parametrize(
    "args", [("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "nan"), ("--top-p", "inf")]
)
def test_run_refuses_a_float_that_is_not_finite(seeded, args) -> None:
    result = seeded.fail("run", "acme/tiny:v1", "--prompt", "hi", *args)
    assert result.exit_code == 2 and args[0] in result.stderr


def test_a_token_id_past_the_catalogs_ids_is_not_found(seeded) -> None:
    seeded("access", "set", "acme/tiny", "gated", "--reason", "r")
    result = seeded.fail("access", "grant", "acme/tiny", "token:99999999999", "--reason", "r")
    assert result.exit_code == 3 and "token 99999999999 does not exist" in result.stderr


def test_a_dataset_cursor_past_the_catalogs_ids_is_refused(seeded) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps({"a": 2**40}).encode()).decode().rstrip("=")
    result = seeded.fail("data", "ls", "--cursor", cursor)
    assert result.exit_code == 2 and "invalid dataset cursor" in result.stderr
