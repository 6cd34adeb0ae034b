"""Bearer tokens for the HTTP API (issue 8, finding 5): RFC 6750 on top of a token store.

A token is ``msrv_`` + 43 URL-safe characters (256 random bits): the prefix lets secret
scanners find a leaked one. Only its sha256 is stored. A slow KDF (bcrypt, scrypt, argon2)
protects *low-entropy* secrets against offline guessing; a 256-bit random token cannot be
guessed from its sha256 whatever the speed of the hash, and a KDF would cost tens of
milliseconds of CPU on every API request, on the event loop. (GitHub and PyPI store their
API tokens the same way.) Comparisons are constant-time (:func:`hmac.compare_digest`).

:class:`TokenStore` is the seam: today one server token with the ``admin`` scope; the API
issue adds per-business tokens (a store backed by the database) behind the same protocol.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = [
    "TOKEN_FILE_NAME",
    "TOKEN_PREFIX",
    "AsyncTokenStore",
    "Principal",
    "Scope",
    "StaticTokenStore",
    "TokenStore",
    "bearer_token",
    "ensure_server_token",
    "generate_token",
    "hash_token",
    "rotate_server_token",
]

TOKEN_PREFIX = "msrv_"
TOKEN_FILE_NAME = "api_token.sha256"  # in the data dir: the generated server token's sha256


class Scope(enum.StrEnum):
    """What a token may do. Per-business scopes come with the API issue."""

    ADMIN = "admin"  # the server token: every endpoint, every business
    BOARD = "board"  # issue 13: the live board and console of one business (``Principal.business``)
    BUSINESS = "business"  # a business's token (issue 12 §4): that business's resources only


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for, once its token is known."""

    name: str
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    business: str | None = None  # the one business a BUSINESS-scoped token acts for

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def sees(self, business: str) -> bool:
        """May act on ``business`` (admin: every business; a business token: its own)."""
        return self.is_admin or (Scope.BUSINESS in self.scopes and self.business == business)


class TokenStore(Protocol):
    """Maps a presented bearer token to its principal (None: unknown token)."""

    def authenticate(self, token: str) -> Principal | None: ...


class AsyncTokenStore(Protocol):
    """A token store in the database (the per-business tokens of issue 12 §4)."""

    async def authenticate(self, token: str) -> Principal | None: ...


class StaticTokenStore:
    """Tokens known by their sha256, fixed at start (the server token).

    Every entry is compared, match or not, so the time taken does not say which one matched.
    """

    def __init__(self, entries: Iterable[tuple[str, Principal]] = ()) -> None:
        self._entries = [(bytes.fromhex(digest), who) for digest, who in entries]

    @classmethod
    def server(cls, digest: str) -> StaticTokenStore:
        return cls([(digest, Principal("server", frozenset({Scope.ADMIN})))])

    @classmethod
    def with_business_tokens(
        cls, server_digest: str, business_digests: Iterable[tuple[str, str]]
    ) -> StaticTokenStore:
        """The server token plus ``(sha256, business)`` tokens scoped to one business's board
        (``[[http.business_tokens]]``, until the API's per-business token store lands)."""
        entries = [(server_digest, Principal("server", frozenset({Scope.ADMIN})))]
        entries += [
            (digest, Principal(f"business:{slug}", frozenset({Scope.BOARD}), slug))
            for digest, slug in business_digests
        ]
        return cls(entries)

    def authenticate(self, token: str) -> Principal | None:
        presented = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for digest, who in self._entries:
            if hmac.compare_digest(presented, digest):
                found = who
        return found


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The sha256 (hex) stored for ``token`` (``[http] api_token_sha256``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), else None.

    The scheme is case-insensitive (RFC 9110 §11.1).
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _write_digest(path: Path, digest: str) -> None:
    """Replace the file atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(digest + "\n")
    os.replace(tmp, path)


def _read_digest(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip().lower()
    except FileNotFoundError:
        return None
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{path}: not a sha256 hex digest; delete it to generate a new token")
    return text


def ensure_server_token(data_dir: Path) -> tuple[str, str | None]:
    """The generated server token's sha256 from ``data_dir``, creating one at first start.

    Returns ``(digest, token)``: ``token`` is the new token when one was just made (to be
    shown once), else None. Blocking file I/O: call it off the event loop or before it.
    """
    path = data_dir / TOKEN_FILE_NAME
    digest = _read_digest(path)
    if digest is not None:
        return digest, None
    token = generate_token()
    digest = hash_token(token)
    _write_digest(path, digest)
    return digest, token


def rotate_server_token(data_dir: Path) -> str:
    """A new server token replaces the old one in ``data_dir``; returns it (shown once)."""
    token = generate_token()
    _write_digest(data_dir / TOKEN_FILE_NAME, hash_token(token))
    return token
