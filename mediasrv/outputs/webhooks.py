"""Standard Webhooks 1.0.0 (www.standardwebhooks.com): signatures, ids, the retry schedule,
``Retry-After`` and the refusal of internal targets (SSRF).

Everything here is pure and synchronous except :class:`SafeResolver`; the durable outbox and
its delivery worker are in :mod:`mediasrv.outputs.outbox`.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import ipaddress
import os
import random
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = [
    "RETRY_SCHEDULE",
    "SECRET_PREFIX",
    "SafeResolver",
    "TargetRefused",
    "check_literal_host",
    "check_url",
    "new_message_id",
    "new_secret",
    "next_delay",
    "parse_retry_after",
    "refused_address",
    "sign",
    "signature_header",
]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # spec: random, at least 24 bytes, at most 64
_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghijkmnopqrstuvwxyz"

# Seconds to wait after attempt N fails before attempt N+1: the spec's example schedule
# ("Deliverability and reliability"), about 75.5 hours from the first attempt to the last.
RETRY_SCHEDULE: tuple[float, ...] = (
    5.0,
    5 * 60.0,
    30 * 60.0,
    2 * 3600.0,
    5 * 3600.0,
    10 * 3600.0,
    14 * 3600.0,
    20 * 3600.0,
    24 * 3600.0,
)
JITTER = 0.1  # +-10 %: retries of many endpoints that failed together do not arrive together
MAX_RETRY_AFTER = 24 * 3600.0  # a receiver cannot park a delivery for longer than a day


class TargetRefused(ValueError):
    """A webhook URL that is not http(s), or that resolves to an internal address."""


def new_secret() -> str:
    """A signing secret as the spec serialises it: ``whsec_`` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError as exc:
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook secret holds 24 to 64 bytes, this one {len(key)}")
    return key


def new_message_id(rng: random.Random | None = None) -> str:
    """``msg_`` + 27 random characters: no ``.`` (the id is part of the signed content)."""
    pick = (rng or random.SystemRandom()).choice
    return "msg_" + "".join(pick(_ID_ALPHABET) for _ in range(27))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`` (spec "Signature scheme")."""
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.'")
    content = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per secret: during a key rotation the new and the old
    secret both sign, so a receiver that knows either verifies (spec "Webhook headers")."""
    if not secrets:
        raise ValueError("an endpoint needs at least one secret")
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def next_delay(
    failed_attempts: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    schedule: Sequence[float] = RETRY_SCHEDULE,
) -> float | None:
    """Seconds until the next attempt after ``failed_attempts`` failures; None: dead letter.

    A ``Retry-After`` longer than the schedule's delay wins (capped at a day); a shorter one
    does not hurry the schedule."""
    if failed_attempts < 1 or failed_attempts > len(schedule):
        return None
    base = schedule[failed_attempts - 1]
    jitter = (rng or random).uniform(-JITTER, JITTER)
    delay = base * (1.0 + jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def refused_address(address: str) -> str | None:
    """Why an address is not a public internet host (None when it is one)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, reason in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_private", "private"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attribute):
            return reason
    return None


def check_url(url: str) -> None:
    """Refuse what is not an absolute http(s) URL with a host (TargetRefused says why)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"webhook URL scheme must be http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise TargetRefused("webhook URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("webhook URL must not carry credentials")


def check_literal_host(url: str, allow_private: bool) -> None:
    """aiohttp connects to an IP-literal host without asking the resolver: check it here."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return  # a name: SafeResolver checks what it resolves to
    reason = refused_address(host)
    if reason is not None and not allow_private:
        raise TargetRefused(f"webhook host {host} is a {reason} address")


class SafeResolver(AbstractResolver):
    """Resolves webhook hosts and drops internal addresses, at connect time (so a DNS name
    that changes to 127.0.0.1 after the check, "DNS rebinding", is refused as well).

    ``allow_private`` (server configuration; tests set it) lets loopback and private
    targets through."""

    def __init__(self, allow_private: bool = False, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self.inner is None:
            self.inner = DefaultResolver()
        results = await self.inner.resolve(host, port, family)
        if self.allow_private:
            return results
        kept = [r for r in results if refused_address(str(r["host"])) is None]
        if not kept:
            reason = refused_address(str(results[0]["host"])) if results else "no address"
            raise TargetRefused(f"webhook host {host} resolves to a {reason} address")
        return kept

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()
