"""Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

MD5 and SHA-256 with qop=auth. The server side is stateless: a nonce is a timestamp plus an
HMAC of it under a server secret, so any node holding the secret can verify it and no per-call
state is kept (RFC 7616 §3.3 leaves the nonce format to the server). The price is that nonce
counts are not tracked, so a captured response can be replayed until its nonce expires; the
TTL bounds that window and ``stale=true`` asks an honest client to retry with a fresh nonce.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mediasrv.sip.uri import SipParseError, parse_uri, unquote

__all__ = [
    "DigestAlgorithm",
    "DigestClient",
    "DigestCredentials",
    "DigestError",
    "DigestResult",
    "DigestServer",
    "DigestStatus",
    "choose_challenge",
    "parse_digest_params",
]


class DigestAlgorithm(enum.Enum):
    MD5 = "MD5"
    SHA256 = "SHA-256"


_HASH_NAMES = {"MD5": "md5", "SHA-256": "sha256"}
# RFC 8760 §2.4: prefer the strongest algorithm the client supports.
_PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")


class DigestError(ValueError):
    """A challenge or credentials we cannot answer (unsupported algorithm or qop, bad syntax)."""


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    username: str
    password: str
    realm: str | None = None  # None: answer any realm's challenge


class DigestStatus(enum.Enum):
    OK = "ok"
    STALE = "stale"  # correct response, expired nonce: re-challenge with stale=true
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DigestResult:
    status: DigestStatus
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is DigestStatus.OK


def _hex(algorithm: str, text: str) -> str:
    return hashlib.new(_HASH_NAMES[algorithm], text.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_SEPARATORS = re.compile(r"[ \t,]*+")
_BLANKS = re.compile(r"[ \t]*+")
_QUOTED_VALUE = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.S)
MAX_DIGEST_PARAMS = 32  # RFC 7616 defines 14; bounded work per header (issue 8)


def parse_digest_params(value: str) -> dict[str, str]:
    """``Digest a=b, c="d, e"`` -> ``{"a": "b", "c": "d, e"}`` (keys lower-cased, quotes removed).

    Raises SipParseError if the scheme is not Digest or a parameter is malformed. Linear in
    the length of ``value``: C-level scans between parameters, Python once per parameter.
    """
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError("not a Digest credential")
    params: dict[str, str] = {}
    n = len(rest)
    i = _SEPARATORS.match(rest).end()  # type: ignore[union-attr]  # always matches
    count = 0
    while i < n:
        count += 1
        if count > MAX_DIGEST_PARAMS:
            raise SipParseError("too many digest parameters")
        eq = rest.find("=", i)
        if eq < 0:
            raise SipParseError("bad digest parameter")
        name = rest[i:eq].strip().lower()
        if not name or any(c in name for c in ' \t,"'):
            raise SipParseError("bad digest parameter")
        i = _BLANKS.match(rest, eq + 1).end()  # type: ignore[union-attr]
        if i < n and rest[i] == '"':
            quoted = _QUOTED_VALUE.match(rest, i)
            if quoted is None:
                raise SipParseError("unterminated quoted string")
            params[name] = unquote(quoted.group())
            i = quoted.end()
        else:
            j = rest.find(",", i)
            j = n if j < 0 else j
            params[name] = rest[i:j].strip()
            i = j
        i = _SEPARATORS.match(rest, i).end()  # type: ignore[union-attr]
    return params


def _ha1(algorithm: str, username: str, realm: str, password: str, nonce: str, cnonce: str) -> str:
    base = algorithm.removesuffix("-SESS")
    ha1 = _hex(base, f"{username}:{realm}:{password}")
    if algorithm.endswith("-SESS"):
        # RFC 7616 §3.4.2: the -sess variants hash in the nonce and cnonce
        ha1 = _hex(base, f"{ha1}:{nonce}:{cnonce}")
    return ha1


def _response(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str,
    cnonce: str,
) -> str:
    """request-digest (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1 for the legacy no-qop form)."""
    base = algorithm.removesuffix("-SESS")
    ha2 = _hex(base, f"{method}:{uri}")
    if qop:
        return _hex(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hex(base, f"{ha1}:{nonce}:{ha2}")


def choose_challenge(challenges: Sequence[str]) -> str | None:
    """The challenge with the strongest algorithm we support (RFC 8760 §2.4), or None."""
    best: tuple[int, str] | None = None
    for value in challenges:
        try:
            alg = parse_digest_params(value).get("algorithm", "MD5").upper()
        except SipParseError:
            continue
        if alg in _PREFERENCE:
            rank = _PREFERENCE.index(alg)
            if best is None or rank < best[0]:
                best = (rank, value)
    return best[1] if best else None


class DigestClient:
    """UAC side: answer a 401/407 challenge from an outbound trunk (RFC 3261 §22.2)."""

    def __init__(self, cnonce_factory: Callable[[], str] | None = None) -> None:
        self._cnonce = cnonce_factory or (lambda: secrets.token_hex(16))
        self._counts: dict[str, int] = {}  # nonce -> last nc used (RFC 7616 §3.4)

    def authorization(self, challenge: str, method: str, uri: str, creds: DigestCredentials) -> str:
        """The Authorization / Proxy-Authorization value answering ``challenge``.

        Raises DigestError for a challenge we cannot answer.
        """
        try:
            params = parse_digest_params(challenge)
        except SipParseError as exc:
            raise DigestError(exc.reason) from None
        realm = params.get("realm")
        nonce = params.get("nonce")
        if realm is None or nonce is None:
            raise DigestError("challenge without realm or nonce")
        if creds.realm is not None and creds.realm != realm:
            raise DigestError(f"challenge realm {realm!r} is not {creds.realm!r}")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in _PREFERENCE:
            raise DigestError(f"unsupported digest algorithm {algorithm}")
        qop: str | None = None
        if "qop" in params:
            offered = {q.strip().lower() for q in params["qop"].split(",")}
            if "auth" not in offered:
                raise DigestError("only qop=auth is supported")
            qop = "auth"
        nc_value = self._counts.get(nonce, 0) + 1
        self._counts[nonce] = nc_value
        nc = f"{nc_value:08x}"
        cnonce = self._cnonce() if qop or algorithm.endswith("-SESS") else ""
        ha1 = _ha1(algorithm, creds.username, realm, creds.password, nonce, cnonce)
        response = _response(algorithm, ha1, nonce, method, uri, qop, nc, cnonce)
        # RFC 8760 §2.1 / RFC 7616 §3.4: the algorithm name is echoed as the server wrote it
        alg_text = params.get("algorithm", "MD5")
        parts = [
            f"username={_quote(creds.username)}",
            f"realm={_quote(realm)}",
            f"nonce={_quote(nonce)}",
            f"uri={_quote(uri)}",
            f"response={_quote(response)}",
            f"algorithm={alg_text}",
        ]
        if qop:
            parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc}"]
        if "opaque" in params:
            parts.append(f"opaque={_quote(params['opaque'])}")
        return "Digest " + ", ".join(parts)


class DigestServer:
    """UAS side: challenge requests from trunks that must authenticate; stateless nonces
    (HMAC of timestamp with a secret, so no per-call state; stale=true after expiry)."""

    def __init__(
        self,
        realm: str,
        secret: bytes,
        algorithms: Sequence[DigestAlgorithm] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5),
        nonce_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one digest algorithm is required")
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self.realm = realm
        self._secret = secret
        # RFC 8760 §2.4: SHA-256 challenges come first, whatever order was configured
        self.algorithms = tuple(sorted(algorithms, key=lambda a: _PREFERENCE.index(a.value)))
        self.nonce_ttl = nonce_ttl
        self._clock = clock

    # -- nonces ---------------------------------------------------------------------------

    def _mac(self, stamp: str) -> str:
        msg = f"{stamp}:{self.realm}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

    def new_nonce(self) -> str:
        """``<hex milliseconds>.<hmac>``: authentic without server state."""
        stamp = f"{int(self._clock() * 1000):x}"
        return f"{stamp}.{self._mac(stamp)}"

    def _nonce_age(self, nonce: str) -> float | None:
        """Seconds since the nonce was issued, or None if we did not issue it."""
        stamp, dot, mac = nonce.partition(".")
        if not dot or not stamp or len(stamp) > 16:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(stamp).encode()):
            return None
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return None
        return self._clock() - issued

    # -- challenge / verify ----------------------------------------------------------------

    def challenges(self, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, SHA-256 first."""
        nonce = self.new_nonce()
        out = []
        for alg in self.algorithms:
            value = (
                f"Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, "
                f'algorithm={alg.value}, qop="auth"'
            )
            if stale:
                value += ", stale=true"
            out.append(value)
        return out

    def verify(
        self,
        authorization: str,
        method: str,
        password_for: Callable[[str], str | None],
        request_uri: str | None = None,
    ) -> DigestResult:
        """Check an Authorization value; never raises for bad input.

        ``request_uri`` (optional) must then equal the credentials' ``uri`` (RFC 2617 §3.2.2.5).
        """
        try:
            params = parse_digest_params(authorization)
        except SipParseError as exc:
            return _failed(exc.reason)
        username = params.get("username")
        nonce = params.get("nonce")
        uri = params.get("uri")
        response = params.get("response")
        if username is None or nonce is None or uri is None or response is None:
            return _failed("missing digest parameter", username)
        if params.get("realm") != self.realm:
            return _failed("wrong realm", username)
        if request_uri is not None and not _same_uri(uri, request_uri):
            return _failed("uri does not match Request-URI", username)
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in {a.value for a in self.algorithms}:
            return _failed(f"algorithm {algorithm} not allowed", username)
        qop = params.get("qop")
        nc = params.get("nc", "")
        cnonce = params.get("cnonce", "")
        if qop is not None:
            if qop.lower() != "auth":
                return _failed("unsupported qop", username)
            if len(nc) != 8 or not all(c in "0123456789abcdefABCDEF" for c in nc) or not cnonce:
                return _failed("bad nc or cnonce", username)
        age = self._nonce_age(nonce)
        if age is None:
            return _failed("unknown nonce", username)
        password = password_for(username)
        if password is None:
            return _failed("unknown user", username)
        ha1 = _ha1(algorithm, username, self.realm, password, nonce, cnonce)
        expected = _response(algorithm, ha1, nonce, method, uri, qop and "auth", nc, cnonce)
        if not hmac.compare_digest(expected.encode(), response.lower().encode()):
            return _failed("wrong response", username)
        # a correct answer to an expired nonce: the client knows the password, so
        # re-challenge with stale=true instead of failing (RFC 7616 §3.3 "stale")
        if age > self.nonce_ttl or age < -5.0:
            return DigestResult(DigestStatus.STALE, username, "nonce expired")
        return DigestResult(DigestStatus.OK, username)


def _same_uri(a: str, b: str) -> bool:
    """digest-uri vs Request-URI (RFC 2617 §3.2.2.5), tolerating case in scheme and host."""
    if a == b:
        return True
    try:
        return parse_uri(a) == parse_uri(b)
    except SipParseError:
        return False


def _failed(reason: str, username: str | None = None) -> DigestResult:
    return DigestResult(DigestStatus.FAILED, username, reason)
