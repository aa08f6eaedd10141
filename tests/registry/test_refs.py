import pytest

from modelarc.errors import InvalidRefError
from modelarc.registry.refs import Ref, check_tag, parse_model_name, parse_ref


@pytest.mark.parametrize(
    "text, ref",
    [
        ("acme/tiny:v1", Ref("acme", "tiny", tag="v1")),
        ("acme/tiny", Ref("acme", "tiny", tag="latest")),
        ("a.b/c-d_e:1.0", Ref("a.b", "c-d_e", tag="1.0")),
        ("acme/tiny@sha256:abcd", Ref("acme", "tiny", digest="sha256:abcd")),
    ],
)
def test_valid_refs(text: str, ref: Ref) -> None:
    assert parse_ref(text) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "acme",
        "/tiny",
        "acme/",
        "acme/tiny:",
        "acme/tiny@abcd",
        "acme/tiny@sha256:ab",
        "acme/tiny@sha256:ABCD",
        "../x:v1",
        "acme/ti ny",
        "acme/tiny:v1:v2",
        "a/b/c",
    ],
)
def test_invalid_refs(text: str) -> None:
    with pytest.raises(InvalidRefError):
        parse_ref(text)


@pytest.mark.parametrize(
    "ref, text",
    [
        (Ref("acme", "tiny", tag="v1"), "acme/tiny:v1"),
        (Ref("acme", "tiny", digest="sha256:abcd"), "acme/tiny@sha256:abcd"),
        (Ref("acme", "tiny"), "acme/tiny"),  # the model alone: it was "acme/tiny:None" in messages
    ],
)
def test_a_ref_prints_as_it_is_written(ref: Ref, text: str) -> None:
    assert str(ref) == text


@pytest.mark.parametrize("text", ["acme/tiny:v1\n", "acme/tiny\n", "acme/tiny@sha256:abcd\n", "acme\n/tiny"])
def test_a_final_newline_is_no_part_of_a_ref(text: str) -> None:
    """``^...$`` under ``re.match`` lets ``$`` match before a final newline: ``acme/tiny:v1\\n`` named tag v1."""
    with pytest.raises(InvalidRefError):
        parse_ref(text)


def test_a_final_newline_is_no_part_of_a_tag_or_model_name() -> None:
    assert check_tag("v2") == "v2" and parse_model_name("acme/tiny") == ("acme", "tiny")
    with pytest.raises(InvalidRefError, match="invalid tag"):
        check_tag("v2\n")
    with pytest.raises(InvalidRefError, match="invalid model name"):
        parse_model_name("acme/tiny\n")


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("a/c1@sha256:20", "a digest prefix is 4 to 64"),
        ("a/c1:-x", "a tag starts with a letter, digit or _"),
        ("-a/c1:v1", "starting with a letter or digit"),
    ],
)
def test_a_refused_ref_names_the_rule_it_broke(text: str, rule: str) -> None:
    """A digest prefix of "20" is hex and "-x" uses only the characters the message listed: the rule was not given."""
    with pytest.raises(InvalidRefError) as refused:
        parse_ref(text)
    assert rule in str(refused.value)


def test_a_refused_tag_names_its_first_character_rule() -> None:
    with pytest.raises(InvalidRefError) as refused:
        check_tag("-x")
    assert "starting with a letter, digit or _" in str(refused.value)
