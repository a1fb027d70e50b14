"""Build options a user types: tags, build args, targets."""

from __future__ import annotations

import pytest

from webapp.builds.options import parse_bool, parse_build_args, validate_builder, validate_tag, validate_target
from webapp.errors import BadRequest


@pytest.mark.parametrize("tag", [
    "app", "demo/app:1", "registry.example.com:5000/team/app:v1.2-rc_3", "localhost/app", "a__b/c-d.e:latest",
    "Registry.Example.com/app",
])
def test_valid_image_names_are_accepted(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(("tag", "why"), [
    ("Demo/app", "lowercase"),
    ("app:", "after ':'"),
    ("app:-1", "after ':'"),
    ("app@sha256:abc", "digest"),
    ("app//x", "(empty)"),
    ("my app", "lowercase"),
    ("a" * 256, "255"),
    ("app:" + "x" * 129, "after ':'"),
    ("-app", "lowercase"),
])
def test_invalid_image_names_are_refused_with_a_reason(tag: str, why: str) -> None:
    with pytest.raises(BadRequest) as exc:
        validate_tag(tag)
    assert exc.value.code == "invalid_tag"
    assert why in exc.value.message


def test_build_args_are_a_json_object_of_names_to_text() -> None:
    assert parse_build_args('{"VERSION": "1.2", "N": 3}') == {"VERSION": "1.2", "N": "3"}
    assert parse_build_args("") == {}
    assert parse_build_args(None) == {}


@pytest.mark.parametrize(("text", "words"), [
    ("{VERSION: 1}", "not valid JSON"),
    ('["A", "B"]', "not a list"),
    ('{"1A": "x"}', "not a valid build arg name"),
    ('{"A": {"nested": 1}}', "text or number"),
    ('{"A": true}', "text or number"),
])
def test_malformed_build_args_are_refused_with_a_sentence(text: str, words: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_build_args(text)
    assert exc.value.code == "invalid_build_args"
    assert words in exc.value.message


def test_targets_builders_and_booleans() -> None:
    assert validate_target(" final ") == "final"
    assert validate_target("") is None
    with pytest.raises(BadRequest):
        validate_target("final stage")
    assert validate_builder(None) is None and validate_builder("auto") is None  # the server's default
    assert validate_builder(" BuildKit ") == "buildkit"
    with pytest.raises(BadRequest, match="not a builder"):
        validate_builder("kaniko")
    assert parse_bool("true", "no_cache") and not parse_bool("false", "no_cache") and not parse_bool(None, "x")
    with pytest.raises(BadRequest):
        parse_bool("maybe", "no_cache")


@pytest.mark.parametrize("tag", ["foo\n/bar", "app:1\n", "app\n"])
def test_a_trailing_newline_does_not_slip_through_validation(tag: str) -> None:
    with pytest.raises(BadRequest):
        validate_tag(tag)


def test_a_build_arg_name_with_a_newline_is_refused() -> None:
    with pytest.raises(BadRequest):
        parse_build_args('{"A\\n": "x"}')
