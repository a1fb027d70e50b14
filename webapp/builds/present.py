"""Models -> the JSON shapes of docs/API.md. One place, used by the API, the pages and the journal."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from webapp.auth.accounts import user_name
from webapp.builds.advice import Advice, advise
from webapp.builds.manifest import context_paths
from webapp.extensions import db
from webapp.models import Build, BuildStatus, Step, iso


def build_advice(build: Build) -> list[Advice]:
    """Advice on a build's Dockerfile, knowing its context's files (after .dockerignore: the .dockerignore
    itself is kept in every context that has one)."""
    paths = None
    if build.context_file:
        paths = context_paths(str(Path(current_app.config["DATA_DIR"]) / build.context_file))
    return advise(build.dockerfile_text or "", context_files=build.context_files, context_bytes=build.context_bytes,
                  has_dockerignore=(".dockerignore" in paths) if paths is not None else None, context_paths=paths)


def build_urls(build_id: int) -> dict[str, str]:
    return {
        "url": f"/builds/{build_id}",
        "api_url": f"/api/v1/builds/{build_id}",
        "ws_url": f"/ws/builds/{build_id}",
        "log_url": f"/api/v1/builds/{build_id}/log",
    }


def compare_urls(a: int, b: int) -> dict[str, str]:
    return {"url": f"/builds/{a}/compare/{b}", "api_url": f"/api/v1/builds/{a}/compare/{b}"}


STEP_COLUMNS = ("index", "stage", "instruction", "status", "cached", "started_at", "finished_at", "error",
                "miss_reason")


def step_to_dict(step: Step) -> dict[str, Any]:
    return step_row_to_dict({c: getattr(step, c) for c in STEP_COLUMNS})


def step_row_to_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A step as the API shows it, from its columns (the journal keeps running builds' steps as such)."""
    started, finished = row["started_at"], row["finished_at"]
    return {
        "index": row["index"],
        "stage": row["stage"],
        "instruction": row["instruction"],
        "status": row["status"],
        "cached": row["cached"],
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration_s": round(finished - started, 3) if started is not None and finished is not None else None,
        "error": row["error"],
        "miss_reason": json.loads(row["miss_reason"]) if row["miss_reason"] else None,
    }


def queue_position(build: Build) -> int | None:
    if build.status != BuildStatus.QUEUED:
        return None
    ahead = db.session.scalar(
        select(func.count()).select_from(Build).where(Build.status == BuildStatus.QUEUED, Build.id < build.id)
    )
    return int(ahead or 0) + 1


def cache_summary(cached: Iterable[bool | None]) -> dict[str, int]:
    """Hits and decided steps, from each step's cached flag (None: not decided yet)."""
    decided = [c for c in cached if c is not None]
    return {"hits": sum(1 for c in decided if c), "total": len(decided)}


def build_to_dict(build: Build, *, steps: bool = True, cached: Iterable[bool | None] | None = None) -> dict[str, Any]:
    """A build as the API shows it. `cached`: its steps' cached flags when the caller has them (the journal,
    a build just recorded), instead of loading its steps."""
    out: dict[str, Any] = {
        "id": build.id,
        "status": build.status,
        "tag": build.tag,
        "image_id": build.image_id,
        "builder": build.builder,
        "created_at": iso(build.created_at),
        "started_at": iso(build.started_at),
        "finished_at": iso(build.finished_at),
        "duration_s": build.duration_s,
        "error": build.error,
        "queue_position": queue_position(build),
        "rebuild_of": build.rebuild_of,
        "created_by": user_name(build.created_by),
        "options": {
            "dockerfile": build.dockerfile,
            "build_args": build.args(),  # secret ones masked: their values are never stored
            "secret_build_args": sorted(json.loads(build.secret_args or "{}")),
            "target": build.target,
            "no_cache": build.no_cache,
            "pull": build.pull,
        },
        "context": {
            "source": build.context_source, "files": build.context_files, "bytes": build.context_bytes,
        },
        "cache": {**cache_summary(cached if cached is not None else (s.cached for s in build.steps)),
                  "saved_s": build.saved_s, "compared_with": build.compared_with},
        "log": {"bytes": build.log_bytes, "truncated": build.log_truncated},
        **build_urls(build.id),
    }
    if steps:
        out["steps"] = [step_to_dict(s) for s in build.steps]
        out["advice"] = [a.to_dict() for a in build_advice(build)]
    return out
