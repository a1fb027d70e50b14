"""The one check every request passes before its view runs: deny by default.

It finds the view's declared access level (access.py; none declared: refused to everyone), works out
who is asking (an `Authorization: Bearer` token, else the session cookie; never a query string), and
refuses what that person may not do. Browser requests that change something, and every websocket, must
come from Layerdeck's own pages: the Origin (or Sec-Fetch-Site) is checked, and session-authenticated
unsafe requests must carry the session's CSRF token too. A page on another port of the same host (a
container Layerdeck runs, say) is same-site, so SameSite cookies alone would not stop it.

Websockets are refused here, before flask-sock's view would answer the upgrade.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from flask import Flask, current_app, g, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from webapp.auth.access import Level, level_of, role_allows
from webapp.auth.credentials import SESSION_COOKIE, Identity, session_identity, still_valid, token_identity
from webapp.errors import BadRequest, Forbidden, NotFound, Unauthenticated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"

log = logging.getLogger("webapp.auth")


def is_websocket() -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def wants_page() -> bool:
    """A person's browser asking for a page (answered with a redirect to sign in), not a script or socket."""
    if request.method not in ("GET", "HEAD") or is_websocket() or request.path.startswith("/api/"):
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best != "application/json"


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def host_allowed() -> bool:
    """Against DNS rebinding: a page on another site whose name now points at this machine sends its own
    name as Host. Bound to a loopback address, Layerdeck answers only to loopback names (and to
    LAYERDECK_PUBLIC_URL); with a public URL set, only to it (and loopback, for local health checks)."""
    name = (urlsplit(f"//{request.host}").hostname or "").lower()
    public = current_app.config.get("PUBLIC_URL")
    if public and name == (urlsplit(public).hostname or "").lower():
        return True
    try:
        if ipaddress.ip_address(name).is_loopback:
            return True
    except ValueError:
        if name in LOOPBACK_NAMES:
            return True
    bind = str(current_app.config.get("HOST", "127.0.0.1")).strip("[]").lower()
    bound_locally = bind in LOOPBACK_NAMES or bind.startswith("127.")
    return not public and not bound_locally


def allowed_origins() -> set[str]:
    origins = {f"{request.scheme}://{request.host}".lower()}
    public = current_app.config.get("PUBLIC_URL")
    if public:
        parts = urlsplit(public)
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origins


def from_own_pages() -> bool:
    """Whether the browser says this request comes from a Layerdeck page. Clients that are not browsers
    send neither header; they still need a token or a session with its CSRF token."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower().rstrip("/") in allowed_origins()
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    return True


def identify() -> Identity | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, secret = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("Send an API token as 'Authorization: Bearer <token>'.", code="bad_credentials")
        identity = token_identity(secret.strip(), request.remote_addr)
        if identity is None:
            raise Unauthenticated("This API token is not valid: it is wrong, revoked, or its user is disabled.",
                                  code="bad_credentials")
        return identity
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return session_identity(cookie)
    return None


def check_csrf(identity: Identity) -> None:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    if not identity.csrf_token or not hmac.compare_digest(sent.encode(), identity.csrf_token.encode()):
        raise Forbidden("This request did not carry the page's security token. Reload the page and try again.",
                        code="csrf_failed")


def gate() -> BaseResponse | None:
    g.identity = None
    if not host_allowed():
        raise BadRequest(f"Layerdeck does not answer to the name {request.host!r}. Open it by the address it "
                         "was started on, or set LAYERDECK_PUBLIC_URL to the address people use.",
                         code="unknown_host")
    endpoint = request.endpoint
    if endpoint is None or endpoint == "static":
        return None  # no such route (404/405 follow), or a static file
    level = level_of(current_app.view_functions.get(endpoint))
    if level is None:
        log.error("route %s has no access decision; refusing it", endpoint)
        raise Forbidden("This address has no access rule yet, so Layerdeck refuses it.", code="no_access_rule")

    unsafe = request.method not in SAFE_METHODS
    if is_websocket() and request.headers.get("Origin") is not None and not from_own_pages():
        raise Forbidden("Websockets are only accepted from Layerdeck's own pages.", code="bad_origin")

    identity = identify()
    g.identity = identity
    if unsafe and (identity is None or identity.via == "session") and not from_own_pages():
        raise Forbidden("This request came from another site, so Layerdeck refused it.", code="bad_origin")

    if level == Level.PUBLIC:
        return None
    if level == Level.SETUP:
        from webapp.auth.accounts import user_count

        if user_count() > 0:
            raise NotFound("Layerdeck is already set up: sign in instead.", code="already_set_up")
        return None
    if identity is None:
        if wants_page():
            target = request.full_path if request.query_string else request.path
            return redirect(f"/login?next={quote(target, safe='/?=&')}")
        raise Unauthenticated("Sign in first, or send an API token as 'Authorization: Bearer <token>'.")
    if not role_allows(identity.role, level):
        raise Forbidden(refusal(identity.role, level), code="forbidden")
    if unsafe and identity.via == "session":
        check_csrf(identity)
    return None


def refusal(role: str, level: Level) -> str:
    if level == Level.ADMIN:
        return "Only an admin can do this."
    if role == "viewer":
        return "Your account is a viewer: it can look at builds and runs but not start or change them."
    return "Your role does not allow this."


def current_identity() -> Identity | None:
    return g.get("identity")


def require_identity() -> Identity:
    identity = current_identity()
    if identity is None:  # the gate lets no such request through to a non-public view
        raise Unauthenticated("Sign in first.")
    return identity


def require_owner(owner_id: int | None, what: str) -> Identity:
    """Admins act on anything; others only on what they started themselves."""
    identity = require_identity()
    if identity.role != "admin" and owner_id != identity.user_id:
        raise Forbidden(f"Only the person who started this {what}, or an admin, can do that.", code="not_owner")
    return identity


def viewer_still_allowed() -> Callable[[], bool]:
    """For a websocket: a check of whether the session or token it was opened with still stands."""
    identity = require_identity()
    return lambda: still_valid(identity)


def install(app: Flask) -> None:
    app.before_request(gate)
