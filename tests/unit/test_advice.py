"""Dockerfile advice: each rule fires where it should, at the right line, with a fix that silences it.

The promise that matters most: a Dockerfile that copies its dependency manifest before the install never
gets ``copy-before-install``, whatever the ecosystem.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import pytest

from webapp.builds.advice import CONTEXT_BYTES_LIMIT, CONTEXT_FILES_LIMIT, Advice, _locate, advise
from webapp.builds.buildkit import parse_dockerfile
from webapp.builds.dockerignore import DockerIgnore


def rules(text: str, **context: Any) -> list[tuple[int, str]]:
    return [(a.line, a.rule) for a in advise(text, **context)]


def only(text: str, rule: str, **context: Any) -> Advice:
    found = [a for a in advise(text, **context) if a.rule == rule]
    assert len(found) == 1, found
    return found[0]


def apply(text: str, advice: Advice, last_line: int) -> str:
    """The Dockerfile with lines advice.line..last_line replaced by the suggestion."""
    lines = text.split("\n")
    return "\n".join(lines[: advice.line - 1] + advice.suggestion.split("\n") + lines[last_line:])


# --- copy-before-install, every ecosystem ------------------------------------------------------------


@dataclass(frozen=True)
class Ecosystem:
    name: str
    base: str
    install: str  # the RUN line, as a bad Dockerfile has it right after COPY . .
    fixed: str  # the suggestion expected for it (the COPY . . on line 3 through the install on line 4)
    good: str  # a well-ordered Dockerfile body, after FROM and WORKDIR


ECOSYSTEMS = [
    Ecosystem(
        "pip",
        "python:3.12-slim",
        "RUN pip install --no-cache-dir -r requirements.txt",
        "COPY requirements.txt .\nRUN pip install --no-cache-dir -r requirements.txt\nCOPY . .",
        "COPY requirements.txt .\nRUN pip install --no-cache-dir -r requirements.txt\nCOPY . .",
    ),
    Ecosystem(
        "pip project",
        "python:3.12-slim",
        "RUN pip install --no-cache-dir .",
        "COPY requirements.txt .\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "COPY . .\n"
        "RUN pip install --no-cache-dir .",
        "COPY requirements.txt .\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "COPY . .\n"
        "RUN pip install --no-cache-dir .",
    ),
    Ecosystem(
        "poetry",
        "python:3.12-slim",
        "RUN poetry install --no-interaction --no-ansi",
        "COPY pyproject.toml poetry.lock ./\n"
        "RUN poetry install --no-root --no-interaction --no-ansi\n"
        "COPY . .\n"
        "RUN poetry install --no-interaction --no-ansi",
        "COPY pyproject.toml poetry.lock ./\n"
        "RUN poetry install --no-root --no-interaction\n"
        "COPY . .\n"
        "RUN poetry install --no-interaction",
    ),
    Ecosystem(
        "pipenv",
        "python:3.12-slim",
        "RUN pipenv install --system --deploy",
        "COPY Pipfile Pipfile.lock ./\nRUN pipenv install --system --deploy\nCOPY . .",
        "COPY Pipfile Pipfile.lock ./\nRUN pipenv install --system --deploy\nCOPY . .",
    ),
    Ecosystem(
        "uv",
        "python:3.12-slim",
        "RUN uv sync --frozen",
        "COPY pyproject.toml uv.lock ./\nRUN uv sync --no-install-project --frozen\nCOPY . .\nRUN uv sync --frozen",
        "COPY pyproject.toml uv.lock ./\nRUN uv sync --frozen --no-install-project\nCOPY . .\nRUN uv sync --frozen",
    ),
    Ecosystem(
        "npm",
        "node:20-slim",
        "RUN npm ci",
        "COPY package*.json ./\nRUN npm ci\nCOPY . .",
        "COPY package*.json ./\nRUN npm ci\nCOPY . .\nRUN npm run build",
    ),
    Ecosystem(
        "yarn",
        "node:20-slim",
        "RUN yarn install --frozen-lockfile",
        "COPY package.json yarn.lock ./\nRUN yarn install --frozen-lockfile\nCOPY . .",
        "COPY package.json yarn.lock ./\nRUN yarn --frozen-lockfile\nCOPY . .\nRUN yarn build",
    ),
    Ecosystem(
        "pnpm",
        "node:20-slim",
        "RUN pnpm install --frozen-lockfile",
        "COPY package.json pnpm-lock.yaml ./\nRUN pnpm install --frozen-lockfile\nCOPY . .",
        "COPY package.json pnpm-lock.yaml ./\nRUN pnpm install --frozen-lockfile\nCOPY . .\nRUN pnpm run build",
    ),
    Ecosystem(
        "go",
        "golang:1.22",
        "RUN go mod download",
        "COPY go.mod go.sum ./\nRUN go mod download\nCOPY . .",
        "COPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build -o /out/app .",
    ),
    Ecosystem(
        "cargo",
        "rust:1.79",
        "RUN cargo build --release",
        "COPY Cargo.toml Cargo.lock ./\n"
        "RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && cargo build --release && rm -rf src\n"
        "COPY . .\n"
        "RUN find src -name '*.rs' -exec touch {} + && cargo build --release",
        "COPY Cargo.toml Cargo.lock ./\n"
        "RUN mkdir src && echo 'fn main() {}' > src/main.rs && cargo fetch\n"
        "COPY . .\n"
        "RUN cargo build --release",
    ),
    Ecosystem(
        "bundler",
        "ruby:3.3",
        "RUN bundle install --jobs 4",
        "COPY Gemfile Gemfile.lock ./\nRUN bundle install --jobs 4\nCOPY . .",
        "COPY Gemfile Gemfile.lock ./\nRUN bundle install\nCOPY . .",
    ),
    Ecosystem(
        "composer",
        "composer:2.7",
        "RUN composer install --no-dev",
        "COPY composer.json composer.lock ./\n"
        "RUN composer install --no-scripts --no-autoloader --no-dev\n"
        "COPY . .\n"
        "RUN composer install --no-dev",
        "COPY composer.json composer.lock ./\n"
        "RUN composer install --no-dev --no-scripts --no-autoloader\n"
        "COPY . .\n"
        "RUN composer dump-autoload --optimize",
    ),
]
IDS = [e.name for e in ECOSYSTEMS]


def bad(e: Ecosystem) -> str:
    return f'FROM {e.base}\nWORKDIR /app\nCOPY . .\n{e.install}\nCMD ["run"]\n'


@pytest.mark.parametrize("e", ECOSYSTEMS, ids=IDS)
def test_the_tree_copied_before_the_install_gets_one_advice_at_the_copy(e: Ecosystem) -> None:
    found = advise(bad(e))
    assert [(a.line, a.rule) for a in found] == [(3, "copy-before-install")]
    assert "every change to any file re-runs the install" in found[0].message
    assert "reuse the cached install layer" in found[0].message
    assert "(line 4)" in found[0].message


@pytest.mark.parametrize("e", ECOSYSTEMS, ids=IDS)
def test_the_suggestion_copies_the_manifest_first_and_keeps_the_install_command(e: Ecosystem) -> None:
    assert only(bad(e), "copy-before-install").suggestion == e.fixed


@pytest.mark.parametrize("e", ECOSYSTEMS, ids=IDS)
def test_a_dockerfile_with_the_suggestion_applied_gets_no_advice(e: Ecosystem) -> None:
    text = bad(e)
    fixed = apply(text, only(text, "copy-before-install"), last_line=4)
    assert e.fixed in fixed
    assert advise(fixed) == []


@pytest.mark.parametrize("e", ECOSYSTEMS, ids=IDS)
def test_a_dockerfile_that_copies_its_manifest_first_gets_no_advice(e: Ecosystem) -> None:
    text = f'FROM {e.base}\nWORKDIR /app\n{e.good}\nCMD ["run"]\n'
    assert advise(text) == []


@pytest.mark.parametrize("e", ECOSYSTEMS, ids=IDS)
def test_the_manifest_copied_first_silences_the_rule_even_with_the_tree_copied_before_the_install(
    e: Ecosystem,
) -> None:
    manifest_copy = e.fixed.split("\n")[0]
    text = f"FROM {e.base}\nWORKDIR /app\n{manifest_copy}\nCOPY . .\n{e.install}\n"
    assert "copy-before-install" not in [a.rule for a in advise(text)]


@pytest.mark.parametrize(
    "manifest_copy, install",
    [
        ("COPY requirements*.txt ./", "RUN pip install --no-cache-dir -r requirements.txt"),
        ("COPY requirements-prod.txt ./", "RUN pip install --no-cache-dir -r requirements-prod.txt"),
        ('COPY ["requirements.txt", "./"]', "RUN pip install --no-cache-dir -r requirements.txt"),
        ("COPY requirements/ ./requirements/", "RUN pip install --no-cache-dir -r requirements/prod.txt"),
        ("COPY --chown=app:app package.json package-lock.json ./", "RUN npm ci --omit=dev"),
        ("COPY *.json ./", "RUN npm install"),
        ("COPY package.json yarn.lock* package-lock.json* pnpm-lock.yaml* ./", "RUN yarn --frozen-lockfile"),
        ("COPY pnpm-lock.yaml ./", "RUN pnpm fetch --prod"),
        ("COPY go.* ./", "RUN go mod download"),
        ("COPY --from=planner /app/recipe.json recipe.json", "RUN cargo chef cook --release && cargo build"),
        ("COPY Gemfile* ./", "RUN bundle install"),
        ("COPY composer.* ./", "RUN composer install --no-dev"),
        ("COPY pyproject.toml ./", "RUN pip install --no-cache-dir ."),
    ],
)
def test_manifests_copied_in_any_usual_spelling_count_as_copied_first(manifest_copy: str, install: str) -> None:
    text = f"FROM python:3.12-slim\nWORKDIR /app\n{manifest_copy}\nCOPY . .\n{install}\n"
    assert "copy-before-install" not in [a.rule for a in advise(text)]


def test_cargo_chef_across_stages_gets_no_advice() -> None:
    text = (
        "FROM lukemathwalker/cargo-chef:0.1.66-rust-1.79 AS chef\n"
        "WORKDIR /app\n"
        "FROM chef AS planner\n"
        "COPY . .\n"
        "RUN cargo chef prepare --recipe-path recipe.json\n"
        "FROM chef AS builder\n"
        "COPY --from=planner /app/recipe.json recipe.json\n"
        "RUN cargo chef cook --release --recipe-path recipe.json\n"
        "COPY . .\n"
        "RUN cargo build --release --bin app\n"
        "FROM debian:bookworm-slim AS runtime\n"
        "COPY --from=builder /app/target/release/app /usr/local/bin/app\n"
        'ENTRYPOINT ["/usr/local/bin/app"]\n'
    )
    assert advise(text) == []


@pytest.mark.parametrize(
    "install",
    [
        "RUN pip install --no-cache-dir gunicorn",
        "RUN npm install -g pnpm",
        "RUN npm run build",
        "RUN yarn build",
        "RUN yarn add left-pad",
        "RUN go build -o /app .",
        "RUN poetry install --only-root",
        "RUN pipenv install requests",
        "RUN bundle exec rake assets:precompile",
        "RUN composer dump-autoload",
        "RUN echo pip install -r requirements.txt > notes",
    ],
)
def test_commands_that_are_not_a_dependency_install_from_a_manifest_are_left_alone(install: str) -> None:
    text = f"FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\n{install}\n"
    assert "copy-before-install" not in [a.rule for a in advise(text)]


def test_an_install_reading_a_manifest_the_copy_did_not_bring_is_left_alone() -> None:
    text = "FROM python:3.12-slim\nCOPY . /src\nRUN pip install --no-cache-dir -r /opt/requirements.txt\n"
    assert advise(text) == []


def test_an_install_before_the_tree_copy_is_fine() -> None:
    text = (
        "FROM python:3.12-slim\n"
        "WORKDIR /app\n"
        "RUN --mount=type=bind,source=requirements.txt,target=requirements.txt \\\n"
        "    --mount=type=cache,target=/root/.cache/pip \\\n"
        "    pip install -r requirements.txt\n"
        "COPY . .\n"
    )
    assert advise(text) == []


def test_the_copy_destination_and_flags_are_kept_and_a_workdir_in_between_stays_before_the_install() -> None:
    text = (
        "FROM python:3.12-slim\n"
        "COPY --chown=app:app . /srv/app\n"
        "WORKDIR /srv/app\n"
        "RUN python -m pip install --no-cache-dir -r requirements.txt\n"
    )
    advice = only(text, "copy-before-install")
    assert advice.line == 2
    assert advice.suggestion == (
        "COPY --chown=app:app requirements.txt /srv/app/\n"
        "WORKDIR /srv/app\n"
        "RUN python -m pip install --no-cache-dir -r requirements.txt\n"
        "COPY --chown=app:app . /srv/app"
    )
    assert advise(apply(text, advice, 4)) == []


def test_a_relative_copy_moved_past_a_workdir_gets_an_absolute_destination() -> None:
    text = "FROM node:20-slim\nWORKDIR /srv\nCOPY . app\nWORKDIR /srv/app\nRUN npm ci\n"
    advice = only(text, "copy-before-install")
    assert advice.suggestion == "COPY package*.json app/\nWORKDIR /srv/app\nRUN npm ci\nCOPY . /srv/app"
    assert advise(apply(text, advice, 5)) == []


def test_commands_after_the_install_that_need_the_sources_run_after_the_copy() -> None:
    text = "FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN cd web && npm ci && npm run build\n"
    advice = only(text, "copy-before-install")
    assert (
        advice.suggestion == "COPY web/package*.json web/\nRUN cd web && npm ci\nCOPY . .\nRUN cd web && npm run build"
    )
    assert advise(apply(text, advice, 4)) == []


def test_steps_between_the_copy_and_the_install_keep_their_order_after_the_copy() -> None:
    text = (
        "FROM python:3.12-slim\n"
        "WORKDIR /app\n"
        "COPY . .\n"
        "ENV PYTHONDONTWRITEBYTECODE=1\n"
        "RUN chmod +x entrypoint.sh\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
    )
    advice = only(text, "copy-before-install")
    assert advice.suggestion == (
        "COPY requirements.txt .\n"
        "ENV PYTHONDONTWRITEBYTECODE=1\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "COPY . .\n"
        "RUN chmod +x entrypoint.sh"
    )
    assert advise(apply(text, advice, 6)) == []


def test_a_requirements_file_in_a_directory_brings_the_directory_first() -> None:
    text = "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN pip install --no-cache-dir -r requirements/prod.txt\n"
    advice = only(text, "copy-before-install")
    assert advice.suggestion.split("\n")[0] == "COPY requirements/ requirements/"
    assert advise(apply(text, advice, 4)) == []


def test_an_absolute_requirements_path_and_a_cd_are_followed() -> None:
    for install in ("RUN pip install --no-cache-dir -r /app/requirements.txt", "RUN cd /app && pip install -r r.txt"):
        text = f"FROM python:3.12-slim\nCOPY . /app\n{install}\n"
        assert (2, "copy-before-install") in rules(text), install


def test_workdir_from_a_variable_is_followed() -> None:
    text = (
        "FROM python:3.12-slim\n"
        "ENV APP_HOME=/srv/app\n"
        "WORKDIR $APP_HOME\n"
        "COPY . ${APP_HOME}\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
    )
    advice = only(text, "copy-before-install")
    assert advice.suggestion.split("\n")[0] == "COPY requirements.txt ${APP_HOME}/"


def test_two_installs_after_one_copy_get_one_advice_that_fixes_both() -> None:
    text = (
        "FROM nikolaik/python-nodejs:python3.12-nodejs20\n"
        "WORKDIR /app\n"
        "COPY . .\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "RUN npm ci\n"
    )
    advice = only(text, "copy-before-install")
    assert advice.line == 3
    assert advice.suggestion == (
        "COPY requirements.txt .\n"
        "COPY package*.json ./\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "RUN npm ci\n"
        "COPY . ."
    )
    assert advise(apply(text, advice, 5)) == []


# --- copy-before-install with the context known ------------------------------------------------------


def test_with_the_context_known_a_directory_holding_the_manifest_counts_as_the_tree() -> None:
    text = "FROM python:3.12-slim\nWORKDIR /app\nCOPY backend/ .\nRUN pip install --no-cache-dir -r requirements.txt\n"
    paths = ["backend/requirements.txt", "backend/app.py", "frontend/package.json"]
    advice = only(text, "copy-before-install", context_paths=paths)
    assert advice.suggestion.split("\n")[0] == "COPY backend/requirements.txt ."
    assert advise(apply(text, advice, 4), context_paths=paths) == []


def test_without_the_context_a_subdirectory_copy_is_not_assumed_to_hold_the_manifest() -> None:
    text = "FROM python:3.12-slim\nWORKDIR /app\nCOPY backend/ .\nRUN pip install --no-cache-dir -r requirements.txt\n"
    assert advise(text) == []


def test_with_the_context_known_a_copy_that_does_not_hold_the_manifest_is_fine() -> None:
    text = (
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY static/ ./static/\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
    )
    assert advise(text, context_paths=["static/app.css", "requirements.txt"]) == []
    whole = "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN pip install --no-cache-dir -r requirements.txt\n"
    assert advise(whole, context_paths=["app.py", "other.txt"]) == []  # the manifest is not in the context


def test_with_the_context_known_only_the_lock_files_present_are_copied() -> None:
    text = "FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN yarn install --immutable\n"
    paths = ["package.json", "yarn.lock", ".yarnrc.yml", ".yarn/releases/yarn-4.1.1.cjs", "src/index.ts"]
    advice = only(text, "copy-before-install", context_paths=paths)
    assert advice.suggestion == (
        "COPY package.json yarn.lock .yarnrc.yml ./\n"
        "COPY .yarn/releases/ .yarn/releases/\n"
        "RUN yarn install --immutable\n"
        "COPY . ."
    )
    go = "FROM golang:1.22\nWORKDIR /src\nCOPY . .\nRUN go mod download\n"
    assert only(go, "copy-before-install", context_paths=["go.mod", "main.go"]).suggestion.startswith("COPY go.mod .\n")


def test_a_pip_project_install_uses_the_requirements_file_the_context_has() -> None:
    text = "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN pip install --no-cache-dir -e .\n"
    paths = ["pyproject.toml", "requirements-lock.txt", "pkg/__init__.py"]
    advice = only(text, "copy-before-install", context_paths=paths)
    assert advice.suggestion == (
        "COPY requirements-lock.txt .\n"
        "RUN pip install --no-cache-dir -r requirements-lock.txt\n"
        "COPY . .\n"
        "RUN pip install --no-cache-dir -e ."
    )
    assert "pip cannot install only a project's dependencies" in advice.message


def test_a_project_install_in_a_heredoc_keeps_the_heredoc_shape() -> None:
    text = "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nRUN <<EOF\nset -e\n  pip install --no-cache-dir .\nEOF\n"
    advice = only(text, "copy-before-install")
    assert advice.suggestion == (
        "COPY requirements.txt .\n"
        "RUN <<EOF\nset -e\n  pip install --no-cache-dir -r requirements.txt\nEOF\n"
        "COPY . .\n"
        "RUN <<EOF\nset -e\n  pip install --no-cache-dir .\nEOF"
    )
    assert advise(apply(text, advice, 7)) == []


# --- multi-stage --------------------------------------------------------------------------------------


def test_a_manifest_copied_in_another_stage_does_not_count() -> None:
    text = (
        "FROM node:20-slim AS deps\n"
        "WORKDIR /app\n"
        "COPY package*.json ./\n"
        "RUN npm ci\n"
        "FROM node:20-slim AS build\n"
        "WORKDIR /app\n"
        "COPY . .\n"
        "RUN npm ci && npm run build\n"
    )
    assert rules(text) == [(7, "copy-before-install")]


def test_each_stage_is_judged_on_its_own() -> None:
    text = (
        "FROM python:3.12-slim AS build\n"
        "WORKDIR /app\n"
        "COPY . .\n"
        "RUN pip wheel --wheel-dir /wheels -r requirements.txt\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "FROM python:3.12-slim\n"
        "WORKDIR /app\n"
        "COPY requirements.txt .\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
        "COPY . .\n"
    )
    assert rules(text) == [(3, "copy-before-install")]


def test_a_stage_built_on_an_earlier_one_keeps_its_workdir() -> None:
    text = (
        "FROM python:3.12-slim AS base\n"
        "WORKDIR /srv\n"
        "FROM base\n"
        "COPY . /srv\n"
        "RUN pip install --no-cache-dir -r requirements.txt\n"
    )
    assert rules(text) == [(4, "copy-before-install")]


# --- line numbers -------------------------------------------------------------------------------------


def test_comments_blank_lines_directives_and_continuations_shift_the_lines() -> None:
    text = (
        "# syntax=docker/dockerfile:1\n"  # 1
        "\n"  # 2
        "# a comment\n"  # 3
        "FROM python:3.12-slim\n"  # 4
        "\n"  # 5
        "WORKDIR /app\n"  # 6
        "COPY \\\n"  # 7
        "    . \\\n"  # 8
        "    .\n"  # 9
        "# before the install\n"  # 10
        "RUN pip install \\\n"  # 11
        "    # a comment inside the continuation\n"  # 12
        "    --no-cache-dir \\\n"  # 13
        "\n"  # 14
        "    -r requirements.txt\n"  # 15
        'CMD ["python", "app.py"]\n'  # 16
    )
    advice = only(text, "copy-before-install")
    assert advice.line == 7
    assert "(line 11)" in advice.message
    fixed = apply(text, advice, 15)
    assert advise(fixed) == []
    assert advice.suggestion.endswith("COPY \\\n    . \\\n    .")


def test_heredoc_bodies_are_skipped_and_counted() -> None:
    text = (
        "FROM python:3.12-slim\n"  # 1
        "WORKDIR /app\n"  # 2
        "COPY <<EOF /app/notes.txt\n"  # 3
        "COPY . .\n"  # 4 (inside the heredoc: not an instruction)
        "RUN pip install -r requirements.txt\n"  # 5
        "EOF\n"  # 6
        "COPY . .\n"  # 7
        "RUN <<EOT\n"  # 8
        "set -e\n"  # 9
        "pip install --no-cache-dir -r requirements.txt\n"  # 10
        "EOT\n"  # 11
        "ADD app.py /app/\n"  # 12
    )
    assert rules(text) == [(7, "copy-before-install"), (12, "add-instead-of-copy")]
    advice = only(text, "copy-before-install")
    assert advice.suggestion == (
        "COPY requirements.txt .\nRUN <<EOT\nset -e\npip install --no-cache-dir -r requirements.txt\nEOT\nCOPY . ."
    )


def test_crlf_line_endings_and_the_backtick_escape() -> None:
    text = "FROM python:3.12-slim\r\nWORKDIR /app\r\nCOPY . .\r\nRUN pip install \\\r\n  -r requirements.txt\r\n"
    assert rules(text) == [(3, "copy-before-install"), (4, "pip-no-cache-dir")]
    windows = "# escape=`\nFROM python:3.12-slim\nWORKDIR C:/app\nADD `\n  app.py `\n  C:/app/\nRUN echo done\n"
    assert rules(windows) == [(4, "add-instead-of-copy")]


@pytest.mark.parametrize(
    "text",
    [
        "FROM a\nRUN x \\\n\n  # c\n  y\n\nCOPY . .\n",
        "# syntax=docker/dockerfile:1\n# escape=\\\n\nARG X=1\nFROM a:$X AS b\nRUN <<A <<-B\nx\nA\n\ty\n\tB\nRUN z\n",
        "\n\n  # indented comment\n  FROM a\n  run lower \\\n  case\nCOPY <<EOF /x\nRUN not\nEOF\n",
        "FROM a\nRUN echo \\\n",
        "FROM a\r\nRUN b\r\n\r\nRUN c\r\n",
        "# escape=`\nFROM a\nRUN b `\n c\nRUN d \\\nRUN e\n",
    ],
)
def test_the_line_walk_agrees_with_the_parser(text: str) -> None:
    parsed = parse_dockerfile(text)
    written = _locate(text)
    assert [w.pretty.split()[0].upper() for w in written] == [i.keyword for i in parsed]
    lines = text.replace("\r\n", "\n").split("\n")
    for where, instruction in zip(written, parsed, strict=True):
        assert lines[where.first - 1].strip().upper().startswith(instruction.keyword)
        assert where.first <= where.last


# --- apt ----------------------------------------------------------------------------------------------


def test_apt_get_update_alone_is_merged_with_the_install_that_follows() -> None:
    text = "FROM debian:bookworm-slim\nRUN apt-get update\nRUN apt-get install -y curl ca-certificates\n"
    advice = only(text, "apt-update-alone")
    assert advice.line == 2
    assert "line 3" in advice.message
    assert advice.suggestion == (
        "RUN apt-get update \\\n"
        "    && apt-get install -y --no-install-recommends curl ca-certificates \\\n"
        "    && rm -rf /var/lib/apt/lists/*"
    )
    assert advise(apply(text, advice, 3)) == []


def test_apt_update_alone_keeps_what_else_the_install_run_does() -> None:
    text = (
        "FROM ubuntu:24.04\n"
        "RUN apt update\n"
        "ENV DEBIAN_FRONTEND=noninteractive\n"
        "RUN apt-get -q install curl && curl -fsSL https://example.com/setup.sh | sh\n"
    )
    advice = only(text, "apt-update-alone")
    assert advice.suggestion == (
        "RUN apt-get update \\\n"
        "    && apt-get -q install -y --no-install-recommends curl \\\n"
        "    && curl -fsSL https://example.com/setup.sh | sh \\\n"
        "    && rm -rf /var/lib/apt/lists/*"
    )


def test_apt_update_alone_with_no_install_after_it_gets_the_pattern() -> None:
    advice = only("FROM debian:bookworm\nRUN apt-get update -qq\nCOPY . /app\n", "apt-update-alone")
    assert "<packages>" in advice.suggestion
    assert advice.suggestion.endswith("rm -rf /var/lib/apt/lists/*")


@pytest.mark.parametrize(
    "run",
    [
        "RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*",
        "RUN apt-get update \\\n && apt-get upgrade -y \\\n && rm -rf /var/lib/apt/lists/*",
        "RUN --mount=type=cache,target=/var/cache/apt --mount=type=cache,target=/var/lib/apt \\\n"
        "    apt-get update && apt-get install -y --no-install-recommends curl",
        "RUN <<EOF\nset -eux\napt-get update\napt-get install -y --no-install-recommends curl\n"
        "rm -rf /var/lib/apt/lists/*\nEOF",
        "RUN echo apt-get update",
        "RUN apt-get update && ./install-packages.sh && rm -rf /var/lib/apt/lists/*",
        "RUN apt-get update && xargs apt-get install -y --no-install-recommends < packages.txt \\\n"
        "    && rm -rf /var/lib/apt/lists/*",
    ],
)
def test_apt_done_right_gets_no_advice(run: str) -> None:
    assert advise(f"FROM debian:bookworm-slim\n{run}\n") == []


def test_apt_lists_left_in_the_final_image_are_flagged_with_the_cleanup_appended() -> None:
    text = "FROM debian:bookworm-slim\nRUN apt-get update && \\\n    apt-get install -y --no-install-recommends curl\n"
    advice = only(text, "apt-no-clean")
    assert advice.line == 2
    assert advice.suggestion == (
        "RUN apt-get update && \\\n    apt-get install -y --no-install-recommends curl \\\n"
        "    && rm -rf /var/lib/apt/lists/*"
    )
    assert advise(apply(text, advice, 3)) == []


def test_apt_lists_in_a_heredoc_get_the_cleanup_before_its_end() -> None:
    text = (
        "FROM debian:bookworm-slim\nRUN <<EOF\napt-get update\napt-get install -y --no-install-recommends curl\nEOF\n"
    )
    advice = only(text, "apt-no-clean")
    assert advice.suggestion.endswith("curl\nrm -rf /var/lib/apt/lists/*\nEOF")
    assert advise(apply(text, advice, 5)) == []


def test_apt_lists_in_a_builder_stage_do_not_matter() -> None:
    text = (
        "FROM debian:bookworm-slim AS build\n"
        "RUN apt-get update && apt-get install -y build-essential\n"
        "FROM debian:bookworm-slim\n"
        "COPY --from=build /usr/bin/make /usr/bin/make\n"
    )
    assert advise(text) == []


# --- ADD ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "add, copy",
    [
        ("ADD app.py /app/", "COPY app.py /app/"),
        ("ADD --chown=app:app . /app", "COPY --chown=app:app . /app"),
        ("add config /etc/app/", "COPY config /etc/app/"),
        ('ADD ["a b.txt", "/data/"]', 'COPY ["a b.txt", "/data/"]'),
    ],
)
def test_add_of_local_files_gets_copy(add: str, copy: str) -> None:
    advice = only(f"FROM alpine:3.20\n{add}\n", "add-instead-of-copy")
    assert advice.line == 2
    assert advice.suggestion == copy


@pytest.mark.parametrize(
    "add",
    [
        "ADD https://example.com/app.jar /app/",
        "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d "
        "https://example.com/x /x",
        "ADD git@github.com:moby/buildkit.git#v0.10.1 /buildkit",
        "ADD https://github.com/moby/buildkit.git#v0.10.1 /buildkit",
        "ADD rootfs.tar /",
        "ADD rootfs.tar.gz /",
        "ADD rootfs.tgz /",
        "ADD rootfs.tar.bz2 /",
        "ADD rootfs.tar.xz /",
        "ADD vendor/*.tar.gz /opt/",
        "ADD dist/* /opt/",
        "ADD $ARCHIVE /opt/",
        "ADD <<EOF /etc/motd\nhello\nEOF",
    ],
)
def test_add_of_urls_archives_and_unknowns_is_left_alone(add: str) -> None:
    assert advise(f"FROM alpine:3.20\n{add}\n") == []


def test_add_with_a_glob_is_judged_on_the_context_when_known() -> None:
    text = "FROM alpine:3.20\nADD conf/* /etc/app/\n"
    assert rules(text, context_paths=["conf/a.ini", "conf/b.ini"]) == [(2, "add-instead-of-copy")]
    assert rules(text, context_paths=["conf/a.ini", "conf/b.tar"]) == []


# --- .dockerignore ------------------------------------------------------------------------------------

SMALL = "FROM alpine:3.20\nCOPY . /app\n"


@pytest.mark.parametrize(
    "context",
    [
        {"context_files": CONTEXT_FILES_LIMIT},
        {"context_bytes": CONTEXT_BYTES_LIMIT},
        {"context_paths": [".git/HEAD", "app.py"]},
        {"context_paths": ["web/node_modules/left-pad/index.js", "web/index.js"]},
        {"context_files": 10, "context_bytes": 1000, "context_paths": ["node_modules/"]},
    ],
)
def test_no_dockerignore_with_a_large_or_heavy_context_is_flagged_at_line_one(context: dict[str, Any]) -> None:
    advice = only(SMALL, "no-dockerignore", has_dockerignore=False, **context)
    assert advice.line == 1
    assert ".dockerignore" in advice.message
    ignore = DockerIgnore.parse(advice.suggestion)
    assert ignore.ignores(".git/HEAD") or ignore.ignores("web/node_modules/left-pad/index.js")


@pytest.mark.parametrize(
    "has_dockerignore, context",
    [
        (True, {"context_files": 50_000, "context_paths": [".git/HEAD"]}),
        (None, {"context_files": 50_000}),
        (False, {"context_files": CONTEXT_FILES_LIMIT - 1, "context_bytes": CONTEXT_BYTES_LIMIT - 1}),
        (False, {"context_paths": ["app.py", "requirements.txt"]}),
        (False, {}),
    ],
)
def test_a_dockerignore_or_a_small_clean_context_is_fine(
    has_dockerignore: bool | None, context: dict[str, Any]
) -> None:
    assert advise(SMALL, has_dockerignore=has_dockerignore, **context) == []


def test_the_suggested_dockerignore_fits_the_context_and_keeps_what_the_dockerfile_copies() -> None:
    text = "FROM nginx:1.27\nCOPY dist/ /usr/share/nginx/html/\n"
    paths = [".git/HEAD", "node_modules/x/index.js", "dist/index.html", "src/app.py", "src/__pycache__/app.pyc"]
    advice = only(text, "no-dockerignore", has_dockerignore=False, context_paths=paths)
    entries = advice.suggestion.split("\n")
    assert ".git" in entries and "**/node_modules" in entries and "**/__pycache__" in entries
    assert "dist" not in entries
    ignore = DockerIgnore.parse(advice.suggestion)
    assert ignore.ignores("node_modules/x/index.js") and ignore.ignores("src/__pycache__/app.pyc")
    assert not ignore.ignores("dist/index.html") and not ignore.ignores("src/app.py")
    generic = only(SMALL, "no-dockerignore", has_dockerignore=False, context_files=5000).suggestion.split("\n")
    assert generic[:3] == [".git", "**/node_modules", "**/__pycache__"]


# --- the extra rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "from_line, suggestion",
    [
        ("FROM python", "FROM python:<version>"),
        ("FROM python:latest", "FROM python:<version>"),
        ("FROM --platform=linux/amd64 localhost:5000/team/app AS base", None),
        ("FROM --platform=node node AS node", "FROM --platform=node node:<version> AS node"),
    ],
)
def test_an_untagged_or_latest_base_gets_pinned(from_line: str, suggestion: str | None) -> None:
    advice = only(f"{from_line}\nRUN true\n", "latest-base")
    assert advice.line == 1
    expected = suggestion or "FROM --platform=linux/amd64 localhost:5000/team/app:<version> AS base"
    assert advice.suggestion == expected


@pytest.mark.parametrize(
    "text",
    [
        "FROM python:3.12-slim\n",
        "FROM python@sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d\n",
        "FROM localhost:5000/app:1.0\n",
        "FROM scratch\nCOPY app /app\n",
        "FROM golang:1.22 AS build\nFROM build\nFROM BUILD AS again\n",
        "ARG BASE=python:3.12\nFROM $BASE\n",
        "ARG BASE\nFROM ${BASE}\n",
    ],
)
def test_pinned_bases_stages_and_variables_are_left_alone(text: str) -> None:
    assert "latest-base" not in [a.rule for a in advise(text)]


def test_pip_without_no_cache_dir_in_the_final_image_is_flagged() -> None:
    text = "FROM python:3.12-slim\nRUN pip install flask==3.0.3 && \\\n    pip install -r extra.txt\n"
    advice = only(text, "pip-no-cache-dir")
    assert advice.suggestion == (
        "RUN pip install --no-cache-dir flask==3.0.3 && \\\n    pip install --no-cache-dir -r extra.txt"
    )
    assert advise(apply(text, advice, 3)) == []


@pytest.mark.parametrize(
    "text",
    [
        "FROM python:3.12 AS build\nRUN pip install flask\nFROM python:3.12-slim\nCOPY --from=build /a /a\n",
        "FROM python:3.12-slim\nENV PIP_NO_CACHE_DIR=1\nRUN pip install flask\n",
        "FROM python:3.12-slim\nRUN --mount=type=cache,target=/root/.cache/pip pip install flask\n",
        "FROM python:3.12-slim\nRUN pip install --upgrade pip setuptools wheel\n",
        "FROM python:3.12-slim\nRUN uv pip install --system flask\n",
        "FROM python:3.12-slim\nRUN PIP_NO_CACHE_DIR=1 pip install flask\n",
    ],
)
def test_pip_caches_that_do_not_ship_are_left_alone(text: str) -> None:
    assert advise(text) == []


# --- whole Dockerfiles --------------------------------------------------------------------------------

WELL_WRITTEN = [
    # Python: build wheels in one stage, install them in a slim one.
    """# syntax=docker/dockerfile:1.7
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN apt-get update \\
    && apt-get install -y --no-install-recommends build-essential libpq-dev
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip \\
    pip wheel --wheel-dir /wheels -r requirements.txt

FROM python:${PYTHON_VERSION}-slim
ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1
RUN apt-get update \\
    && apt-get install -y --no-install-recommends libpq5 \\
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home app
WORKDIR /home/app
COPY --from=build /wheels /wheels
COPY requirements.txt .
RUN pip install --no-cache-dir --no-index --find-links /wheels -r requirements.txt \\
    && rm -rf /wheels
COPY --chown=app:app . .
USER app
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8000/health')"
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "app:create_app()"]
""",
    # Next.js, as its own example has it.
    """FROM node:18-alpine AS base

FROM base AS deps
RUN apk add --no-cache libc6-compat
WORKDIR /app
COPY package.json yarn.lock* package-lock.json* pnpm-lock.yaml* .npmrc* ./
RUN \\
  if [ -f yarn.lock ]; then yarn --frozen-lockfile; \\
  elif [ -f package-lock.json ]; then npm ci; \\
  elif [ -f pnpm-lock.yaml ]; then corepack enable pnpm && pnpm i --frozen-lockfile; \\
  else echo "Lockfile not found." && exit 1; \\
  fi

FROM base AS builder
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY . .
ENV NEXT_TELEMETRY_DISABLED=1
RUN \\
  if [ -f yarn.lock ]; then yarn run build; \\
  elif [ -f package-lock.json ]; then npm run build; \\
  else echo "Lockfile not found." && exit 1; \\
  fi

FROM base AS runner
WORKDIR /app
ENV NODE_ENV=production
RUN addgroup --system --gid 1001 nodejs
RUN adduser --system --uid 1001 nextjs
COPY --from=builder /app/public ./public
COPY --from=builder --chown=nextjs:nodejs /app/.next/standalone ./
COPY --from=builder --chown=nextjs:nodejs /app/.next/static ./.next/static
USER nextjs
EXPOSE 3000
CMD ["node", "server.js"]
""",
    # Go to distroless, with cache mounts and bind mounts.
    """# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22-bookworm AS build
WORKDIR /src
RUN --mount=type=cache,target=/go/pkg/mod \\
    --mount=type=bind,source=go.sum,target=go.sum \\
    --mount=type=bind,source=go.mod,target=go.mod \\
    go mod download -x
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \\
    --mount=type=bind,target=. \\
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /bin/server ./cmd/server

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /bin/server /server
ENTRYPOINT ["/server"]
""",
]


@pytest.mark.parametrize("text", WELL_WRITTEN, ids=["python", "nextjs", "go"])
def test_a_well_written_dockerfile_gets_no_advice(text: str) -> None:
    paths = ["Dockerfile", ".dockerignore", "requirements.txt", "package.json", "yarn.lock", "go.mod", "go.sum"]
    assert advise(text, context_files=40, context_bytes=200_000, has_dockerignore=True, context_paths=paths) == []


def test_a_careless_dockerfile_gets_each_advice_in_line_order() -> None:
    text = (
        "FROM python\n"  # 1
        "RUN apt-get update\n"  # 2
        "RUN apt-get install -y gcc\n"  # 3
        "ADD . /app\n"  # 4
        "WORKDIR /app\n"  # 5
        "RUN pip install -r requirements.txt\n"  # 6
    )
    assert rules(text, has_dockerignore=False, context_files=1200) == [
        (1, "no-dockerignore"),
        (1, "latest-base"),
        (2, "apt-update-alone"),
        (4, "copy-before-install"),
        (4, "add-instead-of-copy"),
        (6, "pip-no-cache-dir"),
    ]


def test_advice_becomes_a_plain_dict_for_the_api() -> None:
    advice = advise("FROM python:3.12\nADD app.py /app/\n")[0]
    assert advice.to_dict() == {
        "line": 2,
        "rule": "add-instead-of-copy",
        "message": advice.message,
        "suggestion": "COPY app.py /app/",
    }


FRAGMENTS = [
    *("FROM python:3.12", "FROM python", "FROM build AS x", "FROM $B", "ARG B=python", "ONBUILD RUN npm ci"),
    *("WORKDIR /app", "WORKDIR sub", "WORKDIR $X", "USER app", 'ENV A=1 B="x y"', "ENV A 1", "# escape=`"),
    *("COPY . .", "COPY . /app", "COPY requirements.txt .", "COPY package*.json ./", "ADD . /app", "ADD a.tgz /"),
    *("RUN pip install -r requirements.txt", "RUN pip install .", "RUN npm ci && npm run build", "RUN cd /app && yarn"),
    *("RUN apt-get update", "RUN apt-get install -y x", "RUN apt-get update && apt-get install -y x", "RUN <<EOF"),
    *("pip install -r requirements.txt", "EOF", "COPY <<EOF /x", "# comment", "", "RUN cargo build \\", "  --release"),
    *("RUN poetry install \\", "RUN composer install", 'RUN ["npm", "ci"]', "RUN (cd x && go mod download", "RUN a `"),
    *("RUN echo 'unterminated", "RUN if true; then npm ci; fi", "COPY", "RUN", "FROM", "RUN uv sync", "\r"),
]
KEYWORDS = {
    "latest-base": ("FROM",),
    "copy-before-install": ("COPY", "ADD"),
    "apt-update-alone": ("RUN",),
    "apt-no-clean": ("RUN",),
    "pip-no-cache-dir": ("RUN",),
    "add-instead-of-copy": ("ADD",),
}


def test_garbled_dockerfiles_never_raise_and_every_advice_points_at_its_instruction() -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        text = rng.choice(["\n", "\r\n"]).join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 14)))
        paths = rng.choice([None, ["requirements.txt", "package.json", ".git/HEAD", "a.py"]])
        found = advise(text, context_paths=paths, has_dockerignore=rng.choice([None, False]), context_files=300)
        lines = re.split(r"\r\n|\r|\n", text)
        for advice in found:
            if advice.rule != "no-dockerignore":
                assert lines[advice.line - 1].strip().upper().startswith(KEYWORDS[advice.rule]), (text, advice)


@pytest.mark.parametrize("text", ["", "\n\n# only a comment\n", "RUN echo no FROM\n", "FROM\n", "COPY\nFROM a:1\n"])
def test_empty_and_broken_dockerfiles_get_no_advice_and_no_error(text: str) -> None:
    assert advise(text) == []
