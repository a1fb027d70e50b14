"""Accounts: names, roles, argon2id password hashes, and checking a sign-in."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from sqlalchemy import func, select, update

from webapp.db import begin_write
from webapp.errors import BadRequest, Busy, Conflict, NotFound
from webapp.extensions import db
from webapp.models import Role, User

# argon2-cffi's defaults are argon2id, t=3, 64 MiB, p=4 (RFC 9106's second recommendation).
HASHER = PasswordHasher()
# Compared against when the name is unknown, so an unknown name costs as long as a wrong password.
_DUMMY_HASH = HASHER.hash("layerdeck-no-such-user")

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
ROLES = tuple(r.value for r in Role)


def normalise_name(name: str) -> str:
    return (name or "").strip().lower()


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


# Each argon2id check takes 64 MiB and ~0.1-0.2 s of a core: a burst of sign-ins waits its turn here
# instead of every request thread allocating at once.
_CHECKS = threading.BoundedSemaphore(4)
CHECK_WAIT_S = 15.0


@contextlib.contextmanager
def hashing_slot() -> Iterator[None]:
    if not _CHECKS.acquire(timeout=CHECK_WAIT_S):
        raise Busy("Too many sign-ins at once; try again in a moment.", code="busy")
    try:
        yield
    finally:
        _CHECKS.release()


def validate_name(name: str) -> str:
    value = normalise_name(name)
    if not _NAME.match(value):
        raise BadRequest("A user name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
                         "digit.", code="invalid_user_name")
    return value


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadRequest(f"A password needs at least {MIN_PASSWORD} characters.", code="weak_password")
    if len(password) > MAX_PASSWORD:
        raise BadRequest(f"A password can have at most {MAX_PASSWORD} characters.", code="invalid_password")
    return password


def validate_role(role: str) -> str:
    value = (role or "").strip().lower()
    if value not in ROLES:
        raise BadRequest(f'"{role}" is not a role; choose one of: {", ".join(ROLES)}.', code="invalid_role")
    return value


def hash_password(password: str) -> str:
    with hashing_slot():
        return HASHER.hash(password)


def user_count() -> int:
    return db.session.scalar(select(func.count()).select_from(User)) or 0


def find_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"There is no user #{user_id}.", code="no_such_user")
    return user


def user_by_name(name: str) -> User | None:
    return db.session.scalar(select(User).where(User.name == normalise_name(name)))


def create_user(name: str, role: str, password: str | None = None, *, password_hash: str | None = None) -> User:
    """Add an account (committed). Either a password, checked and hashed here, or a ready argon2 hash."""
    name = validate_name(name)
    role = validate_role(role)
    if password_hash is None:
        password_hash = hash_password(validate_password(password or ""))
    begin_write()
    if user_by_name(name) is not None:
        db.session.rollback()
        raise Conflict(f'There is already a user named "{name}".', code="user_exists")
    user = User(name=name, role=role, password_hash=password_hash, created_at=time.time())
    db.session.add(user)
    db.session.commit()
    return user


@dataclass(frozen=True)
class SignIn:
    user: User | None
    reason: str  # "ok", "unknown", "mismatch", "disabled": for the audit log, never for the page


def check_password(name: str, password: str) -> SignIn:
    """Whether name and password match an enabled account. Takes about as long whatever the answer."""
    name = normalise_name(name)
    user = user_by_name(name) if valid_name(name) else None
    db.session.rollback()  # no read transaction held across the hashing
    with hashing_slot():
        if user is None:
            with contextlib.suppress(VerificationError):
                HASHER.verify(_DUMMY_HASH, password)
            return SignIn(None, "unknown")
        try:
            HASHER.verify(user.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return SignIn(None, "mismatch")
    if user.disabled:
        return SignIn(None, "disabled")
    if HASHER.check_needs_rehash(user.password_hash):
        new_hash = hash_password(password)
        begin_write()
        db.session.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
        db.session.commit()
    return SignIn(user, "ok")


def set_password(user_id: int, password: str) -> User:
    """A new password for an account (checked, hashed, committed); it is signed out everywhere."""
    from webapp.auth.credentials import end_sessions_of

    new_hash = hash_password(validate_password(password))
    begin_write()
    user = find_user(user_id)
    user.password_hash = new_hash
    end_sessions_of(user.id)
    db.session.commit()
    return user


def admins_left(excluding: User) -> int:
    """Enabled admins other than this one: the last one may not be demoted, disabled or removed."""
    return db.session.scalar(
        select(func.count()).select_from(User)
        .where(User.role == Role.ADMIN, User.disabled.is_(False), User.id != excluding.id)
    ) or 0


def user_name(user_id: int | None) -> str | None:
    """A user's name for the pages and the API (None for rows made before accounts existed). Users are
    never renamed or deleted (they are disabled), so a name once read is kept for good, per app: every
    status message of a build carries its author's name, and this saves the journal a query each time."""
    if user_id is None:
        return None
    names: dict[int, str] = current_app.extensions.setdefault("layerdeck.user_names", {})
    name = names.get(user_id)
    if name is None:
        user = db.session.get(User, user_id)
        if user is None:
            return None
        name = names[user_id] = user.name
    return name
