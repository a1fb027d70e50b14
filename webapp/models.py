"""Database models (SQLAlchemy 2.0). No Docker calls here.

Times are stored as UNIX seconds (REAL): precise, and durations are a subtraction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.extensions import db


class BuildStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Build(db.Model):  # type: ignore[name-defined]
    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default=BuildStatus.QUEUED, index=True)
    builder: Mapped[str] = mapped_column(String(16))
    tag: Mapped[str | None] = mapped_column(String(255))
    dockerfile: Mapped[str] = mapped_column(String(1024), default="Dockerfile")
    build_args: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    target: Mapped[str | None] = mapped_column(String(255))
    no_cache: Mapped[bool] = mapped_column(Boolean, default=False)
    pull: Mapped[bool] = mapped_column(Boolean, default=False)
    dockerfile_text: Mapped[str] = mapped_column(Text, default="")  # to place steps and explain them
    context_file: Mapped[str] = mapped_column(String(255))  # relative to DATA_DIR
    context_source: Mapped[str] = mapped_column(String(16))
    context_files: Mapped[int] = mapped_column(Integer, default=0)
    context_bytes: Mapped[int] = mapped_column(Integer, default=0)
    # sha256 of the upload and Dockerfile path: the same bytes again reuse the stored context.
    upload_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    rebuild_of: Mapped[int | None] = mapped_column(ForeignKey("builds.id"))
    image_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    log_bytes: Mapped[int] = mapped_column(Integer, default=0)
    log_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    # Seconds the cache saved: each cached step credited with its time when it was last really built.
    saved_s: Mapped[float | None] = mapped_column(Float)
    # Who asked for it (NULL for builds made before accounts existed).
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # Secret-looking build args: their names with a keyed digest of each value. The values themselves are
    # never stored (build_args holds a mask); a running build gets them from memory.
    secret_args: Mapped[str] = mapped_column(Text, default="{}")
    # Cache insight: the image id each FROM reference resolved to when the build started (JSON object),
    # and the earlier build its missed steps were explained against (webapp/builds/insight.py).
    base_images: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")
    compared_with: Mapped[int | None] = mapped_column(ForeignKey("builds.id"))

    steps: Mapped[list[Step]] = relationship(
        back_populates="build", order_by="Step.index", cascade="all, delete-orphan"
    )
    # Two foreign keys to builds (rebuild_of, compared_with): neither is a relationship here.

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            return None
        return round(end - self.started_at, 3)

    def args(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self.build_args or "{}")
        return loaded

    def comparable_args(self) -> dict[str, str]:
        """Build args as two builds are compared: secret ones by their keyed digest (their values are never
        stored), so a changed secret is seen as changed without being known."""
        return {**self.args(), **json.loads(self.secret_args or "{}")}

    def resolved_bases(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self.base_images or "{}")
        return loaded


class Step(db.Model):  # type: ignore[name-defined]
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("build_id", "index", name="uq_steps_build_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(255), default="0")
    instruction: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    cached: Mapped[bool | None] = mapped_column(Boolean)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    miss_reason: Mapped[str | None] = mapped_column(Text)  # JSON object; only for a step that missed the cache

    build: Mapped[Build] = relationship(back_populates="steps")

    def reason(self) -> dict[str, Any] | None:
        if not self.miss_reason:
            return None
        loaded: dict[str, Any] = json.loads(self.miss_reason)
        return loaded

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 3)


class BuildEvent(db.Model):  # type: ignore[name-defined]
    """One websocket message of a build, exactly as sent: the replay for late viewers and the stored log."""

    __tablename__ = "build_events"
    __table_args__ = (
        UniqueConstraint("build_id", "seq", name="uq_build_events_build_seq"),
        Index("ix_build_events_build_type", "build_id", "type"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("builds.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(8))
    data: Mapped[str] = mapped_column(Text)  # the message as JSON, with type and seq

    def message(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.data)
        return loaded


class RunStatus(StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    STOPPED = "stopped"
    REMOVED = "removed"
    GONE = "gone"
    FAILED = "failed"


class Run(db.Model):  # type: ignore[name-defined]
    """A container Layerdeck started; the row (and its log) outlives the container."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    build_id: Mapped[int | None] = mapped_column(ForeignKey("builds.id"), index=True)
    image: Mapped[str] = mapped_column(String(255))  # the image id the container was made from
    image_ref: Mapped[str] = mapped_column(String(255))  # what the user asked for: a tag, or the id
    name: Mapped[str | None] = mapped_column(String(128))
    container_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    ports: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of published ports
    env: Mapped[str] = mapped_column(Text, default="{}")
    command: Mapped[str | None] = mapped_column(Text)  # JSON list, or NULL for the image's CMD
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    created_from: Mapped[str | None] = mapped_column(String(64))  # the address that asked for it
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    log_bytes: Mapped[int] = mapped_column(Integer, default=0)
    log_truncated: Mapped[bool] = mapped_column(Boolean, default=False)


class RunEvent(db.Model):  # type: ignore[name-defined]
    """One websocket message of a run's log, exactly as sent."""

    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_run_events_run_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(8))
    data: Mapped[str] = mapped_column(Text)


class Role(StrEnum):
    """What a person may do: admin everything; member build and run (and stop their own runs); viewer read."""

    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # stored lower-case
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    last_login_at: Mapped[float | None] = mapped_column(Float)


class LoginSession(db.Model):  # type: ignore[name-defined]
    """A signed-in browser. The cookie holds a random id; only its digest is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(64))


class ApiToken(db.Model):  # type: ignore[name-defined]
    """A token for scripts, acting as its user. Shown once; only its digest is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to tell tokens apart
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    last_used_at: Mapped[float | None] = mapped_column(Float)
    last_used_from: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[float | None] = mapped_column(Float)


class AuditEvent(db.Model):  # type: ignore[name-defined]
    """Who did what, when, from where. Names are copied so the record outlives renamed or removed users."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    user_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str | None] = mapped_column(String(128))  # e.g. "build 12", "run 3", "user alice"
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    address: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str | None] = mapped_column(String(80))  # "session", "token <name>", "cli"
