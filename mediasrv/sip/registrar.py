"""The operators' registrar (RFC 3261 §10.3), sans-IO.

Operators' softphones REGISTER here with digest authentication (RFC 3261 §22, MD5 and
SHA-256 per RFC 8760, the same :class:`~mediasrv.sip.digest.DigestServer` and
:class:`~mediasrv.sip.auth_guard.AuthGuard` as the trunks), so a call flow can ring "the
operator named alice" wherever she is (:meth:`Registrar.contacts_for`).

The registrar serves one domain: an address of record (AOR) is the To URI's user part (the
operator's name); with ``domain`` set, a To host other than it gets 404 (§10.3 step 5).
Bindings live in a :class:`BindingStore` (in memory here; the SQLite store in
``outputs/bindings.py`` keeps them across restarts). Expiry is wall-clock time
(``clock``), so a binding read back after a restart expires when the phone expects.

Handled: several contacts per AOR, per-contact ``expires`` over the Expires header over the
default (§10.2.1.1), 423 with Min-Expires below the minimum (§10.3 step 7), a ceiling on
long expiries, ``Contact: *`` with ``Expires: 0`` (§10.2.2), a query without Contact
(§10.2.3), Call-ID/CSeq ordering (§10.3 step 7), and a cap on contacts per AOR.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Protocol
from urllib.parse import unquote as pct_unquote

from .auth_guard import AuthGuard, IpNetwork
from .dialog import Peer
from .digest import DigestAlgorithm, DigestServer, DigestStatus, parse_digest_params
from .message import Request
from .uri import NameAddr, SipParseError, SipUri, parse_name_addr, parse_uri

__all__ = [
    "Binding",
    "BindingStore",
    "Contact",
    "MemoryBindingStore",
    "RegisterReply",
    "Registrar",
    "RegistrarPolicy",
    "RegistrarUser",
]

log = logging.getLogger("mediasrv.sip.registrar")

MAX_DELTA = 2**32 - 1  # RFC 3261 §20.19: larger delta-seconds are taken as this
SWEEP_INTERVAL = 60.0  # seconds between sweeps of expired bindings (done within handle)


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact bound to an AOR (RFC 3261 §10.3 step 7 keeps Call-ID and CSeq with it)."""

    aor: str  # the operator's name (the To URI's user part)
    uri: str  # the Contact URI, as the phone wrote it: where to send the INVITE
    expires_at: float  # wall-clock seconds (``clock``)
    call_id: str
    cseq: int
    q: float = 1.0
    source: str = ""  # "UDP 192.0.2.1:5060" the REGISTER came from (a NAT'ed phone's address)
    user_agent: str = ""

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


Contact = Binding  # the name the flows use: contacts_for(aor) -> list[Contact]


class BindingStore(Protocol):
    """Where bindings live. Reads are synchronous (routing stays a lookup); a persistent
    store writes behind, off the event loop."""

    def get(self, aor: str) -> list[Binding]:
        """Every binding of ``aor``, expired ones included (the registrar filters)."""
        ...

    def put(self, aor: str, bindings: Sequence[Binding]) -> None:
        """Replace the bindings of ``aor`` (an empty list removes the AOR)."""
        ...

    def aors(self) -> list[str]: ...


class MemoryBindingStore:
    """Bindings in a dict: lost on restart (phones re-register within their expiry)."""

    def __init__(self) -> None:
        self._by_aor: dict[str, list[Binding]] = {}

    def get(self, aor: str) -> list[Binding]:
        return list(self._by_aor.get(aor, ()))

    def put(self, aor: str, bindings: Sequence[Binding]) -> None:
        if bindings:
            self._by_aor[aor] = list(bindings)
        else:
            self._by_aor.pop(aor, None)

    def aors(self) -> list[str]:
        return list(self._by_aor)


@dataclass(frozen=True, slots=True)
class RegistrarUser:
    """An operator allowed to register: a password, or HA1s per algorithm (RFC 7616 §3.4.2:
    H(username:realm:password), so the password itself need not be stored)."""

    name: str
    password: str | None = None
    ha1: Mapping[DigestAlgorithm, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    domain: str = ""  # "" serves any To host
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 7200
    max_contacts: int = 10  # per AOR
    drop_blocked: bool = False  # the auth guard's blocked policy: no answer instead of 403
    networks: tuple[IpNetwork, ...] = ()  # sources that may REGISTER; () = any source

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class RegisterReply:
    """What to answer: ``code``, ``reason`` (None: the default phrase) and extra headers."""

    code: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class _Refused(Exception):
    def __init__(self, code: int, reason: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(reason)
        self.reply = RegisterReply(code, reason, headers)


class Registrar:
    """``handle(request, peer)`` for each out-of-dialog REGISTER; ``contacts_for`` for flows."""

    def __init__(
        self,
        digest: DigestServer,
        users: Sequence[RegistrarUser],
        store: BindingStore | None = None,
        policy: RegistrarPolicy | None = None,
        guard: AuthGuard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.digest = digest
        self.users = {u.name: u for u in users}
        self.store: BindingStore = store if store is not None else MemoryBindingStore()
        self.policy = policy or RegistrarPolicy()
        self.guard = guard
        self._clock = clock
        self._swept_at = clock()

    # ---- for the call flows ----------------------------------------------------------------

    def contacts_for(self, aor: str) -> list[Binding]:
        """The live contacts of an operator (by name, or a sip: URI naming her), best q
        first, then the most recent registration."""
        name = _aor_name(aor)
        now = self._clock()
        live = [b for b in self.store.get(name) if b.expires_at > now]
        return sorted(live, key=lambda b: (-b.q, -b.expires_at))

    def registered(self) -> list[str]:
        """Names with at least one live contact (operator state: offline otherwise)."""
        return [aor for aor in self.store.aors() if self.contacts_for(aor)]

    def sweep(self) -> int:
        """Drop expired bindings; returns how many went."""
        now, gone = self._clock(), 0
        for aor in self.store.aors():
            bindings = self.store.get(aor)
            live = [b for b in bindings if b.expires_at > now]
            if len(live) != len(bindings):
                gone += len(bindings) - len(live)
                self.store.put(aor, live)
        return gone

    # ---- REGISTER --------------------------------------------------------------------------

    def handle(self, request: Request, peer: Peer) -> RegisterReply | None:
        """The answer to one REGISTER (None: say nothing, a blocked source under ``drop``)."""
        if not self.policy.allows(peer.host):
            return None if self.policy.drop_blocked else RegisterReply(403, "Forbidden")
        if self._clock() - self._swept_at > SWEEP_INTERVAL:
            self._swept_at = self._clock()
            self.sweep()
        try:
            aor = self._aor(request)
            user = self._authenticate(request, peer)
            if user != aor:
                # §10.3 step 6: the authenticated user may change only its own bindings.
                return RegisterReply(403, "Forbidden (not your address of record)")
            return self._update(request, peer, aor)
        except _Refused as refused:
            return refused.reply
        except _Silent:
            return None

    def _aor(self, request: Request) -> str:
        """§10.3 step 5: the AOR from the To URI; 404 for a domain we do not serve."""
        try:
            to = parse_name_addr(request.headers.get("To") or "")
        except SipParseError as exc:
            raise _Refused(400, f"Bad Request (To: {exc.reason[:40]})") from None
        uri = to.uri
        if uri.scheme not in ("sip", "sips") or not uri.user:
            raise _Refused(404, "Not Found (no user in the To URI)")
        domain = self.policy.domain
        if domain and uri.host.lower() != domain.lower():
            raise _Refused(404, "Not Found (domain not served here)")
        return _unescape_user(uri)

    # -- authentication (RFC 3261 §22.4, the auth guard as for trunks) -----------------------

    def _authenticate(self, request: Request, peer: Peer) -> str:
        guard, source = self.guard, peer.host
        if guard is not None and guard.refused(source) is not None:
            self._blocked()
        authorization = request.headers.get("Authorization")
        if authorization is None:
            raise self._challenge(source)
        try:
            params = parse_digest_params(authorization)
        except SipParseError:
            raise _Refused(400, "Bad Request (malformed Authorization)") from None
        name = params.get("username") or ""
        known = name in self.users
        account = f"registrar/{name}" if known else None
        if guard is not None and account is not None and guard.refused(source, account):
            self._blocked()
        result = self.digest.verify_params(
            params, "REGISTER", self._password, request.uri, source, ha1_for=self._ha1
        )
        if result.ok:
            if guard is not None:
                guard.success(source, account)
            return name
        if result.status is DigestStatus.STALE:
            raise self._challenge(source, stale=True)
        if result.status is DigestStatus.URI_MISMATCH:
            raise _Refused(400, "Bad Request (digest uri is not the Request-URI)")
        if result.guess and guard is not None:
            guard.failure(source, account)
        log.info(
            "REGISTER refused",
            extra={"source": source, "user": name[:64], "reason": result.reason},
        )
        raise _Refused(403, "Forbidden (bad credentials)")

    def _challenge(self, source: str, stale: bool = False) -> _Refused:
        values = self.digest.challenges(stale=stale, source=source)
        return _Refused(401, "Unauthorized", tuple(("WWW-Authenticate", v) for v in values))

    def _blocked(self) -> None:
        if self.policy.drop_blocked:
            raise _Silent
        raise _Refused(403, "Forbidden")

    def _password(self, name: str) -> str | None:
        user = self.users.get(name)
        return user.password if user is not None else None

    def _ha1(self, name: str, algorithm: DigestAlgorithm) -> str | None:
        user = self.users.get(name)
        return user.ha1.get(algorithm) if user is not None else None

    # -- bindings (§10.3 steps 6-8) ----------------------------------------------------------

    def _update(self, request: Request, peer: Peer, aor: str) -> RegisterReply:
        now = self._clock()
        call_id, cseq = request.call_id, request.cseq[0]
        contacts = _contacts(request)
        current = [b for b in self.store.get(aor) if b.expires_at > now]
        if contacts is None:  # no Contact: a query (§10.2.3)
            return self._ok(current, now)
        if isinstance(contacts, NameAddr):  # Contact: *
            bindings = self._remove_all(request, current, call_id, cseq)
        else:
            header = _expires_header(request)
            bindings = current
            for contact in contacts:
                expires = self._expires(contact, header)
                bindings = self._apply(bindings, contact, expires, request, peer, aor, now)
        if len(bindings) > self.policy.max_contacts:
            raise _Refused(403, f"Forbidden (more than {self.policy.max_contacts} contacts)")
        self.store.put(aor, bindings)
        return self._ok(bindings, now)

    def _remove_all(
        self, request: Request, current: list[Binding], call_id: str, cseq: int
    ) -> list[Binding]:
        """§10.2.2, §10.3 step 6: ``*`` only alone and with Expires: 0."""
        if _expires_header(request) != 0:
            raise _Refused(400, "Bad Request (Contact: * needs Expires: 0)")
        for b in current:
            if b.call_id == call_id and cseq <= b.cseq:
                raise _Refused(500, "Server Internal Error (CSeq out of order)")
        return []

    def _expires(self, contact: NameAddr, header: int | None) -> int:
        raw = contact.params.get("expires")
        if raw is not None:
            value = _delta_seconds(raw, "Contact expires")
        elif header is not None:
            value = header
        else:
            value = self.policy.default_expires
        if 0 < value < self.policy.min_expires:
            # §10.3 step 7: 423 Interval Too Brief with our minimum.
            minimum = (("Min-Expires", str(self.policy.min_expires)),)
            raise _Refused(423, "Interval Too Brief", minimum)
        return min(value, self.policy.max_expires)

    def _apply(
        self,
        bindings: list[Binding],
        contact: NameAddr,
        expires: int,
        request: Request,
        peer: Peer,
        aor: str,
        now: float,
    ) -> list[Binding]:
        """One Contact: add, refresh or (expires 0) remove its binding (§10.3 step 7)."""
        uri = contact.uri
        kept: list[Binding] = []
        old: Binding | None = None
        for b in bindings:
            if old is None and _same_contact(b.uri, uri):
                old = b
            else:
                kept.append(b)
        call_id, cseq = request.call_id, request.cseq[0]
        if old is not None and old.call_id == call_id and cseq <= old.cseq:
            raise _Refused(500, "Server Internal Error (CSeq out of order)")
        if expires == 0:
            return kept
        binding = Binding(
            aor=aor,
            uri=str(uri),
            expires_at=now + expires,
            call_id=call_id,
            cseq=cseq,
            q=_q_value(contact),
            source=f"{peer.transport} {_host_port(peer)}",
            user_agent=(request.headers.get("User-Agent") or "")[:128],
        )
        kept.append(binding)
        return kept

    def _ok(self, bindings: Sequence[Binding], now: float) -> RegisterReply:
        """§10.3 step 8: 200 listing every current binding with its remaining expiry."""
        headers = [("Contact", f"<{b.uri}>;expires={b.remaining(now)}") for b in bindings]
        headers.append(("Date", formatdate(usegmt=True)))
        return RegisterReply(200, "OK", tuple(headers))


class _Silent(Exception):
    """A blocked source under the ``drop`` policy: no answer at all."""


def _aor_name(aor: str) -> str:
    if ":" not in aor:
        return aor
    try:
        uri = parse_uri(aor)
    except SipParseError:
        return aor
    return _unescape_user(uri) if uri.user else aor


def _unescape_user(uri: SipUri) -> str:
    """§19.1.4: the user part compares after unescaping (``%61lice`` is ``alice``)."""
    return pct_unquote(uri.user or "")


def _contacts(request: Request) -> list[NameAddr] | NameAddr | None:
    """None: no Contact (a query); one NameAddr: the wildcard ``*`` alone; else the list."""
    values = request.headers.get_all("Contact")
    if not values:
        return None
    try:
        parsed = [parse_name_addr(v) for v in values]
    except SipParseError as exc:
        raise _Refused(400, f"Bad Request (Contact: {exc.reason[:40]})") from None
    if any(p.wildcard for p in parsed):
        if len(parsed) != 1:
            raise _Refused(400, "Bad Request (Contact: * must be alone)")
        return parsed[0]
    for p in parsed:
        if p.uri.scheme not in ("sip", "sips") or not p.uri.host:
            raise _Refused(400, "Bad Request (Contact is not a SIP URI)")
    return parsed


def _expires_header(request: Request) -> int | None:
    value = request.headers.get("Expires")
    return None if value is None else _delta_seconds(value, "Expires")


def _delta_seconds(text: str, what: str) -> int:
    """§20.19 / §25.1 delta-seconds: digits only; very large values are taken as 2**32-1."""
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit():
        raise _Refused(400, f"Bad Request ({what} is not delta-seconds)")
    digits = text.lstrip("0") or "0"
    return MAX_DELTA if len(digits) > 10 else min(int(digits), MAX_DELTA)


def _q_value(contact: NameAddr) -> float:
    """§20.10 qvalue, 0 to 1 (a bad one is 400: the phone meant something)."""
    raw = contact.params.get("q")
    if raw is None:
        return 1.0
    try:
        q = float(raw)
    except ValueError:
        raise _Refused(400, "Bad Request (bad q value)") from None
    if not 0.0 <= q <= 1.0 or len(raw) > 5:
        raise _Refused(400, "Bad Request (bad q value)")
    return q


def _same_contact(stored: str, uri: SipUri) -> bool:
    """§10.3 step 7: contacts compare by the URI rules of §19.1.4."""
    if stored == str(uri):
        return True
    try:
        return parse_uri(stored).equivalent(uri)
    except SipParseError:
        return False


def _host_port(peer: Peer) -> str:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"{host}:{peer.port}"
