"""Who may call what. Every view declares one access level with @access(...); a route without one is
refused to everyone (see gate.py), and tests/integration/test_access.py fails until it has one.

Levels:
- PUBLIC: anyone, signed in or not (sign-in page, health, static files).
- SETUP: anyone while no account exists (the one-time setup link), nobody after.
- SIGNED_IN: any signed-in person (sign out, their own tokens).
- READ: viewer and above: pages, build and run objects, logs, websockets.
- BUILD: member and above: start builds and runs. Acting on one that is not theirs takes admin (views
  check ownership with require_owner).
- ADMIN: users, everyone's tokens, the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from webapp.models import Role


class Level(StrEnum):
    PUBLIC = "public"
    SETUP = "setup"
    SIGNED_IN = "signed_in"
    READ = "read"
    BUILD = "build"
    ADMIN = "admin"


ROLE_LEVELS: dict[str, frozenset[Level]] = {
    Role.ADMIN: frozenset({Level.SIGNED_IN, Level.READ, Level.BUILD, Level.ADMIN}),
    Role.MEMBER: frozenset({Level.SIGNED_IN, Level.READ, Level.BUILD}),
    Role.VIEWER: frozenset({Level.SIGNED_IN, Level.READ}),
}

ATTRIBUTE = "layerdeck_access"

F = TypeVar("F", bound=Callable[..., Any])


def access(level: Level) -> Callable[[F], F]:
    """Declare who may call a view. Put it under @bp.get/@sock.route so the route sees the attribute
    (flask-sock copies it onto its wrapper with functools.wraps)."""

    def mark(view: F) -> F:
        setattr(view, ATTRIBUTE, level)
        return view

    return mark


def level_of(view: Callable[..., Any] | None) -> Level | None:
    value = getattr(view, ATTRIBUTE, None)
    return value if isinstance(value, Level) else None


def role_allows(role: str, level: Level) -> bool:
    return level in ROLE_LEVELS.get(role, frozenset())
