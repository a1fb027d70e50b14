"""Browser sessions and API tokens. Both are random secrets handed out once; the database keeps only
their sha256 (they are long and random, so a fast digest is enough: nothing to guess, nothing to brute)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from webapp.db import begin_write
from webapp.errors import BadRequest, NotFound
from webapp.extensions import db
from webapp.models import ApiToken, LoginSession, User

SESSION_COOKIE = "layerdeck_session"
TOKEN_PREFIX = "ldk_"
# A token's last use is written at most this often, so a busy script does not write on every request.
LAST_USED_EVERY_S = 60.0
_TOKEN_NAME = re.compile(r"^[\w .:@/-]{1,64}\Z")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    """Who is asking, as plain values (a websocket outlives its database session)."""

    user_id: int
    name: str
    role: str
    via: str  # "session" or "token"
    csrf_token: str | None = None  # sessions only
    session_id: int | None = None
    token_id: int | None = None
    token_name: str | None = None

    @property
    def described(self) -> str:
        return f"token {self.token_name}" if self.via == "token" else "session"


# --- sessions ------------------------------------------------------------------------------------------


def start_session(user: User, address: str | None, lifetime_s: float, replaces: str | None = None) -> str:
    """A new session for this user (committed); returns the cookie value. The session the browser had
    before, if any, ends: a sign-in always gets a fresh id."""
    begin_write()
    if replaces:
        db.session.execute(delete(LoginSession).where(LoginSession.digest == digest(replaces)))
    now = time.time()
    db.session.execute(delete(LoginSession).where(LoginSession.expires_at < now))
    secret = secrets.token_urlsafe(32)
    db.session.add(LoginSession(digest=digest(secret), user_id=user.id, csrf_token=secrets.token_urlsafe(32),
                                created_at=now, expires_at=now + lifetime_s, address=address))
    db.session.execute(update(User).where(User.id == user.id).values(last_login_at=now))
    db.session.commit()
    return secret


def session_identity(secret: str) -> Identity | None:
    row = db.session.execute(
        select(LoginSession, User).join(User, User.id == LoginSession.user_id)
        .where(LoginSession.digest == digest(secret))
    ).first()
    if row is None:
        return None
    session, user = row
    if session.expires_at < time.time() or user.disabled:
        return None
    return Identity(user_id=user.id, name=user.name, role=user.role, via="session",
                    csrf_token=session.csrf_token, session_id=session.id)


def end_session(secret: str) -> None:
    begin_write()
    db.session.execute(delete(LoginSession).where(LoginSession.digest == digest(secret)))
    db.session.commit()


def end_sessions_of(user_id: int) -> None:
    """Sign a person out everywhere (disabled, demoted, password changed). Not committed."""
    db.session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))


# --- API tokens ----------------------------------------------------------------------------------------


def validate_token_name(name: str) -> str:
    value = (name or "").strip()
    if not _TOKEN_NAME.match(value):
        raise BadRequest("A token name is 1 to 64 letters, digits, spaces or . _ : @ / - (say what it is for, "
                         'such as "ci deploy").', code="invalid_token_name")
    return value


def create_token(user: User, name: str, created_by: int | None) -> tuple[str, ApiToken]:
    """A new token for `user` (committed). The secret is returned once and never again."""
    name = validate_token_name(name)
    begin_write()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, digest=digest(secret), prefix=secret[:10],
                     created_at=time.time(), created_by=created_by)
    db.session.add(token)
    db.session.commit()
    return secret, token


def token_identity(secret: str, address: str | None) -> Identity | None:
    # Columns, not entities: asked on every request a script makes, and no object is needed.
    row = db.session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.revoked_at, ApiToken.last_used_at, ApiToken.last_used_from,
               User.id.label("user_id"), User.name.label("user_name"), User.role, User.disabled)
        .join(User, User.id == ApiToken.user_id).where(ApiToken.digest == digest(secret))
    ).first()
    if row is None or row.revoked_at is not None or row.disabled:
        return None
    now = time.time()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY_S or row.last_used_from != address:
        begin_write()
        db.session.execute(update(ApiToken).where(ApiToken.id == row.id)
                           .values(last_used_at=now, last_used_from=address))
        db.session.commit()
    return Identity(user_id=row.user_id, name=row.user_name, role=row.role, via="token", token_id=row.id,
                    token_name=row.name)


def find_token(token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"There is no token #{token_id}.", code="no_such_token")
    return token


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        begin_write()
        db.session.execute(update(ApiToken).where(ApiToken.id == token.id, ApiToken.revoked_at.is_(None))
                           .values(revoked_at=time.time()))
        db.session.commit()


def still_valid(identity: Identity) -> bool:
    """Whether the session or token a long-lived connection (a websocket) opened with still stands: not
    signed out, expired, revoked, nor its person disabled. Reads only."""
    if identity.via == "session":
        session_row = db.session.execute(
            select(LoginSession.expires_at, User.disabled).join(User, User.id == LoginSession.user_id)
            .where(LoginSession.id == identity.session_id)
        ).first()
        ok = session_row is not None and session_row.expires_at > time.time() and not session_row.disabled
    else:
        token_row = db.session.execute(
            select(ApiToken.revoked_at, User.disabled).join(User, User.id == ApiToken.user_id)
            .where(ApiToken.id == identity.token_id)
        ).first()
        ok = token_row is not None and token_row.revoked_at is None and not token_row.disabled
    db.session.rollback()  # a websocket lives long: hold no read transaction
    return ok
