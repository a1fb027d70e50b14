"""Cache insight without an engine: which files a COPY names, and the reason each kind of change gives.

The real-engine scenarios (both builders) are in tests/integration/test_cache_insight.py; these pin down
the cases the engine tests do not reach: multi-stage builds, BuildKit's step-less ENV, globs, --from.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from webapp.builds import context
from webapp.builds.insight import BuildFacts, MissExplainer, base_references, compare, copy_sources
from webapp.builds.manifest import diff, load_manifest, manifest_path, selects, source_pattern
from webapp.builds.options import is_secret_arg


def step(index: int, instruction: str, cached: bool | None, stage: str = "0") -> dict[str, Any]:
    status = "cached" if cached else "built"
    return {"index": index, "stage": stage, "instruction": instruction, "status": status, "cached": cached}


def explain(old: BuildFacts | None, new: BuildFacts, cached: dict[int, bool | None]) -> dict[int, str | None]:
    """Feed the new build's steps in order; index -> the reason's kind."""
    explainer = MissExplainer(new, old)
    layout = new.layout
    kinds = {}
    for index, is_cached in cached.items():
        where = layout.where[index]
        text = layout.stages[where[0]].instructions[where[1]].text
        reason = explainer.observe(step(index, text, is_cached, layout.stages[where[0]].label))
        kinds[index] = reason["kind"] if reason else None
    return kinds


def built(dockerfile: str, **kwargs: Any) -> BuildFacts:
    facts = BuildFacts(1, dockerfile, **kwargs)
    for stage in facts.layout.stages:
        for instruction in stage.instructions:
            facts.steps[instruction.index] = step(instruction.index, instruction.text, False, stage.label)
    return facts


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    ("", "anything/at/all.py", True),
    ("app", "app/main.py", True),
    ("app", "application.py", False),
    ("requirements.txt", "requirements.txt", True),
    ("*.txt", "requirements.txt", True),
    ("*.txt", "docs/notes.txt", False),  # a wildcard does not cross "/"
    ("src/*", "src/pkg/mod.py", True),  # a matched directory brings everything below it
    ("package*.json", "package-lock.json", True),
])
def test_which_context_files_a_copy_source_names(pattern: str, path: str, expected: bool) -> None:
    assert selects(pattern, path) is expected


def test_sources_as_written_become_context_patterns() -> None:
    assert source_pattern(".") == "" and source_pattern("./app/") == "app" and source_pattern("/x/../y") == "y"
    assert source_pattern("https://example.com/a.tgz") is None and source_pattern("$DIR") is None
    assert copy_sources("COPY --chown=1:1 --from=build /out /app") == (["/out"], "build")
    assert copy_sources('COPY ["a b.txt", "c", "/dst/"]') == (["a b.txt", "c"], None)


def test_a_diff_lists_added_removed_and_modified_files_including_mode_changes() -> None:
    old = {"a": ("1" * 64, 0o644), "b": ("2" * 64, 0o644), "c": ("3" * 64, 0o644), "x/y": ("4" * 64, 0o644)}
    new = {"a": ("1" * 64, 0o755), "b": ("9" * 64, 0o644), "d": ("5" * 64, 0o644), "x/y": ("4" * 64, 0o644)}
    changes = diff(old, new)
    assert (changes.added, changes.removed, changes.modified) == (["d"], ["c"], ["a", "b"])
    assert not diff(old, new, ["x"])


def test_packing_a_context_writes_the_manifest_of_what_the_engine_sees(tmp_path: Path) -> None:
    upload = tmp_path / "up.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("Dockerfile", b"FROM scratch\n"), ("keep.txt", b"kept"), ("skip.log", b"x"),
                           (".dockerignore", b"*.log\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    upload.write_bytes(buf.getvalue())
    out = tmp_path / "ctx.tar"
    context.pack_archive(upload, out, "Dockerfile", context.Limits())
    written = load_manifest(out)
    assert written is not None and sorted(written) == [".dockerignore", "Dockerfile", "keep.txt"]
    assert written["keep.txt"] == (hashlib.sha256(b"kept").hexdigest(), 0o644)

    manifest_path(out).unlink()  # a context stored before manifests existed: made from the tar, then kept
    assert load_manifest(out) == written and manifest_path(out).is_file()


def test_secret_looking_arg_names() -> None:
    assert all(is_secret_arg(n) for n in ("DB_PASSWORD", "api_token", "SecretKey", "NPM_AUTH", "AWS_CREDS"))
    assert not any(is_secret_arg(n) for n in ("MIRROR", "VERSION", "PYTHON"))


def test_a_changed_env_with_no_step_of_its_own_is_named_for_the_next_step() -> None:
    old = built("FROM base\nENV MODE=one\nRUN make\n")
    new = BuildFacts(2, "FROM base\nENV MODE=two\nRUN make\n")
    assert explain(old, new, {1: None, 3: False}) == {1: None, 3: "instruction_changed"}
    reason = MissExplainer(new, old).observe(step(3, "RUN make", False))
    assert reason is not None and (reason["old"], reason["new"]) == ("ENV MODE=one", "ENV MODE=two")


def test_a_stage_built_from_a_stage_that_missed_points_at_that_miss() -> None:
    dockerfile = ("FROM base AS deps\nCOPY req.txt .\nRUN install\n"
                  "FROM deps AS app\nCOPY . .\n"
                  "FROM base\nCOPY --from=deps /out /out\nRUN true\n")
    manifest = {"req.txt": ("1" * 64, 0o644), "main.py": ("2" * 64, 0o644)}
    old = built(dockerfile, manifest=lambda: dict(manifest))
    changed = {**manifest, "req.txt": ("3" * 64, 0o644)}
    new = BuildFacts(2, dockerfile, manifest=lambda: changed)
    kinds = explain(old, new, {1: None, 2: False, 3: False, 4: None, 5: False, 6: None, 7: False, 8: False})
    assert kinds == {1: None, 2: "files_changed", 3: "parent_missed", 4: None, 5: "parent_missed", 6: None,
                     7: "parent_missed", 8: "parent_missed"}
    explainer = MissExplainer(BuildFacts(2, dockerfile, manifest=lambda: changed), old)
    for index, cached in ((2, False), (3, False)):
        explainer.observe(step(index, "", cached, "deps"))
    via_from = explainer.observe(step(5, "COPY . .", False, "app"))
    assert via_from is not None and via_from["step"] == 2 and via_from["via"] == "FROM deps"
    via_copy = explainer.observe(step(7, "COPY --from=deps /out /out", False, "2"))
    assert via_copy is not None and via_copy["step"] == 2 and via_copy["via"] == "COPY --from=deps"


def test_base_images_are_the_froms_that_name_no_stage_with_global_args_expanded() -> None:
    text = "ARG PY=3.11\nFROM python:${PY}-slim AS deps\nFROM deps\nFROM scratch\nFROM busybox\n"
    assert base_references(text, {}) == ["python:3.11-slim", "busybox"]
    assert base_references(text, {"PY": "3.12"}) == ["python:3.12-slim", "busybox"]


def test_a_global_arg_in_from_changes_the_base_image() -> None:
    text = "ARG PY=3.11\nFROM python:${PY}\nRUN true\n"
    old = built(text, args={"PY": "3.11"})
    new = BuildFacts(2, text, args={"PY": "3.12"})
    reason = MissExplainer(new, old).observe(step(3, "RUN true", False))
    assert reason is not None and reason["kind"] == "base_image_changed"
    assert (reason["old_image"], reason["image"]) == ("python:3.11", "python:3.12")


def test_an_arg_a_copy_does_not_name_is_not_its_reason() -> None:
    text = "FROM base\nARG V\nCOPY a .\n"
    old = built(text, args={"V": "1"}, manifest=lambda: {"a": ("1" * 64, 0o644)})
    new = BuildFacts(2, text, args={"V": "2"}, manifest=lambda: {"a": ("2" * 64, 0o644)})
    assert explain(old, new, {1: None, 3: False})[3] == "files_changed"


def test_compare_aligns_rows_by_stage_and_position_and_masks_secret_args() -> None:
    a = built("FROM base\nRUN one\n", args={"TOKEN": "s3cret", "V": "1"})
    b = built("FROM base\nRUN two\nRUN three\n", args={"TOKEN": "other", "V": "1"})
    compared = compare(a, b)
    assert [(r["a"] and r["a"]["instruction"], r["b"]["instruction"]) for r in compared["rows"]] == [
        ("FROM base", "FROM base"), ("RUN one", "RUN two"), (None, "RUN three")]
    assert [r["same_instruction"] for r in compared["rows"]] == [True, False, False]
    assert compared["args"] == [{"name": "TOKEN", "a": "********", "b": "********", "secret": True}]
    assert compared["files"] is None  # no manifests known
