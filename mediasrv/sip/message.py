"""SIP message model: ordered headers, Request/Response, serialisation (RFC 3261 §7, §20).

Header names are canonicalised once on the way in (compact forms expanded, RFC 3261 §7.3.3),
so lookups are plain string comparisons. Values are kept as text; structured views (Via,
From/To tags, CSeq) are parsed on demand by the convenience properties.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mediasrv.sip.uri import (
    SipParseError,
    Via,
    first_list_element,
    is_token,
    parse_name_addr,
    parse_via,
    split_list,
    split_params,
)

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "Request",
    "Response",
    "SipMessage",
    "canonical_name",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "serialize",
    "split_list",
]

# RFC 3261 §7.3.3 and the IANA registry's compact forms.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# Names whose canonical spelling is not plain Title-Case-Per-Dash.
_SPECIAL_NAMES = (
    "Call-ID",
    "CSeq",
    "WWW-Authenticate",
    "MIME-Version",
    "RAck",
    "RSeq",
    "SIP-ETag",
    "SIP-If-Match",
    "Content-ID",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
)
_KNOWN: dict[str, str] = {n.lower(): n for n in _SPECIAL_NAMES}
_KNOWN.update({k: v for k, v in COMPACT_FORMS.items()})

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1: such header lines may be
# combined, so get_all() splits them back into elements).
LIST_HEADERS = frozenset(
    (
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
        "Content-Encoding",
        "Content-Language",
        "In-Reply-To",
        "Path",
        "Service-Route",
        "Reason",
        "Warning",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
        "Security-Client",
        "Security-Server",
        "Security-Verify",
    )
)


# Memoised (bounded LRU: header names come from the network) -- names repeat in every message.
@functools.lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """Canonical spelling of a header name: compact forms expanded, known names as in the RFC,
    others Title-Cased per dash (``x-my-hdr`` -> ``X-My-Hdr``)."""
    lower = name.strip().lower()
    canon = _KNOWN.get(lower)
    if canon is None:
        canon = "-".join(part[:1].upper() + part[1:] for part in lower.split("-"))
    return canon


@functools.lru_cache(maxsize=1024)
def checked_name(raw: str) -> str | None:
    """Canonical name for a header name read off the wire, None if it is not a token.

    HCOLON allows whitespace before the colon (RFC 3261 §25.1), so trailing whitespace is
    stripped; leading whitespace marks a folded continuation line, which is not a name.
    """
    name = raw.rstrip(" \t")
    if not is_token(name):
        return None
    return canonical_name(name)


def _clean(value: str) -> str:
    """Refuse a line break in a header value: serialised, it would inject headers."""
    if "\n" in value or "\r" in value:
        raise ValueError(f"line break in SIP header value: {value[:40]!r}")
    return value


class Headers:
    """Ordered header list with case-insensitive names and compact forms expanded.

    Names are stored in canonical capitalisation (Call-ID, CSeq, WWW-Authenticate, ...).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), _clean(v)) for n, v in items]

    @classmethod
    def _from_canonical(cls, items: list[tuple[str, str]]) -> Headers:
        """Adopt a list whose names are already canonical (parser fast path)."""
        h = cls.__new__(cls)
        h._items = items
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name)
        for n, v in self._items:
            if n == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        key = canonical_name(name)
        values = [v for n, v in self._items if n == key]
        if key in LIST_HEADERS:
            out: list[str] = []
            for v in values:
                out.extend(split_list(v))
            return out
        return values

    def get_lines(self, name: str) -> list[str]:
        """Every header line of ``name`` as written (comma lists not split)."""
        key = canonical_name(name)
        return [v for n, v in self._items if n == key]

    def set(self, name: str, value: str) -> None:
        key = canonical_name(name)
        items = self._items
        for i, (n, _) in enumerate(items):
            if n == key:
                items[i] = (key, _clean(value))
                self._items = items[: i + 1] + [it for it in items[i + 1 :] if it[0] != key]
                return
        items.append((key, _clean(value)))

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), _clean(value)))

    def prepend(self, name: str, value: str) -> None:
        key = canonical_name(name)
        for i, (n, _) in enumerate(self._items):
            if n == key:
                self._items.insert(i, (key, _clean(value)))
                return
        self._items.insert(0, (key, _clean(value)))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [it for it in self._items if it[0] != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = canonical_name(name)
        return any(n == key for n, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers._from_canonical(list(self._items))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _MessageMixin:
    """Convenience accessors shared by Request and Response (parsed on demand)."""

    # _top caches (raw Via line, its parsed top element); not a dataclass field, so it
    # takes no part in __init__, __eq__ or __repr__
    __slots__ = ("_top",)
    headers: Headers
    _top: tuple[str, Via]

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}")
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self._required("CSeq"))

    @property
    def from_tag(self) -> str | None:
        return header_tag(self._required("From"))

    @property
    def to_tag(self) -> str | None:
        return header_tag(self._required("To"))

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        """The first Via element (parsed once per Via line; treat the result as read-only)."""
        raw = self._required("Via")
        cached = getattr(self, "_top", None)
        if cached is not None and cached[0] is raw:
            return cached[1]
        # only the first element of a possibly combined line is the top Via
        via = parse_via(first_list_element(raw))
        self._top = (raw, via)
        return via

    @property
    def branch(self) -> str | None:
        return self.top_via.branch


def header_tag(value: str) -> str | None:
    """The ``tag`` of a From/To value (RFC 3261 §19.3) without parsing its URI (hot path)."""
    if '"' in value:
        return parse_name_addr(value).tag  # quoted strings: take the careful path
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <uri>")
        tail = value[gt + 1 :]
    else:
        # addr-spec: every ";" parameter is a header parameter (§20.10)
        semi = value.find(";")
        if semi < 0:
            return None
        tail = value[semi:]
    return split_params(tail).get("tag") if ";" in tail else None


def parse_max_forwards(value: str | None) -> int | None:
    """Max-Forwards = 1*DIGIT (RFC 3261 §20.22), 0-255 (§8.1.1.6); None when absent.

    Leading zeros are allowed (RFC 4475 §3.1.1.1 sends ``0068``); anything else, or a value
    above 255, is an error (RFC 4475 §3.1.2.4 lets a server refuse it).
    """
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > 255:
        raise SipParseError("bad Max-Forwards")
    return int(text)


def onward_max_forwards(received: int | None, configured: int) -> int:
    """Max-Forwards of the request a B2BUA sends on for one it received: the received value
    less one (RFC 3261 §16.6 step 3, which RFC 7332 §3 applies to B2BUAs: a B2BUA must not
    restore the hop count it was given), never more than ``[sip] max_forwards``; the
    configured value when the request had none (§16.3 step 3: the check is passed)."""
    if received is None:
        return configured
    return max(0, min(received - 1, configured))


def parse_cseq(value: str) -> tuple[int, str]:
    """CSeq = 1*DIGIT LWS Method, number < 2**31 (RFC 3261 §8.1.1.5, §20.16)."""
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError("bad CSeq")
    num, method = parts
    if not (num.isascii() and num.isdigit()) or len(num) > 10:
        raise SipParseError("bad CSeq")
    n = int(num)
    if n >= 2**31:
        raise SipParseError("bad CSeq")
    return n, method


@dataclass(slots=True)
class Request(_MessageMixin):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""


@dataclass(slots=True)
class Response(_MessageMixin):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""


SipMessage = Request | Response


def serialize(msg: SipMessage) -> bytes:
    """Wire bytes with CRLF line ends and a Content-Length that matches the body (§18.3)."""
    if isinstance(msg, Request):
        start = f"{msg.method} {msg.uri} SIP/2.0"
    else:
        start = f"SIP/2.0 {msg.status} {msg.reason}"
    lines = [start]
    length = f"Content-Length: {len(msg.body)}"
    wrote_length = False
    for n, v in msg.headers._items:
        if n == "Content-Length":
            if not wrote_length:
                lines.append(length)
                wrote_length = True
            continue
        lines.append(f"{n}: {v}")
    if not wrote_length:
        lines.append(length)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8") + msg.body


REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def default_reason(status: int) -> str:
    """Reason phrase for ``status``; unknown codes get their class's generic phrase."""
    phrase = REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}.get(
        status // 100, "Global Failure"
    )


def _with_to_tag(to_value: str, tag: str) -> str:
    try:
        if parse_name_addr(to_value).tag is not None:
            return to_value  # already in a dialog: keep the existing tag (§8.2.6.2)
    except SipParseError:
        pass
    return f"{to_value};tag={tag}"


def make_response(
    req: Request, status: int, reason: str | None = None, to_tag: str | None = None
) -> Response:
    """Build a response per RFC 3261 §8.2.6.2: Via (all, in order), From, To (tag added when
    given and absent), Call-ID and CSeq copied; Timestamp copied into a 100 (§8.2.6.1)."""
    items: list[tuple[str, str]] = []
    src = req.headers._items
    for n, v in src:
        if n == "Via":
            items.append((n, v))
    for name in ("From", "To", "Call-ID", "CSeq"):
        for n, v in src:
            if n == name:
                if name == "To" and to_tag is not None:
                    v = _with_to_tag(v, to_tag)
                items.append((n, v))
                break
    if status == 100:
        for n, v in src:
            if n == "Timestamp":
                items.append((n, v))
                break
    return Response(
        status=status,
        reason=reason if reason is not None else default_reason(status),
        headers=Headers._from_canonical(items),
    )


def new_branch() -> str:
    """A transaction branch with the RFC 3261 §8.1.1.7 magic cookie."""
    return "z9hG4bK" + secrets.token_hex(10)


def new_tag() -> str:
    """A From/To tag with at least 32 bits of randomness (RFC 3261 §19.3)."""
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    """A globally unique Call-ID (RFC 3261 §8.1.1.4)."""
    return f"{secrets.token_hex(12)}@{host}"
