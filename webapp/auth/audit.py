"""The audit log: who built, cancelled, ran, stopped, removed, signed in, or changed users and tokens;
when, and from where."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import g, has_request_context, request

from webapp.db import begin_write
from webapp.extensions import db
from webapp.models import AuditEvent, iso

# Every action the log can hold, with how the admin page words it.
ACTIONS: dict[str, str] = {
    "build.create": "started a build",
    "build.rebuild": "rebuilt",
    "build.edit": "edited files and rebuilt",
    "build.cancel": "cancelled a build",
    "run.create": "ran a container",
    "run.stop": "stopped a run",
    "run.restart": "restarted a run",
    "run.remove": "removed a run",
    "user.create": "created a user",
    "user.update": "changed a user",
    "user.delete": "removed a user",
    "token.create": "created a token",
    "token.revoke": "revoked a token",
    "session.login": "signed in",
    "session.login_failed": "failed to sign in",
    "session.logout": "signed out",
    "setup.claim": "set up the first admin",
}


def record(action: str, target: str | None = None, *, detail: dict[str, Any] | None = None,
           user_id: int | None = None, user_name: str | None = None, via: str | None = None) -> None:
    """Add one entry in its own transaction (committed). Who and from where default to the current
    request's identity."""
    begin_write()
    add(action, target, detail=detail, user_id=user_id, user_name=user_name, via=via)
    db.session.commit()


def add(action: str, target: str | None = None, *, detail: dict[str, Any] | None = None,
        user_id: int | None = None, user_name: str | None = None, via: str | None = None) -> None:
    """Add one entry to the session's current (write) transaction: committed with what it records."""
    assert action in ACTIONS, action
    identity = g.get("identity") if has_request_context() else None
    if identity is not None:
        user_id = user_id if user_id is not None else identity.user_id
        user_name = user_name or identity.name
        via = via or identity.described
    address = request.remote_addr if has_request_context() else None
    shown = {k: v for k, v in (detail or {}).items() if v is not None}
    db.session.add(AuditEvent(at=time.time(), user_id=user_id, user_name=user_name, action=action,
                              target=target, detail=json.dumps(shown), address=address,
                              via=via or ("cli" if not has_request_context() else None)))


def event_to_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": iso(event.at),
        "user": event.user_name,
        "user_id": event.user_id,
        "action": event.action,
        "summary": ACTIONS.get(event.action, event.action),
        "target": event.target,
        "detail": json.loads(event.detail or "{}"),
        "address": event.address,
        "via": event.via,
    }
