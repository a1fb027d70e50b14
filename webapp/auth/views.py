"""Sign-in, sign-out, first-admin setup, accounts, API tokens and the audit log: pages and JSON API."""

from __future__ import annotations

import hmac
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from webapp.auth import accounts, audit, credentials
from webapp.auth.access import Level, access
from webapp.auth.gate import current_identity, require_identity
from webapp.auth.ratelimit import LoginLimits
from webapp.db import begin_write
from webapp.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyAttempts
from webapp.extensions import db
from webapp.models import ApiToken, AuditEvent, Role, User, iso
from webapp.paging import newest_first

bp = Blueprint("auth", __name__)

SIGN_IN_REFUSED = "That user name and password do not match an account."


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


def limits() -> LoginLimits:
    return _app().extensions["layerdeck.login_limits"]  # type: ignore[no-any-return]


def safe_next(target: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://...`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def set_session_cookie(response: BaseResponse, secret: str) -> BaseResponse:
    response.set_cookie(credentials.SESSION_COOKIE, secret, max_age=int(_app().config["SESSION_HOURS"] * 3600),
                        httponly=True, samesite="Lax", secure=request.is_secure, path="/")
    return response


def sign_in(user: User) -> BaseResponse:
    secret = credentials.start_session(user, request.remote_addr, _app().config["SESSION_HOURS"] * 3600,
                                       replaces=request.cookies.get(credentials.SESSION_COOKIE))
    audit.record("session.login", f"user {user.name}", user_id=user.id, user_name=user.name, via="session")
    return set_session_cookie(redirect(safe_next(request.form.get("next"))), secret)


# --- sign in / out ---------------------------------------------------------------------------------------


@bp.get("/login")
@access(Level.PUBLIC)
def login_page() -> Any:
    if current_identity() is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", next=safe_next(request.args.get("next")), error=None, name="",
                           unclaimed=accounts.user_count() == 0, signed_out=bool(request.args.get("signed_out")))


@bp.post("/login")
@access(Level.PUBLIC)
def login() -> Any:
    name = accounts.normalise_name(request.form.get("name", ""))  # checked whole: never cut to a valid name
    password = request.form.get("password", "")
    address = request.remote_addr or "unknown"
    nxt = safe_next(request.form.get("next"))

    def refuse(message: str, status: int) -> tuple[str, int]:
        return render_template("login.html", next=nxt, error=message, name=name[:64], unclaimed=False), status

    # Every name that is not a valid account name counts as one key: padding or odd characters cannot
    # make fresh keys for the same account.
    wait, attempt = limits().begin(address, name if accounts.valid_name(name) else "<invalid>")
    if wait is not None:
        return too_many(refuse, wait)
    result = accounts.check_password(name, password)
    if result.user is None:
        audit.record("session.login_failed", f"user {name[:64]}" if name else None,
                     detail={"reason": result.reason}, user_name=name[:64] or None, via="session")
        return refuse(SIGN_IN_REFUSED, 401)
    assert attempt is not None
    limits().succeeded(attempt)
    return sign_in(result.user)


def too_many(refuse: Any, wait: int) -> Response:
    minutes = max(1, round(wait / 60))
    page, status = refuse(f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                          429)
    return Response(page, status, headers={"Retry-After": str(wait)})


@bp.post("/logout")
@access(Level.SIGNED_IN)
def logout() -> BaseResponse:
    identity = require_identity()
    secret = request.cookies.get(credentials.SESSION_COOKIE)
    if secret:
        credentials.end_session(secret)
    audit.record("session.logout", f"user {identity.name}")
    response = redirect("/login?signed_out=1")
    response.delete_cookie(credentials.SESSION_COOKIE, path="/", httponly=True, samesite="Lax")
    return response


# --- first admin ------------------------------------------------------------------------------------------


def setup_token_ok(token: str) -> bool:
    expected: str | None = _app().extensions.get("layerdeck.setup_token")
    return expected is not None and hmac.compare_digest(credentials.digest(token), expected)


@bp.get("/setup/<token>")
@access(Level.SETUP)
def setup_page(token: str) -> Any:
    if not setup_token_ok(token):
        return render_template("error.html", status=404, code="bad_setup_link",
                               message="This setup link is not valid. Use the link Layerdeck printed when it "
                                       "started, or create the first admin with `layerdeck create-user`."), 404
    return render_template("setup.html", token=token, error=None, name="")


@bp.post("/setup/<token>")
@access(Level.SETUP)
def setup(token: str) -> Any:
    if not setup_token_ok(token):
        return setup_page(token)
    name = request.form.get("name", "")
    password = request.form.get("password", "")
    try:
        if password != request.form.get("password2", ""):
            raise BadRequest("The two passwords differ; type the same password twice.", code="password_mismatch")
        user = accounts.create_user(name, Role.ADMIN, password)
    except (BadRequest, Conflict) as exc:
        return render_template("setup.html", token=token, error=exc.message, name=name), exc.status
    _app().extensions.pop("layerdeck.setup_token", None)
    audit.record("setup.claim", f"user {user.name}", user_id=user.id, user_name=user.name, via="setup link")
    return sign_in(user)


# --- who am I, my password ----------------------------------------------------------------------------


def user_to_dict(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "role": user.role, "disabled": user.disabled,
            "created_at": iso(user.created_at), "last_login_at": iso(user.last_login_at)}


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("Send a JSON object (Content-Type: application/json).", code="invalid_body")
    return body


@bp.get("/api/v1/me")
@access(Level.SIGNED_IN)
def me() -> Response:
    identity = require_identity()
    return jsonify({**user_to_dict(accounts.find_user(identity.user_id)), "via": identity.via})


@bp.post("/api/v1/me/password")
@access(Level.SIGNED_IN)
def change_own_password() -> Response:
    identity = require_identity()
    body = _json_body()
    user = accounts.find_user(identity.user_id)
    wait, attempt = limits().begin(request.remote_addr or "unknown", user.name)
    if wait is not None:
        err = TooManyAttempts(f"Too many wrong passwords. Try again in {max(1, round(wait / 60))} minutes.")
        err.extra["retry_after"] = wait
        raise err
    if accounts.check_password(user.name, str(body.get("current", ""))).user is None:
        raise Forbidden("The current password is not right.", code="wrong_password")
    assert attempt is not None
    limits().succeeded(attempt)
    user = accounts.set_password(identity.user_id, str(body.get("new", "")))
    audit.record("user.update", f"user {user.name}", detail={"password": "changed"})
    return jsonify(user_to_dict(user))


# --- accounts (admin) ----------------------------------------------------------------------------------


@bp.get("/api/v1/users")
@access(Level.ADMIN)
def list_users() -> Response:
    users = db.session.scalars(select(User).order_by(User.name))
    return jsonify({"users": [user_to_dict(u) for u in users]})


@bp.post("/api/v1/users")
@access(Level.ADMIN)
def create_user() -> tuple[Response, int]:
    body = _json_body()
    user = accounts.create_user(str(body.get("name", "")), str(body.get("role", "")), str(body.get("password", "")))
    audit.record("user.create", f"user {user.name}", detail={"role": user.role})
    return jsonify(user_to_dict(user)), 201


@bp.patch("/api/v1/users/<int:user_id>")
@access(Level.ADMIN)
def update_user(user_id: int) -> Response:
    body = _json_body()
    new_hash = accounts.hash_password(accounts.validate_password(str(body["password"]))) if "password" in body else None
    begin_write()
    user = accounts.find_user(user_id)
    unknown = set(body) - {"role", "disabled", "password"}
    if unknown:
        raise BadRequest(f"Only role, disabled and password can be changed, not {', '.join(sorted(unknown))}.",
                         code="forbidden_field")
    changes: dict[str, Any] = {}
    if "role" in body and accounts.validate_role(str(body["role"])) != user.role:
        changes["role"] = [user.role, accounts.validate_role(str(body["role"]))]
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise BadRequest("disabled must be true or false.", code="invalid_body")
        if body["disabled"] != user.disabled:
            changes["disabled"] = body["disabled"]
    if "password" in body:
        changes["password"] = "changed"
    stays_admin = changes.get("role", [None, user.role])[1] == Role.ADMIN and not changes.get("disabled", user.disabled)
    if user.role == Role.ADMIN and not user.disabled and not stays_admin and accounts.admins_left(user) == 0:
        raise Conflict(f"{user.name} is the last admin; make another admin first.", code="last_admin")
    if "role" in changes:
        user.role = changes["role"][1]
    if "disabled" in changes:
        user.disabled = changes["disabled"]
    if new_hash is not None:
        user.password_hash = new_hash
    if changes:
        credentials.end_sessions_of(user.id)  # a changed account signs in again with what it now is
        db.session.commit()
        audit.record("user.update", f"user {user.name}", detail=changes)
    return jsonify(user_to_dict(user))


# --- API tokens --------------------------------------------------------------------------------------


def token_to_dict(token: ApiToken, names: dict[int, str]) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "user": names.get(token.user_id), "user_id": token.user_id,
            "prefix": token.prefix, "created_at": iso(token.created_at), "last_used_at": iso(token.last_used_at),
            "last_used_from": token.last_used_from, "revoked": token.revoked_at is not None,
            "revoked_at": iso(token.revoked_at)}


def visible_tokens() -> list[dict[str, Any]]:
    identity = require_identity()
    query = select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
    if identity.role != Role.ADMIN:
        query = query.where(ApiToken.user_id == identity.user_id)
    tokens = list(db.session.scalars(query))
    names = {row.id: row.name for row in db.session.execute(select(User.id, User.name))}
    return [token_to_dict(t, names) for t in tokens]


@bp.get("/api/v1/tokens")
@access(Level.SIGNED_IN)
def list_tokens() -> Response:
    return jsonify({"tokens": visible_tokens()})


@bp.post("/api/v1/tokens")
@access(Level.SIGNED_IN)
def create_token() -> tuple[Response, int]:
    identity = require_identity()
    body = _json_body()
    owner = accounts.find_user(identity.user_id)
    if body.get("user") not in (None, "", owner.name):
        if identity.role != Role.ADMIN:
            raise Forbidden("Only an admin can make a token for someone else.", code="forbidden")
        other = accounts.user_by_name(str(body["user"]))
        if other is None:
            raise BadRequest(f'There is no user named "{body["user"]}".', code="no_such_user")
        owner = other
    secret, token = credentials.create_token(owner, str(body.get("name", "")), identity.user_id)
    audit.record("token.create", f"token {token.name}", detail={"user": owner.name, "prefix": token.prefix})
    return jsonify({**token_to_dict(token, {owner.id: owner.name}), "token": secret}), 201


@bp.delete("/api/v1/tokens/<int:token_id>")
@access(Level.SIGNED_IN)
def revoke_token(token_id: int) -> Response:
    identity = require_identity()
    token = credentials.find_token(token_id)
    if identity.role != Role.ADMIN and token.user_id != identity.user_id:
        raise NotFound(f"There is no token #{token_id}.", code="no_such_token")
    credentials.revoke_token(token)
    owner = accounts.find_user(token.user_id)
    audit.record("token.revoke", f"token {token.name}", detail={"user": owner.name, "prefix": token.prefix})
    return jsonify(token_to_dict(token, {owner.id: owner.name}))


# --- audit (admin) ------------------------------------------------------------------------------------


def audit_page_rows() -> tuple[list[dict[str, Any]], int | None, dict[str, str]]:
    filters = {k: (request.args.get(k) or "").strip() for k in ("user", "action", "target")}
    where = []
    if filters["user"]:
        where.append(AuditEvent.user_name == accounts.normalise_name(filters["user"]))
    if filters["action"]:
        where.append(AuditEvent.action.startswith(filters["action"]))
    if filters["target"]:
        where.append(AuditEvent.target == filters["target"])
    if request.args.get("since"):
        try:
            where.append(AuditEvent.at >= float(request.args["since"]))
        except ValueError:
            raise BadRequest("since is a UNIX time in seconds.", code="invalid_query") from None
    rows, next_before = newest_first(AuditEvent, *where)
    return [audit.event_to_dict(e) for e in rows], next_before, filters


@bp.get("/api/v1/audit")
@access(Level.ADMIN)
def audit_log() -> Response:
    events, next_before, _ = audit_page_rows()
    return jsonify({"events": events, "next_before": next_before})


# --- pages -----------------------------------------------------------------------------------------------


@bp.get("/account")
@access(Level.SIGNED_IN)
def account_page() -> str:
    identity = require_identity()
    user = accounts.find_user(identity.user_id)
    names = [u.name for u in db.session.scalars(select(User).order_by(User.name))] \
        if identity.role == Role.ADMIN else [user.name]
    return render_template("account.html", me=user_to_dict(user), tokens=visible_tokens(), user_names=names)


@bp.get("/admin/users")
@access(Level.ADMIN)
def users_page() -> str:
    users = [user_to_dict(u) for u in db.session.scalars(select(User).order_by(User.name))]
    return render_template("users.html", users=users, roles=accounts.ROLES)


@bp.get("/admin/audit")
@access(Level.ADMIN)
def audit_page() -> str:
    events, next_before, filters = audit_page_rows()
    return render_template("audit.html", events=events, next_before=next_before, filters=filters,
                           actions=audit.ACTIONS, now=time.time())
