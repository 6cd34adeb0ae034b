"""Per-user console accounts (issue 13 §5): users with scrypt password hashes, each mapped to
one business (or the admin role), and the short-lived session tokens a login gives.

Passwords are *guessable* secrets, so unlike API tokens (:mod:`mediasrv.api.auth`) they are
stored with a slow, memory-hard KDF: ``hashlib.scrypt`` (RFC 7914), N=2^14, r=8, p=1, a
16-byte random salt, 32-byte key, in the PHC-like text form
``scrypt$N$r$p$<salt b64>$<key b64>`` so the cost can be raised later while old hashes keep
verifying. A KDF run costs ~16 MiB and tens of milliseconds of CPU: callers run it in a
thread (:func:`asyncio.to_thread`), never on the event loop.

A session token is ``msrvs_`` + 43 URL-safe characters (256 random bits): like an API
token it is stored as its sha256 only (a 256-bit random value needs no KDF), expires after
``[accounts] session_ttl`` seconds, and is revoked at logout, on ``mediasrv user passwd``
and ``remove``. It is sent as ``Authorization: Bearer``, exactly like an API token.

Failed logins are rate-limited (:class:`LoginThrottle`): after ``login_max_failures``
failures for one user name, or from one client address, within ``login_window`` seconds,
further attempts get 429 without the password even being checked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mediasrv.api.auth import Principal, Scope
from mediasrv.api.v1.store import token_digest

__all__ = [
    "SESSION_TOKEN_PREFIX",
    "USER_NAME_RE",
    "AccountStore",
    "Accounts",
    "LoginThrottle",
    "SessionInfo",
    "UserInfo",
    "hash_password",
    "verify_password",
]

SESSION_TOKEN_PREFIX = "msrvs_"
USER_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_SALT, SCRYPT_KEY = 16, 32
_MAXMEM = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    business      TEXT,             -- NULL for an admin user
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_sessions (
    digest      TEXT PRIMARY KEY,   -- sha256 of the session token
    session_id  TEXT NOT NULL UNIQUE,
    user_name   TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE INDEX IF NOT EXISTS api_sessions_user ON api_sessions (user_name);
"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The stored form of ``password`` (blocking: tens of ms of CPU)."""
    salt = secrets.token_bytes(SCRYPT_SALT)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                         maxmem=_MAXMEM, dklen=SCRYPT_KEY)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; a malformed hash never matches."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
        got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                             maxmem=_MAXMEM, dklen=len(key))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, key)


# Verified against when the user does not exist, so that an unknown name costs the same time
# as a wrong password (the answer must not tell which names exist).
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + _b64(bytes(SCRYPT_KEY))


def check_password_policy(password: str) -> str | None:
    """Why ``password`` is refused, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    if len(password) > 1024:
        return "a password may have at most 1024 characters"
    return None


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    business: str | None
    is_admin: bool
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, object]:
        return {"user": self.name, "business": self.business, "admin": self.is_admin,
                "created_at": self.created_at, "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    user: UserInfo
    expires_at: float

    def principal(self) -> Principal:
        if self.user.is_admin:
            return Principal(f"user:{self.user.name}", frozenset({Scope.ADMIN}))
        return Principal(f"user:{self.user.name}", frozenset({Scope.BUSINESS}), self.user.business)


class AccountStore:
    """Users and sessions in the server's SQLite store file (own connection)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self._conn.execute("PRAGMA busy_timeout = 5000")
        await self._conn.executescript(_SCHEMA)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("AccountStore is not open")
        return self._conn

    # ---- users ------------------------------------------------------------------------------

    async def add_user(self, name: str, password_hash: str, business: str | None,
                       is_admin: bool) -> UserInfo:
        """A new user (``ValueError`` if the name is taken or malformed)."""
        if not USER_NAME_RE.match(name):
            raise ValueError(f"user name {name!r}: lower-case letters, digits and ._@- only")
        if is_admin == (business is not None):
            raise ValueError("a user is either an admin or mapped to one business")
        now = self._clock()
        try:
            await self.conn.execute(
                "INSERT INTO api_users (name, password_hash, business, is_admin, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, password_hash, business, int(is_admin), now, now),
            )
        except aiosqlite.IntegrityError:
            raise ValueError(f"user {name!r} exists") from None
        return UserInfo(name, business, is_admin, now, now)

    async def users(self) -> list[UserInfo]:
        async with self.conn.execute(
            "SELECT name, business, is_admin, created_at, updated_at FROM api_users ORDER BY name"
        ) as cur:
            return [UserInfo(r[0], r[1], bool(r[2]), r[3], r[4]) for r in await cur.fetchall()]

    async def user(self, name: str) -> UserInfo | None:
        return next((u for u in await self.users() if u.name == name), None)

    async def password_hash(self, name: str) -> str | None:
        async with self.conn.execute(
            "SELECT password_hash FROM api_users WHERE name = ?", (name,)
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_password(self, name: str, password_hash: str) -> bool:
        """Replace the hash; every session of the user ends (False: no such user)."""
        cur = await self.conn.execute(
            "UPDATE api_users SET password_hash = ?, updated_at = ? WHERE name = ?",
            (password_hash, self._clock(), name),
        )
        if cur.rowcount != 1:
            return False
        await self.revoke_sessions(name)
        return True

    async def remove_user(self, name: str) -> bool:
        cur = await self.conn.execute("DELETE FROM api_users WHERE name = ?", (name,))
        await self.conn.execute("DELETE FROM api_sessions WHERE user_name = ?", (name,))
        return cur.rowcount == 1

    # ---- sessions ---------------------------------------------------------------------------

    async def create_session(self, user: UserInfo, ttl: float) -> tuple[SessionInfo, str]:
        token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        session = SessionInfo("ses_" + uuid.uuid4().hex[:16], user, now + ttl)
        await self.conn.execute("DELETE FROM api_sessions WHERE expires_at <= ?", (now,))
        await self.conn.execute(
            "INSERT INTO api_sessions (digest, session_id, user_name, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (token_digest(token), session.session_id, user.name, now, session.expires_at),
        )
        return session, token

    async def session(self, token: str) -> SessionInfo | None:
        """The live session of ``token`` (not expired, not revoked, user still there)."""
        if not token.startswith(SESSION_TOKEN_PREFIX):
            return None
        async with self.conn.execute(
            "SELECT s.session_id, s.expires_at, u.name, u.business, u.is_admin, u.created_at, "
            "u.updated_at FROM api_sessions s JOIN api_users u ON u.name = s.user_name "
            "WHERE s.digest = ? AND s.revoked_at IS NULL AND s.expires_at > ?",
            (token_digest(token), self._clock()),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        user = UserInfo(row[2], row[3], bool(row[4]), row[5], row[6])
        return SessionInfo(row[0], user, row[1])

    async def authenticate(self, token: str) -> Principal | None:
        session = await self.session(token)
        return session.principal() if session is not None else None

    async def revoke_session(self, token: str) -> bool:
        cur = await self.conn.execute(
            "UPDATE api_sessions SET revoked_at = ? WHERE digest = ? AND revoked_at IS NULL",
            (self._clock(), token_digest(token)),
        )
        return cur.rowcount == 1

    async def revoke_sessions(self, name: str) -> int:
        cur = await self.conn.execute(
            "UPDATE api_sessions SET revoked_at = ? WHERE user_name = ? AND revoked_at IS NULL",
            (self._clock(), name),
        )
        return cur.rowcount

    async def verify(self, name: str, password: str) -> UserInfo | None:
        """The user when ``password`` is theirs. The KDF runs in a thread; an unknown user
        costs the same KDF run as a wrong password."""
        stored = await self.password_hash(name) if USER_NAME_RE.match(name) else None
        ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH)
        if not ok or stored is None:
            return None
        return await self.user(name)


@dataclass
class Accounts:
    """What the login needs (passed in from app.py): the store, the failed-login throttle,
    the session lifetime."""

    store: AccountStore
    throttle: LoginThrottle
    session_ttl: float


class LoginThrottle:
    """Failed logins per key (a user name, a client address) in a sliding window.

    ``retry_after(keys)`` > 0 means: refuse now (429) for that many seconds. Memory is
    bounded: at most ``max_keys`` keys are tracked (the oldest are forgotten first).
    """

    def __init__(self, max_failures: int, window: float, clock: Callable[[], float],
                 max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _live(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, keys: tuple[str, ...]) -> float:
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = self._live(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, times[0] + self.window - now)
        return wait

    def failed(self, keys: tuple[str, ...]) -> None:
        now = self._clock()
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            while len(times) > self.max_failures:
                times.popleft()
        while len(self._failures) > self._max_keys:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, user_key: str) -> None:
        self._failures.pop(user_key, None)
