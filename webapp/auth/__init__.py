"""Accounts, roles, sessions, API tokens, CSRF and Origin checks, and the audit log (see gate.py)."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, Response, request

from webapp.auth.access import Level, role_allows
from webapp.auth.credentials import digest


def init_app(app: Flask) -> None:
    from webapp.auth import gate, views
    from webapp.auth.ratelimit import LoginLimits

    app.extensions["layerdeck.login_limits"] = LoginLimits()
    gate.install(app)
    app.register_blueprint(views.bp)

    @app.after_request
    def _headers(response: Response) -> Response:
        # Pages that act with the Docker engine must not be framed by another site (clickjacking), nor
        # their JSON taken for something else; addresses with ids stay on this site.
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")  # a new token is in one of these
        return response

    @app.context_processor
    def _who() -> dict[str, Any]:
        identity = gate.current_identity()
        return {
            "me": identity,
            "csrf_token": identity.csrf_token if identity and identity.csrf_token else "",
            "can_build": bool(identity and role_allows(identity.role, Level.BUILD)),
            "is_admin": bool(identity and role_allows(identity.role, Level.ADMIN)),
        }


def open_setup(app: Flask) -> str | None:
    """While no account exists, make a one-time setup token (only its digest is kept) and return it."""
    from webapp.auth.accounts import user_count

    with app.app_context():
        if user_count() > 0:
            return None
    token = secrets.token_urlsafe(24)
    app.extensions["layerdeck.setup_token"] = digest(token)
    return token
