"""SIP URIs, name-addr values and Via values (RFC 3261 §19.1, §20.10, §20.42, §25.1).

Sans-IO and allocation-light: these parsers run on the signalling hot path (every request needs
its top Via and the From/To tags), so they use str.partition/find rather than regular
expressions. ``SipParseError`` lives here because this is the lowest module of the message
layer; ``mediasrv.sip.parser`` re-exports it as the public name.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mediasrv.sip.message import Request

__all__ = [
    "NameAddr",
    "SipParseError",
    "SipUri",
    "Via",
    "first_list_element",
    "is_token",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "split_list",
    "split_params",
    "unquote",
]


class SipParseError(ValueError):
    """Malformed SIP input. ``reason`` is short enough for a 400 reason phrase or Warning.

    ``partial`` is set by the message parser when the request's start line and the headers a
    400 response needs (Via, From, To, Call-ID, CSeq) were readable (RFC 3261 §8.2.6 / §21.4.1).
    """

    def __init__(self, reason: str, partial: Request | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.status = status  # what a response to ``partial`` says: 400, or 505


_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_SCHEMES = frozenset(("sip", "sips", "tel"))
_BAD_HOST_CHARS = frozenset(' \t"<>@[],;?')
_BAD_URI_CHARS = frozenset(' \t"<>\\{}|^`\r\n')
# RFC 3966 §3: phonedigit-hex, visual separators, "+" of a global number
_TEL_CHARS = frozenset("0123456789abcdefABCDEF*#+-.()")
_DEFAULT_PORTS = {"sip": 5060, "sips": 5061, "tel": 5060}


def is_token(name: str) -> bool:
    """RFC 3261 §25.1 token (header names, methods and parameter names are tokens)."""
    return bool(name) and _TOKEN_CHARS.issuperset(name)


# Every scanner below is linear in its input (issue 8): a regular expression whose
# alternatives start with different characters, with possessive quantifiers (Python 3.11),
# so the engine never backtracks; Python code runs once per element, never per character.
_QUOTED = r'"(?:[^"\\]++|\\.)*+"'  # quoted-string with quoted-pairs (RFC 3261 §25.1)
_QUOTED_STRING = re.compile(_QUOTED, re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
# one comma-list element: separators skipped, then text, quoted strings and <...> (a comma
# inside either does not split); an unterminated quote or < runs to the end
_LIST_ITEM = re.compile(r'[\s,]*+((?:[^",<]++|"(?:[^"\\]++|\\.)*+"?|<[^>]*+>?)*+)', re.S)
# one ";" parameter, quoted strings kept whole; an unterminated quote is an error
_PARAM = re.compile(r'(?:[^";]++|' + _QUOTED + r")*+", re.S)
MAX_PARAMS = 256  # ";" per header value or URI: far above any real one, cheap to refuse


def split_list(value: str) -> list[str]:
    """Split a comma list, not inside quoted strings or <...> (RFC 3261 §7.3.1)."""
    if "," not in value:
        return [value]
    if '"' not in value and "<" not in value:
        return [v.strip() for v in value.split(",") if v.strip()]
    return [item for m in _LIST_ITEM.finditer(value) if (item := m.group(1).strip())]


def first_list_element(value: str) -> str:
    """The first element of a comma list ("" if none), scanning no further than it."""
    if "," not in value:
        return value
    match = _LIST_ITEM.match(value)
    return match.group(1).strip() if match else ""


def split_params(text: str) -> dict[str, str | None]:
    """Split ``a=b;c;d="x;y"`` into a dict with lower-cased keys.

    Semicolons inside quoted strings do not split (generic-param values may be quoted-strings,
    RFC 3261 §25.1 gen-value). A parameter without ``=`` maps to None. More than
    ``MAX_PARAMS`` parameters is an error (bounded work per header).
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    if text.count(";") > MAX_PARAMS:
        raise SipParseError("too many parameters")
    parts = text.split(";") if '"' not in text else _split_quoted(text)
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            continue  # tolerate ";;" and a trailing ";"
        if not is_token(name):
            raise SipParseError("bad parameter name")
        params[name] = value.strip() if eq else None
    return params


def _split_quoted(text: str) -> list[str]:
    """Split on ";" outside quoted strings (with backslash quoted-pairs)."""
    out: list[str] = []
    pos = 0
    n = len(text)
    while True:
        match = _PARAM.match(text, pos)
        end = match.end() if match else pos
        out.append(text[pos:end])
        if end >= n:
            return out
        if text[end] != ";":
            raise SipParseError("unterminated quoted string")
        pos = end + 1


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _parse_port(text: str) -> int:
    # isascii() first: str.isdigit() accepts non-ASCII digits that int() would also accept
    # ("١٢"), which are not SIP.
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise SipParseError("bad port")
    port = int(text)
    if port > 65535:
        raise SipParseError("bad port")
    return port


def _split_host_port(text: str) -> tuple[str, int | None]:
    """hostport = host [ ":" port ]; an IPv6 reference keeps its brackets (RFC 3261 §25.1)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("bad IPv6 reference")
        host = text[: end + 1]
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError("bad host")
        return host, _parse_port(rest[1:])
    host, colon, port = text.partition(":")
    if not host or not _BAD_HOST_CHARS.isdisjoint(host):
        raise SipParseError("bad host")
    return host, (_parse_port(port) if colon else None)


@dataclass(slots=True)
class SipUri:
    """A sip:, sips: or tel: URI (RFC 3261 §19.1.1, RFC 3966).

    ``params`` keys are lower-cased; values are kept as written. Values the RFC makes
    case-insensitive (transport, user, method, maddr, ttl, lr) are compared through the
    lower-casing accessors (RFC 3261 §19.1.4), e.g. SIPp's ``transport=UDP``.
    For tel: URIs the number is in ``user`` and ``host`` is empty.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{_format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(out)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """Loose-routing flag of a Route/Record-Route URI (RFC 3261 §19.1.1)."""
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        value = self.params.get("maddr")
        return value.lower() if value else None

    def equivalent(self, other: SipUri) -> bool:
        """URI comparison of RFC 3261 §19.1.4 (not string equality).

        Scheme and host compare case-insensitively, the user part case-sensitively, escapes
        are decoded first; an absent port differs from an explicit 5060; user, ttl, method,
        maddr and transport must match when either side has them, other parameters only
        when both do (values case-insensitive); URI headers must all match.
        """
        if self.scheme != other.scheme or self.host != other.host or self.port != other.port:
            return False
        if _unescape(self.user) != _unescape(other.user):
            return False
        if _unescape(self.password) != _unescape(other.password):
            return False
        mine, theirs = _norm_params(self.params), _norm_params(other.params)
        for key in mine.keys() | theirs.keys():
            if key in _MUST_MATCH_PARAMS or (key in mine and key in theirs):
                if mine.get(key, _ABSENT) != theirs.get(key, _ABSENT):
                    return False
        return _norm_headers(self.headers) == _norm_headers(other.headers)

    def host_port(self) -> tuple[str, int]:
        """Host without IPv6 brackets and the port, defaulting per scheme (RFC 3261 §19.1.2)."""
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else _DEFAULT_PORTS[self.scheme]


_MUST_MATCH_PARAMS = frozenset(("user", "ttl", "method", "maddr", "transport"))
_ABSENT = "\x00absent"


def _unescape(value: str | None) -> str | None:
    return None if value is None else urllib.parse.unquote(value)


def _norm_params(params: dict[str, str | None]) -> dict[str, str | None]:
    return {k: None if v is None else urllib.parse.unquote(v).lower() for k, v in params.items()}


def _norm_headers(headers: dict[str, str]) -> dict[str, str]:
    return {urllib.parse.unquote(k).lower(): urllib.parse.unquote(v) for k, v in headers.items()}


def parse_uri(text: str) -> SipUri:
    """Parse a sip:/sips:/tel: URI; raises SipParseError."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in _SCHEMES:
        raise SipParseError("unsupported URI scheme")
    if not _BAD_URI_CHARS.isdisjoint(rest):
        # none of these may appear unescaped anywhere in a SIP URI (RFC 3261 §25.1)
        raise SipParseError("bad character in URI")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number or not _TEL_CHARS.issuperset(number):
            raise SipParseError("bad tel URI number")
        return SipUri(scheme="tel", user=number, params=split_params(params))
    user: str | None = None
    password: str | None = None
    # userinfo ends at the first "@": "@" is not allowed unescaped in user, password, params
    # or headers (RFC 3261 §25.1), while ";" and "?" are allowed in the user part.
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        if pcolon:
            password = pw
    rest, qmark, hdr_text = rest.partition("?")
    hostport, _, param_text = rest.partition(";")
    host, port = _split_host_port(hostport)
    headers: dict[str, str] = {}
    if qmark:
        if hdr_text.count("&") > MAX_PARAMS:
            raise SipParseError("too many URI headers")
        for item in hdr_text.split("&"):
            if item:
                k, _, v = item.partition("=")
                headers[k] = v
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host.lower(),
        port=port,
        params=split_params(param_text),
        headers=headers,
    )


@dataclass(slots=True)
class NameAddr:
    """From/To/Contact/Route/Record-Route value (RFC 3261 §20.10, §25.1 name-addr / addr-spec).

    A Contact of ``*`` (RFC 3261 §10.2.2) parses to ``wildcard=True`` with an empty URI.
    """

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def display_name(self) -> str | None:
        """The display name as text: quotes and quoted-pair escapes removed (caller-ID display)."""
        if self.display is None:
            return None
        if len(self.display) >= 2 and self.display[0] == '"' and self.display[-1] == '"':
            return unquote(self.display)
        return self.display

    @property
    def expires(self) -> int | None:
        value = self.params.get("expires")
        if value is None or not (value.isascii() and value.isdigit()):
            return None
        return int(value)

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        display = f"{self.display} " if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def unquote(value: str) -> str:
    """Text of a quoted-string: surrounding quotes and backslash quoted-pairs removed (§25.1)."""
    inner = value[1:-1]
    if "\\" not in inner:
        return inner
    if "\x00" in inner:  # never in a parsed header (NUL is refused); the general way then
        return _QUOTED_PAIR.sub(r"\1", inner)
    # C-level replaces, left to right as a scanner would: an escaped backslash first, then
    # every other backslash drops and keeps the character after it; a lone final one stays
    text = inner.replace("\\\\", "\x00")
    tail = "\\" if text.endswith("\\") else ""
    return text[: len(text) - len(tail)].replace("\\", "").replace("\x00", "\\") + tail


def quoted_end(text: str, start: int) -> int:
    """Index of the closing quote of the quoted-string opening at ``start``."""
    match = _QUOTED_STRING.match(text, start)
    if match is None:
        raise SipParseError("unterminated quoted string")
    return match.end() - 1


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``"Bob" <sip:bob@h>;tag=1``, ``<sip:h>``, ``sip:bob@h;tag=1`` or ``*``."""
    text = text.strip()
    if text == "*":
        return NameAddr(uri=SipUri(scheme="", host=""), wildcard=True)
    display: str | None = None
    if text.startswith('"'):
        qend = quoted_end(text, 0)
        display = text[: qend + 1]
        lt = text.find("<", qend)
        if lt < 0:
            raise SipParseError("name-addr without <uri>")
    else:
        lt = text.find("<")
        if lt > 0:
            display = text[:lt].strip() or None
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <uri>")
        uri = parse_uri(text[lt + 1 : gt])
        tail = text[gt + 1 :].strip()
        if tail and tail[0] != ";":
            raise SipParseError("junk after <uri>")
        return NameAddr(uri=uri, display=display, params=split_params(tail[1:]))
    # addr-spec without <>: every ";" parameter belongs to the header, not the URI (§20.10).
    uri_text, _, tail = text.partition(";")
    return NameAddr(uri=parse_uri(uri_text), params=split_params(tail))


@dataclass(slots=True)
class Via:
    """One via-parm (RFC 3261 §20.42). Host is kept as written because it is echoed back."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """None when absent, "" for a bare ``;rport`` request (RFC 3581 §3)."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_format_params(self.params)}"


def parse_via(text: str) -> Via:
    """Parse one via-parm, e.g. ``SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport``."""
    head, _, param_text = text.partition(";")
    parts = head.split(None, 7)  # "SIP / 2.0 / UDP host : port" has 7 pieces at most
    if len(parts) > 7:
        raise SipParseError("bad Via")
    if len(parts) == 2 and parts[0].count("/") == 2:
        proto, sent_by = parts
    else:
        # LWS is allowed around each "/" of sent-protocol and the ":" of sent-by
        # (RFC 3261 §25.1: SLASH = SWS "/" SWS, COLON = SWS ":" SWS).
        compact = " ".join(parts)
        for sep in ("/", ":"):
            compact = compact.replace(f" {sep}", sep).replace(f"{sep} ", sep)
        pieces = compact.split()
        if len(pieces) != 2 or pieces[0].count("/") != 2:
            raise SipParseError("bad Via")
        proto, sent_by = pieces
    name, version, transport = proto.split("/")
    if not name or not version or not transport:
        raise SipParseError("bad Via protocol")
    host, port = _split_host_port(sent_by)
    return Via(
        transport=transport.upper(),
        host=host,
        port=port,
        params=split_params(param_text),
        protocol=f"{name.upper()}/{version}",
    )
