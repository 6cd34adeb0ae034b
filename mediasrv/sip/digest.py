"""Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760).

MD5 and SHA-256 with qop=auth. A nonce is a timestamp plus an HMAC of it (and of the address it
was issued to) under a server secret, so a forged or foreign nonce is refused without any
state, and a nonce answered from another address than the one challenged is foreign too (RFC
7616 §3.3 leaves the nonce format to the server). On top of that the server keeps a bounded
table of the nonces it issued (:class:`NonceTable`), which makes each nonce bounded in use: the
nonce count ``nc`` must grow with every request (RFC 7616 §3.4: a count seen before is a
replay), a nonce answered wrongly ``max_failures`` times is spent, and an answer without qop
(RFC 2617 §3.2.2.1 form) is good once. A correct answer to a nonce that expired or left the
table gets ``stale=true`` (RFC 7616 §3.3), so an honest client retries with a fresh one (the
table is per process: nodes sharing a secret would re-challenge each other's nonces so).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
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
    "NonceTable",
    "choose_challenge",
    "parse_digest_params",
    "same_resource",
    "stored_ha1",
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
    STALE = "stale"  # correct response, but a nonce we cannot take: re-challenge, stale=true
    FAILED = "failed"
    URI_MISMATCH = "uri-mismatch"  # the digest uri is not the Request-URI (RFC 7616 §3.4.6)


@dataclass(frozen=True, slots=True)
class DigestResult:
    status: DigestStatus
    username: str | None = None
    reason: str = ""
    # True when the response was compared with a password and was wrong (or named no known
    # user): a password guess, which rate limits count. Answers refused before any password
    # was involved (forged nonce, spent nonce, wrong realm or algorithm) teach an attacker
    # nothing and are not guesses.
    guess: bool = False

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
    return _session_ha1(algorithm, _hex(base, f"{username}:{realm}:{password}"), nonce, cnonce)


def stored_ha1(algorithm: DigestAlgorithm, username: str, realm: str, password: str) -> str:
    """H(username:realm:password): what a registrar may keep instead of the password."""
    return _hex(algorithm.value, f"{username}:{realm}:{password}")


def _session_ha1(algorithm: str, ha1: str, nonce: str, cnonce: str) -> str:
    base = algorithm.removesuffix("-SESS")
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


@dataclass(slots=True)
class _NonceState:
    issued: float
    last_nc: int = 0  # highest nonce count accepted (RFC 7616 §3.4)
    failures: int = 0  # wrong answers to this nonce
    used: bool = False  # accepted once without qop (no nc to tell a replay from a retry)


class NonceTable:
    """The nonces we issued that may still be answered, oldest first, at most ``capacity``.

    A full table forgets its oldest nonce; an answer to a forgotten nonce is re-challenged
    with ``stale=true``, which costs an honest client one round trip and gives a flood of
    challenges no way to grow memory.
    """

    def __init__(self, capacity: int, ttl: float) -> None:
        if capacity < 1:
            raise ValueError("the nonce table needs room for at least one nonce")
        self.capacity = capacity
        self.ttl = ttl
        self._nonces: OrderedDict[str, _NonceState] = OrderedDict()
        self.evicted = 0  # nonces forgotten to make room (not by expiry)

    def __len__(self) -> int:
        return len(self._nonces)

    def add(self, nonce: str, now: float) -> None:
        self._expire(now)
        while len(self._nonces) >= self.capacity:
            self._nonces.popitem(last=False)
            self.evicted += 1
        self._nonces[nonce] = _NonceState(now)

    def get(self, nonce: str) -> _NonceState | None:
        return self._nonces.get(nonce)

    def _expire(self, now: float) -> None:
        # issue order is time order, so the expired ones are at the front
        nonces = self._nonces
        while nonces:
            oldest = next(iter(nonces.values()))
            if now - oldest.issued <= self.ttl:
                break
            nonces.popitem(last=False)


class DigestServer:
    """UAS side: challenge requests from trunks that must authenticate and verify the answers.

    ``algorithms`` are the only ones offered and accepted (RFC 8760 §2.4: SHA-256 first);
    ``max_failures`` wrong answers spend a nonce; ``max_nonces`` bounds the nonce table.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        algorithms: Sequence[DigestAlgorithm] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5),
        nonce_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
        max_failures: int = 5,
        max_nonces: int = 10_000,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one digest algorithm is required")
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.realm = realm
        self._secret = secret
        # RFC 8760 §2.4: SHA-256 challenges come first, whatever order was configured
        self.algorithms = tuple(sorted(set(algorithms), key=lambda a: _PREFERENCE.index(a.value)))
        self._allowed = frozenset(a.value for a in self.algorithms)
        self.nonce_ttl = nonce_ttl
        self.max_failures = max_failures
        self._clock = clock
        self.nonces = NonceTable(max_nonces, nonce_ttl)

    # -- nonces ---------------------------------------------------------------------------

    def _mac(self, stamp: str, source: str) -> str:
        msg = f"{stamp}:{self.realm}:{source}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

    def new_nonce(self, source: str = "") -> str:
        """``<hex milliseconds>-<salt>.<hmac>``, bound to the address ``source`` it is issued
        to; the salt keeps two nonces of one millisecond apart (each has its own nc)."""
        now = self._clock()
        stamp = f"{int(now * 1000):x}-{secrets.token_hex(4)}"
        nonce = f"{stamp}.{self._mac(stamp, source)}"
        self.nonces.add(nonce, now)
        return nonce

    def _nonce_age(self, nonce: str, source: str) -> float | None:
        """Seconds since the nonce was issued to ``source``, or None if we did not."""
        stamp, dot, mac = nonce.partition(".")
        if not dot or not stamp or len(stamp) > 32:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(stamp, source).encode()):
            return None
        try:
            issued = int(stamp.partition("-")[0], 16) / 1000
        except ValueError:
            return None
        return self._clock() - issued

    # -- challenge / verify ----------------------------------------------------------------

    def challenges(self, stale: bool = False, source: str = "") -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values, one per algorithm, SHA-256 first.

        ``source`` is the address the challenge goes to; only answers from it are taken.
        """
        nonce = self.new_nonce(source)
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
        request_uri: str,
        source: str = "",
    ) -> DigestResult:
        """Check an Authorization value sent from ``source``; never raises for bad input."""
        try:
            params = parse_digest_params(authorization)
        except SipParseError as exc:
            return _failed(exc.reason)
        return self.verify_params(params, method, password_for, request_uri, source)

    def verify_params(
        self,
        params: Mapping[str, str],
        method: str,
        password_for: Callable[[str], str | None],
        request_uri: str,
        source: str = "",
        ha1_for: Callable[[str, DigestAlgorithm], str | None] | None = None,
    ) -> DigestResult:
        """:meth:`verify` on credentials already split by :func:`parse_digest_params`.

        ``ha1_for(username, algorithm)``, when given, supplies a stored HA1 (hex of
        username:realm:password) for users kept without their password; it is asked first,
        and ``password_for`` only when it has none."""
        username = params.get("username")
        nonce = params.get("nonce")
        uri = params.get("uri")
        response = params.get("response")
        if username is None or nonce is None or uri is None or response is None:
            return _failed("missing digest parameter", username)
        if params.get("realm") != self.realm:
            return _failed("wrong realm", username)
        # RFC 7616 §3.4.6, RFC 3261 §22.4: the credentials name the resource they were made
        # for; answers made for another Request-URI (another number) are not taken.
        if not same_resource(uri, request_uri):
            return DigestResult(DigestStatus.URI_MISMATCH, username, "uri is not the Request-URI")
        algorithm = params.get("algorithm", "MD5").upper()  # RFC 7616 §3.4: absent means MD5
        if algorithm not in self._allowed:
            return _failed(f"algorithm {algorithm} not allowed", username)
        qop = params.get("qop")
        nc = params.get("nc", "")
        cnonce = params.get("cnonce", "")
        if qop is not None:
            if qop.lower() != "auth":
                return _failed("unsupported qop", username)
            if len(nc) != 8 or not all(c in "0123456789abcdefABCDEF" for c in nc) or not cnonce:
                return _failed("bad nc or cnonce", username)
        age = self._nonce_age(nonce, source)
        if age is None:
            return _failed("unknown nonce", username)
        state = self.nonces.get(nonce)
        if state is not None and state.failures >= self.max_failures:
            # not even checked: one nonce must not serve unbounded guesses
            return _failed("nonce spent", username)
        ha1 = self._user_ha1(algorithm, username, nonce, cnonce, password_for, ha1_for)
        if ha1 is None:
            return self._wrong(state, "unknown user", username)
        expected = _response(algorithm, ha1, nonce, method, uri, qop and "auth", nc, cnonce)
        if not hmac.compare_digest(expected.encode(), response.lower().encode()):
            return self._wrong(state, "wrong response", username)
        # A correct answer we must not take as it is: the client knows the password (or
        # replays what it captured), so re-challenge with stale=true (RFC 7616 §3.3) and let
        # an honest client answer a fresh nonce.
        if age > self.nonce_ttl or age < -5.0:
            return DigestResult(DigestStatus.STALE, username, "nonce expired")
        if state is None:
            return DigestResult(DigestStatus.STALE, username, "nonce not in the table")
        if qop is None:
            if state.used:
                return DigestResult(DigestStatus.STALE, username, "nonce used without qop")
            state.used = True
        else:
            count = int(nc, 16)
            if count <= state.last_nc:  # RFC 7616 §3.4: the same nc twice is a replay
                return DigestResult(DigestStatus.STALE, username, "nonce count replayed")
            state.last_nc = count
        return DigestResult(DigestStatus.OK, username)

    def _user_ha1(
        self,
        algorithm: str,
        username: str,
        nonce: str,
        cnonce: str,
        password_for: Callable[[str], str | None],
        ha1_for: Callable[[str, DigestAlgorithm], str | None] | None,
    ) -> str | None:
        base = DigestAlgorithm(algorithm.removesuffix("-SESS"))
        stored = ha1_for(username, base) if ha1_for is not None else None
        if stored is not None:
            return _session_ha1(algorithm, stored.lower(), nonce, cnonce)
        password = password_for(username)
        if password is None:
            return None
        return _ha1(algorithm, username, self.realm, password, nonce, cnonce)

    def _wrong(self, state: _NonceState | None, reason: str, username: str) -> DigestResult:
        if state is not None:
            state.failures += 1
        return DigestResult(DigestStatus.FAILED, username, reason, guess=True)


def same_resource(digest_uri: str, request_uri: str) -> bool:
    """Does the digest ``uri`` name the Request-URI? (RFC 7616 §3.4.6, RFC 3261 §22.4)

    Compared as SIP URIs are (RFC 3261 §19.1.4: scheme and host case-insensitive, user part
    exact after unescaping, ports and the transport/user/method/maddr/ttl parameters must
    agree), not byte for byte: the response hash already covers the uri bytes, and the same
    resource written another way (``SIP:`` for ``sip:``, ``transport=UDP``) is still the same
    resource. A uri that is not a SIP URI must equal the Request-URI exactly.
    """
    if digest_uri == request_uri:
        return True
    try:
        return parse_uri(digest_uri).equivalent(parse_uri(request_uri))
    except SipParseError:
        return False


def _failed(reason: str, username: str | None = None) -> DigestResult:
    return DigestResult(DigestStatus.FAILED, username, reason)
