"""The API's own tables (issue 12 §3-§4): per-business tokens and idempotency keys, in the
server's SQLite store file, on a connection of their own (as the outbox has).

Tokens: ``msrvb_`` + 43 URL-safe characters (256 random bits), scanner regex
``\\bmsrvb_[A-Za-z0-9_-]{43}\\b`` (the server token is ``msrv_``). Shown once at creation;
only the sha256 is stored, with an id (``tok_...``), the business, a name and the first
four random characters as a hint for lists. A slow KDF guards *guessable* secrets against
offline guessing; 256 random bits cannot be guessed from the digest however fast the hash,
and a KDF would cost milliseconds of CPU on every request (see :mod:`mediasrv.api.auth`).
The lookup is by digest (the primary key): an attacker learns nothing from its timing
without already holding a preimage of a stored digest.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mediasrv.api.auth import Principal, Scope

__all__ = [
    "BUSINESS_TOKEN_PREFIX",
    "TOKEN_SCAN_REGEX",
    "ApiStore",
    "IdemConflict",
    "IdemInProgress",
    "StoredResponse",
    "TokenInfo",
]

BUSINESS_TOKEN_PREFIX = "msrvb_"
TOKEN_SCAN_REGEX = r"\bmsrvb?_[A-Za-z0-9_-]{43}\b"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    digest      TEXT PRIMARY KEY,
    token_id    TEXT NOT NULL UNIQUE,
    business    TEXT NOT NULL,
    name        TEXT NOT NULL,
    hint        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE TABLE IF NOT EXISTS api_idempotency (
    principal    TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       INTEGER,
    content_type TEXT,
    body         BLOB,
    headers      TEXT,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (principal, key)
);
"""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    business: str
    name: str
    hint: str  # "msrvb_abcd..." : enough to recognise, not to use
    created_at: float
    revoked_at: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "token_id": self.token_id,
            "business": self.business,
            "name": self.name,
            "hint": self.hint,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


class IdemConflict(ValueError):
    """The key was used with a different request (answer 422)."""


class IdemInProgress(ValueError):
    """The first request with this key is still being processed (answer 409)."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class ApiStore:
    """Tokens and idempotency keys; ``open()`` creates the tables."""

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
            raise RuntimeError("ApiStore is not open")
        return self._conn

    # ---- tokens ---------------------------------------------------------------------------

    async def create_token(self, business: str, name: str = "") -> tuple[TokenInfo, str]:
        """A new token of ``business``; returns its info and the token (shown once)."""
        raw = secrets.token_urlsafe(32)
        token = BUSINESS_TOKEN_PREFIX + raw
        info = TokenInfo(
            token_id="tok_" + uuid.uuid4().hex[:16],
            business=business,
            name=name,
            hint=BUSINESS_TOKEN_PREFIX + raw[:4] + "...",
            created_at=self._clock(),
            revoked_at=None,
        )
        await self.conn.execute(
            "INSERT INTO api_tokens (digest, token_id, business, name, hint, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token_digest(token), info.token_id, business, name, info.hint, info.created_at),
        )
        return info, token

    async def tokens(self, business: str | None = None) -> list[TokenInfo]:
        sql = "SELECT token_id, business, name, hint, created_at, revoked_at FROM api_tokens"
        params: tuple[str, ...] = ()
        if business is not None:
            sql += " WHERE business = ?"
            params = (business,)
        async with self.conn.execute(sql + " ORDER BY created_at, token_id", params) as cur:
            return [TokenInfo(*row) for row in await cur.fetchall()]

    async def token(self, token_id: str) -> TokenInfo | None:
        async with self.conn.execute(
            "SELECT token_id, business, name, hint, created_at, revoked_at FROM api_tokens "
            "WHERE token_id = ?",
            (token_id,),
        ) as cur:
            row = await cur.fetchone()
        return TokenInfo(*row) if row else None

    async def revoke_token(self, token_id: str) -> bool:
        cur = await self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
            (self._clock(), token_id),
        )
        return cur.rowcount == 1

    async def authenticate(self, token: str) -> Principal | None:
        """The business principal of a live token, else None."""
        if not token.startswith(BUSINESS_TOKEN_PREFIX):
            return None
        async with self.conn.execute(
            "SELECT token_id, business FROM api_tokens WHERE digest = ? AND revoked_at IS NULL",
            (token_digest(token),),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Principal(row[0], frozenset({Scope.BUSINESS}), business=row[1])

    # ---- idempotency keys (issue 12 §2) ---------------------------------------------------

    async def idem_begin(
        self, principal: str, key: str, fingerprint: str, ttl_s: float
    ) -> StoredResponse | None:
        """None: first use, go ahead (a placeholder now holds the key). A stored response:
        replay it. Raises :class:`IdemConflict` (another request used this key) or
        :class:`IdemInProgress` (the first one has not finished)."""
        now = self._clock()
        await self.conn.execute("DELETE FROM api_idempotency WHERE expires_at <= ?", (now,))
        try:
            await self.conn.execute(
                "INSERT INTO api_idempotency (principal, key, fingerprint, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (principal, key, fingerprint, now + ttl_s),
            )
            return None
        except sqlite3.IntegrityError:
            pass
        async with self.conn.execute(
            "SELECT fingerprint, status, content_type, body, headers FROM api_idempotency "
            "WHERE principal = ? AND key = ?",
            (principal, key),
        ) as cur:
            row = await cur.fetchone()
        if row is None:  # expired between the two statements: treat as first use
            return await self.idem_begin(principal, key, fingerprint, ttl_s)
        if row[0] != fingerprint:
            raise IdemConflict(key)
        if row[1] is None:
            raise IdemInProgress(key)
        return StoredResponse(int(row[1]), row[2], bytes(row[3]), json.loads(row[4]))

    async def idem_finish(self, principal: str, key: str, response: StoredResponse) -> None:
        await self.conn.execute(
            "UPDATE api_idempotency SET status = ?, content_type = ?, body = ?, headers = ? "
            "WHERE principal = ? AND key = ?",
            (
                response.status,
                response.content_type,
                response.body,
                json.dumps(response.headers),
                principal,
                key,
            ),
        )

    async def idem_abandon(self, principal: str, key: str) -> None:
        """The first request failed (5xx): the key may be used again."""
        await self.conn.execute(
            "DELETE FROM api_idempotency WHERE principal = ? AND key = ? AND status IS NULL",
            (principal, key),
        )
