"""Accounts, logins and sessions.

Passwords are stored only as argon2id hashes (argon2-cffi: salted, slow, maintained). A workspace
without accounts runs the single-user dashboard with no login; creating the first admin turns
login on. Failed logins for a name (known or not) are throttled with a growing delay, recorded in
``login_throttle`` and the audit log. A login is a random token whose SHA-256 is stored; logout
revokes it, so a token replayed after logout is refused.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import AuthSession, LoginThrottle, User, session_scope
from db.tables import column_limit
from xai_core.errors import AccessDenied, AuthError, ConfigError, UnknownNameError
from xai_core.review import audit, demo_accounts

ROLES = ("admin", "reviewer")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes anything, but a megabyte "password" is an attack, not a password
FREE_TRIES = 3  # failures before the delay starts
MAX_DELAY_S = 300.0
SESSION_HOURS = 12.0  # a login expires after this long

HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (tests swap in cheaper parameters)
_DUMMY_HASH = HASHER.hash("not a password of anyone")  # verified for unknown names: same cost either way


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(when: datetime) -> datetime:
    """SQLite returns naive datetimes for ``DateTime(timezone=True)``; they were stored as UTC."""
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Actor:
    """Who is acting: an account, or the local single-user dashboard / shell (``name == ""``, admin)."""

    name: str
    role: str
    user_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def label(self) -> str:
        return self.name or "local user"


LOCAL = Actor(name="", role="admin")  # the CLI and a workspace without accounts


def require_admin(actor: Actor, what: str) -> None:
    """Refuse (and log) ``what`` unless ``actor`` is an admin."""
    if not actor.is_admin:
        audit.record_now(actor.name, "access", audit.REFUSED, what)
        raise AccessDenied(f"{what} is for admins only; sign in as an admin")


def _active_admins(session: Session) -> int:
    return int(session.scalar(select(func.count(User.id)).where(User.role == "admin", ~User.disabled)))


def login_enabled() -> bool:
    """Whether the dashboard asks for a login: the workspace has at least one active admin account."""
    with session_scope() as session:
        return _active_admins(session) > 0


def check_name(name: str) -> str:
    """An account name: 1-100 printable characters without surrounding spaces."""
    name = name.strip()
    if not name or len(name) > column_limit(User.name) or not name.isprintable():
        raise ConfigError(f"account name must be 1-{column_limit(User.name)} printable characters")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ConfigError(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    return password


def _user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise UnknownNameError(f"no account named {name!r}; list them with `xaudit users list`")
    return user


def add_user(name: str, role: str, password: str, *, actor: Actor = LOCAL) -> None:
    """Create an account. Only admins (or the local shell) may; the first admin turns login on."""
    require_admin(actor, "adding accounts")
    name = check_name(name)
    check_role(role)
    digest = HASHER.hash(check_password(password))
    try:
        with session_scope() as session:
            session.add(User(name=name, role=role, password_hash=digest, disabled=False))
            audit.record(session, actor.name, "user.add", target=name, role=role)
    except IntegrityError:
        raise ConfigError(f"an account named {name!r} exists; pick another name or reset its password") from None


def list_users() -> pd.DataFrame:
    """Name, role, disabled flag and creation time of every account (never the hashes)."""
    with session_scope() as session:
        rows = session.execute(select(User.name, User.role, User.disabled, User.created_at).order_by(User.id)).all()
    return pd.DataFrame([r._asdict() for r in rows], columns=["name", "role", "disabled", "created_at"])


def set_disabled(name: str, disabled: bool = True, *, actor: Actor = LOCAL) -> None:
    """Disable (or re-enable) an account; a disabled account's sessions end at once."""
    require_admin(actor, "disabling accounts")
    with session_scope() as session:
        user = _user(session, name)
        if disabled and user.role == "admin" and not user.disabled and _active_admins(session) == 1:
            # with no active admin the dashboard falls back to single-user mode: every visitor an admin
            raise ConfigError(f"{name!r} is the last active admin; disabling it would turn sign-in off and "
                              "make every visitor an admin. Add another admin first")
        user.disabled = disabled
        if disabled:
            _revoke_all(session, user.id)
        audit.record(session, actor.name, "user.disable" if disabled else "user.enable", target=name)


def reset_password(name: str, password: str, *, actor: Actor = LOCAL) -> None:
    """Set a new password (admins, or the account itself); the account's sessions end and a demo
    password kept for it (:mod:`xai_core.review.demo_accounts`) is dropped."""
    if actor.name != name:
        require_admin(actor, "resetting another account's password")
    digest = HASHER.hash(check_password(password))
    with session_scope() as session:
        _set_password(session, name, digest, actor)
    demo_accounts.forget(name)  # a demo password kept for admins to see is no longer the password


def replace_passwords(passwords: dict[str, str], *, actor: Actor = LOCAL, **detail: str) -> None:
    """Set new passwords of several accounts (name → password) in one transaction: all of them or,
    on any error, none. Each account's sessions end, as with :func:`reset_password`; unlike it, kept
    demo passwords are left to the caller (the demo keeps the new ones before calling this).
    ``detail`` goes into each audit event."""
    require_admin(actor, "replacing passwords")
    digests = {name: HASHER.hash(check_password(password)) for name, password in passwords.items()}
    with session_scope() as session:
        for name, digest in digests.items():
            _set_password(session, name, digest, actor, **detail)


def _set_password(session: Session, name: str, digest: str, actor: Actor, **detail: str) -> None:
    """Replace ``name``'s password hash with ``digest`` in ``session``'s transaction: its sessions
    end and its failed-login count is cleared."""
    user = _user(session, name)
    user.password_hash = digest
    _revoke_all(session, user.id)
    _clear_throttle(session, name)
    audit.record(session, actor.name, "user.reset-password", target=name, **detail)


def _revoke_all(session: Session, user_id: int) -> None:
    for login in session.scalars(select(AuthSession).where(AuthSession.user_id == user_id,
                                                           AuthSession.revoked_at.is_(None))):
        login.revoked_at = _now()


# ------------------------------------------------------------------------------------------
# throttling
# ------------------------------------------------------------------------------------------
def delay_after(failures: int) -> float:
    """Seconds a name is blocked after ``failures`` consecutive failed logins: none for the first
    :data:`FREE_TRIES`, then 1, 2, 4, ... s, at most :data:`MAX_DELAY_S`."""
    if failures < FREE_TRIES:
        return 0.0
    return min(MAX_DELAY_S, 2.0 ** (failures - FREE_TRIES))


def _throttle_row(session: Session, name: str) -> LoginThrottle:
    row = session.scalar(select(LoginThrottle).where(LoginThrottle.name == name))
    if row is None:
        try:
            with session.begin_nested():
                row = LoginThrottle(name=name, failures=0)
                session.add(row)
        except IntegrityError:  # another process added it first
            row = session.scalar(select(LoginThrottle).where(LoginThrottle.name == name))
    return row


def _clear_throttle(session: Session, name: str) -> None:
    row = session.scalar(select(LoginThrottle).where(LoginThrottle.name == name))
    if row is not None:
        row.failures, row.blocked_until = 0, None


def blocked_for(name: str) -> float:
    """Seconds until ``name`` may try to log in again (0 when it may now)."""
    with session_scope() as session:
        row = session.scalar(select(LoginThrottle).where(LoginThrottle.name == name))
        until = row.blocked_until if row is not None else None
    return 0.0 if until is None else max(0.0, (_aware(until) - _now()).total_seconds())


def _fail(name: str, why: str) -> None:
    """Count a failed login for ``name``, block it for :func:`delay_after` and log it."""
    with session_scope() as session:
        row = _throttle_row(session, name)
        row.failures += 1
        delay = delay_after(row.failures)
        row.blocked_until = _now() + timedelta(seconds=delay) if delay else None
        audit.record(session, name, "login", audit.FAILED, target=name, reason=why, failures=row.failures,
                     delay_s=delay)


# ------------------------------------------------------------------------------------------
# logins and sessions
# ------------------------------------------------------------------------------------------
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(name: str, password: str) -> str:
    """Check ``name``/``password`` and open a session: returns its token (keep it secret).

    Wrong name or password, a disabled account and a throttled name raise :class:`AuthError`
    (the message does not say whether the name exists)."""
    name = (name or "").strip()[: column_limit(User.name)]
    wait = blocked_for(name)
    if wait > 0:
        audit.record_now(name, "login", audit.REFUSED, name, reason="throttled", wait_s=round(wait, 1))
        raise AuthError(f"too many failed logins for {name!r}; try again in {wait:.0f} s")
    with session_scope() as session:
        user = session.scalar(select(User).where(User.name == name))
        stored = user.password_hash if user is not None else _DUMMY_HASH
    try:
        HASHER.verify(stored, str(password or "")[:MAX_PASSWORD])
        ok = user is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        _fail(name, "wrong name or password")
        raise AuthError("wrong name or password")
    if user.disabled:
        _fail(name, "account disabled")
        raise AuthError(f"account {name!r} is disabled; ask an admin to enable it")
    token = secrets.token_urlsafe(32)
    with session_scope() as session:
        if HASHER.check_needs_rehash(user.password_hash):
            session.get(User, user.id).password_hash = HASHER.hash(password)
        session.add(AuthSession(token_hash=_token_hash(token), user_id=user.id))
        _clear_throttle(session, name)
        audit.record(session, name, "login", target=name)
    return token


def session_actor(token: str | None) -> Actor | None:
    """The account a session token belongs to, or None when the token is unknown, revoked (logged
    out), expired, or its account is disabled. A refused token is logged."""
    if not token:
        return None
    with session_scope() as session:
        row = session.execute(
            select(AuthSession.revoked_at, AuthSession.created_at, User.id, User.name, User.role, User.disabled)
            .join(User, AuthSession.user_id == User.id).where(AuthSession.token_hash == _token_hash(token))
        ).one_or_none()
    if row is None:
        return None
    expired = _now() - _aware(row.created_at) > timedelta(hours=SESSION_HOURS)
    if row.revoked_at is not None or row.disabled or expired:
        why = "logged out" if row.revoked_at is not None else "disabled" if row.disabled else "expired"
        audit.record_now(row.name, "session", audit.REFUSED, row.name, reason=why)
        return None
    return Actor(name=row.name, role=row.role, user_id=row.id)


def logout(token: str | None) -> None:
    """End the session of ``token`` (it is refused from now on)."""
    if not token:
        return
    with session_scope() as session:
        login = session.scalar(select(AuthSession).where(AuthSession.token_hash == _token_hash(token)))
        if login is not None and login.revoked_at is None:
            login.revoked_at = _now()
            user = session.get(User, login.user_id)
            audit.record(session, user.name if user else "", "logout", target=user.name if user else "")
