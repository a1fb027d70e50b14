"""What a builder cannot do here is said up front; registry failures get a sentence of what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.builds.compat import check_dockerfile, explain_engine_error
from webapp.errors import BadRequest

STREAMS = Path(__file__).resolve().parents[1] / "fixtures" / "streams"


@pytest.mark.parametrize("dockerfile", [
    "FROM scratch\nRUN --mount=type=cache,target=/c true\n",
    "FROM scratch\nCOPY --chmod=755 a /a\n",
    "FROM scratch\nRUN <<EOF\necho hi\nEOF\n",
])
def test_buildkit_takes_what_the_classic_builder_refuses(dockerfile: str) -> None:
    check_dockerfile(dockerfile, "buildkit")
    with pytest.raises(BadRequest) as exc:
        check_dockerfile(dockerfile, "classic")
    assert exc.value.code == "builder_unsupported"
    assert "step 2" in exc.value.message and "Choose BuildKit" in exc.value.message


def test_secret_and_ssh_mounts_are_refused_on_buildkit_with_what_to_do_instead() -> None:
    with pytest.raises(BadRequest, match="needs a client session") as exc:
        check_dockerfile("FROM scratch\nRUN --mount=type=secret,id=tok cat /run/secrets/tok\n", "buildkit")
    assert "build arg or a file in the context" in exc.value.message


def test_ordinary_dockerfiles_pass_both_builders() -> None:
    text = "# a comment\nFROM scratch AS base\nCOPY --from=base . /app\nRUN ls --chmod -la && echo a<b\n"
    check_dockerfile(text, "classic")
    check_dockerfile(text, "buildkit")


def test_a_syntax_line_that_needs_a_registry_is_explained() -> None:
    recorded = (STREAMS / "bk_syntax.jsonl").read_text()
    message = next(line for line in recorded.splitlines() if "errorDetail" in line)
    import json

    text = json.loads(message)["errorDetail"]["message"]
    explained = explain_engine_error(text, pull=False)
    assert explained.startswith(text)
    assert "remove it to use the engine's built-in frontend" in explained


def test_pull_against_an_unreachable_registry_is_explained() -> None:
    text = 'failed to solve: failed to do request: Head "https://registry-1.docker.io/v2/x": no such host'
    assert "turn it off to use the images the engine already has" in explain_engine_error(text, pull=True)
    assert "build or load that image on the engine first" in explain_engine_error(text, pull=False)


def test_other_errors_are_left_as_the_engine_said_them() -> None:
    text = "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"
    assert explain_engine_error(text, pull=True) == text
