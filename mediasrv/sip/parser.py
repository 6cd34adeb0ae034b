"""Sans-IO SIP message parser and TCP stream framer (RFC 3261 §7, §18.3).

``parse_message`` takes one whole message (a UDP datagram or a framed TCP message) and
returns a Request or Response, or raises SipParseError, and nothing else, for any input.
The hot path uses bytes/str find/partition/split only; structured header values are parsed
lazily by the message properties.
"""

from __future__ import annotations

import itertools
import re
from operator import methodcaller

from mediasrv.sip.message import (
    Headers,
    Request,
    Response,
    canonical_name,
    checked_name,
    is_token,
    parse_cseq,
)
from mediasrv.sip.uri import SipParseError, first_list_element, parse_via

__all__ = ["MAX_HEADERS", "MAX_MESSAGE", "SipParseError", "StreamFramer", "parse_message"]

MAX_MESSAGE = 256 * 1024  # far above any sane SIP message; larger input is rejected unread
MAX_HEADERS = 256  # header lines per message
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")  # RFC 3261 §8.1.1
_MANDATORY_SET = frozenset(_MANDATORY)
_SINGLE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards")  # one value each (§20)
_BAD_URI_CHARS = frozenset('<>"')
# A line end that does not start a continuation line: the end of a logical header line.
# It is anchored on the LF, so matching is linear in the input (issue 8: the former unfolding
# regex, [ \t]*\r?\n[ \t]+, retried its leading [ \t]* at every blank of a long run: 60 s
# for one 64 KB datagram).
_LOGICAL_END = re.compile(r"\n(?![ \t])")
_strip_lws = methodcaller("strip", " \t")
_SPLIT_LINES = MAX_HEADERS + 1  # start line + this many header lines; the rest stays whole
# a header line a response needs (Via, From, To, Call-ID, CSeq; long or compact name)
_NEEDED_LINE = re.compile(r"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:(.*)$", re.M | re.I)


def _find_header_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """(end of header block, start of body), or (-1, -1) when no empty line yet.

    The empty line is CRLF CRLF, but a bare LF line ending is tolerated, so LF LF and
    LF CRLF end the headers too; whichever occurs first wins.
    """
    crlf = data.find(b"\n\r\n", start)
    # a bare-LF blank line can only matter if it comes first: search before ``crlf`` only
    lf = data.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(data))
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    return -1, -1


BAD_VERSION = "unsupported SIP version"  # answered 505 (RFC 3261 §21.5.6, RFC 4475 §3.1.2.16)


def _parse_start_line(line: str) -> tuple[str, str, str, str | None]:
    """("request", method, uri, problem) or ("response", code, reason, None).

    A request line whose method and "SIP/x.y" can be read but whose Request-URI or version is
    bad is returned with the problem, so that a 400 (505) can still be sent (RFC 4475
    §3.1.2.7-9, §3.1.2.16); anything else raises.
    """
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != "SIP/2.0":
            raise SipParseError(BAD_VERSION)
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            raise SipParseError("bad status code")
        return "response", code, reason.strip(), None
    method, _, rest = line.partition(" ")
    uri, _, version = rest.rpartition(" ")
    if not is_token(method) or not uri:  # Method = token (§25.1)
        raise SipParseError("bad request line")
    if version.upper() != "SIP/2.0":
        if version[:4].upper() != "SIP/":
            raise SipParseError("bad request line")
        return "request", method, uri, BAD_VERSION
    # isprintable() is False for TAB and other controls; SP is allowed once on each side
    if (
        " " in uri
        or ":" not in uri
        or not uri.isprintable()
        or not _BAD_URI_CHARS.isdisjoint(uri)
    ):
        return "request", method, uri, "bad Request-URI"
    return "request", method, uri, None


def _split_lines(head: str) -> list[str] | None:
    """Split the header block on CRLF; None if it has bare LF or CR line ends (slow path).
    At most ``_SPLIT_LINES`` header lines are split off; the last item is then the unsplit
    rest (see ``_parse_header_lines``). Folded lines are found by the header loop."""
    lines = head.split("\r\n", _SPLIT_LINES)
    breaks = len(lines) - 1 if len(lines) <= _SPLIT_LINES else head.count("\r\n")
    if head.count("\n") == breaks and head.count("\r") == breaks:
        return lines
    return None


def _split_lines_lenient(head: str) -> list[str]:
    """Split the header block on CRLF or a tolerated bare LF (a bare CR is an error), then
    unfold: a line end followed by SP/HTAB, with the blanks around it, is one SP (§7.3.1,
    LWS in §25.1). Linear in the size of ``head``: only C-level splits and joins."""
    head = head.replace("\r\n", "\n")
    if "\r" in head:
        raise SipParseError("bare CR in headers")
    if "\n " not in head and "\n\t" not in head:
        return head.split("\n", _SPLIT_LINES)
    logical = _LOGICAL_END.split(head, _SPLIT_LINES)
    rest = logical.pop() if len(logical) > _SPLIT_LINES else None  # only searched, later
    lines = [_unfold(line) if "\n" in line else line for line in logical]
    if rest is not None:
        lines.append(rest)
    return lines


def _unfold(line: str) -> str:
    """One logical line with its continuation line ends (LF + SP/HTAB) -> one physical line."""
    pieces = line.split("\n")
    first = pieces[0].rstrip(" \t")
    return " ".join([first, *map(_strip_lws, pieces[1:])])


class _Folded(Exception):
    """Internal: the header block has folded lines; take the unfolding slow path."""


def _parse_header_lines(lines: list[str]) -> tuple[list[tuple[str, str]], str | None]:
    """Header lines -> canonical (name, value) list, plus the first problem seen (if any).

    Parsing continues past a bad line so that a 400 can still be formed (§21.4.1).
    Raises _Folded at a continuation line (the caller unfolds, ``_split_lines_lenient``, and
    starts again: at most one wasted pass). Past ``MAX_HEADERS`` lines the rest of the block
    is only searched for what a 400 needs.
    """
    items: list[tuple[str, str]] = []
    append = items.append
    problem: str | None = None
    rest = lines.pop() if len(lines) > MAX_HEADERS and "\n" in lines[-1] else ""
    for line in lines:
        name, colon, value = line.partition(":")
        canon = checked_name(name)
        if canon is None or not colon:
            if line[:1] in (" ", "\t"):
                raise _Folded
            if problem is None:
                problem = "header line without colon" if not colon else "bad header name"
            continue
        append((canon, value.strip()))
    if rest:
        items.extend(_needed_headers(rest))
        problem = "too many headers"
    if len(items) > MAX_HEADERS:
        problem = "too many headers"
    return items, problem


def _needed_headers(rest: str) -> list[tuple[str, str]]:
    """The headers a 400 response copies (§8.2.6.2), from an over-long header block's rest."""
    found = itertools.islice(_NEEDED_LINE.finditer(rest), MAX_HEADERS)
    return [(canonical_name(m.group(1)), m.group(2).strip()) for m in found]


def _parse_head(head: str, lines: list[str]) -> tuple[Request | Response, str | None]:
    """Start line and headers -> message (no body yet) and the first problem seen."""
    try:
        items, problem = _parse_header_lines(lines[1:])
    except _Folded:
        lines = _split_lines_lenient(head)
        items, problem = _parse_header_lines(lines[1:])  # unfolded: nothing left to raise
    kind, first, second, start_problem = _parse_start_line(lines[0].strip())
    problem = start_problem or problem
    headers = Headers._from_canonical(items)
    if kind == "request":
        return Request(first, second, headers), problem
    return Response(int(first), second, headers), problem


def _content_length(headers: Headers) -> int | None:
    values = headers.get_lines("Content-Length")
    if not values:
        return None
    first = values[0].strip()
    if any(v.strip() != first for v in values[1:]):
        raise SipParseError("conflicting Content-Length")
    if not (first.isascii() and first.isdigit()) or len(first) > 9:
        raise SipParseError("bad Content-Length")
    return int(first)


def _partial(msg: Request | Response) -> Request | None:
    """The request, if a 400 can reach its sender: it needs a usable top Via (§18.2.2); the
    From, To, Call-ID and CSeq it has are copied, the missing ones are not invented
    (RFC 4475 §3.3.1 expects a 400 to a request lacking From, To and Call-ID)."""
    if not isinstance(msg, Request):
        return None
    h = msg.headers
    try:
        top = h.get("Via") or ""
        parse_via(first_list_element(top))
    except SipParseError:
        return None
    return msg


def _check_mandatory(msg: Request | Response) -> str | None:
    h = msg.headers
    names = [n for n, _ in h._items]
    present = set(names)
    if not _MANDATORY_SET <= present:
        missing = next(n for n in _MANDATORY if n not in present)
        return f"missing {missing}"
    if len(names) != len(present):  # some header repeats: is it one that must not?
        twice = next((n for n in _SINGLE if names.count(n) > 1), None)
        if twice is not None:
            return f"more than one {twice}"  # RFC 4475 §3.3.8: 400
    try:
        _, method = parse_cseq(h.get("CSeq") or "")
    except SipParseError as exc:
        return exc.reason
    if isinstance(msg, Request) and method != msg.method:
        return "CSeq method does not match"
    try:
        msg.top_via  # noqa: B018  # validate now: every consumer needs it
    except SipParseError as exc:
        return exc.reason
    return None


def _decode(raw: bytes) -> tuple[str, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        # keep going with replacement characters only to offer a partial request for a 400
        return raw.decode("utf-8", "replace"), "non-UTF-8 header bytes"


def parse_message(data: bytes, max_size: int = MAX_MESSAGE) -> Request | Response:
    """Parse one whole SIP message; raise SipParseError on any defect.

    If Content-Length is absent the body is the rest of the datagram (§18.3); extra bytes
    after Content-Length are discarded (§18.3 UDP rule).
    """
    if len(data) > max_size:
        raise SipParseError("message too large")
    # CRLFs before the start line are ignored (§7.5) -- also keep-alives.
    start = 0
    n = len(data)
    while start < n and data[start] in (13, 10):
        start += 1
    if start == n:
        raise SipParseError("empty message")
    # Fast path: CRLF line ends throughout, so the headers end at the first CRLF CRLF.
    lines: list[str] | None = None
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        body_start = end + 4
        head, encoding_problem = _decode(data[start:end])
        lines = _split_lines(head)
    if lines is None:
        # Bare LF (or CR) line ends: the blank line may be LF LF, LF CRLF or CRLF CRLF.
        end, body_start = _find_header_end(data, start)
        if end < 0:
            if data[-1:] != b"\n":
                raise SipParseError("truncated message")
            end, body_start = n, n
        if end > start and data[end - 1] == 13:
            end -= 1  # the CR of the last header line's CRLF
        head, encoding_problem = _decode(data[start:end])
        lines = _split_lines_lenient(head)
    if "\x00" in head:
        # refused, but with a 400 where the rest can be read (RFC 4475 §3.1.1.2 quotes a
        # NUL in a display name: legal there, yet nothing we would store)
        encoding_problem = encoding_problem or "NUL in headers"
    try:
        msg, problem = _parse_head(head, lines)
    except SipParseError:
        if encoding_problem:
            raise SipParseError(encoding_problem) from None
        raise
    problem = encoding_problem or problem
    if problem is None:
        problem = _check_mandatory(msg)
    if problem is not None:
        raise SipParseError(problem, _partial(msg), 505 if problem == BAD_VERSION else 400)
    body = data[body_start:]
    try:
        length = _content_length(msg.headers)
    except SipParseError as exc:
        raise SipParseError(exc.reason, _partial(msg)) from None
    if length is not None:
        if length > len(body):
            raise SipParseError("Content-Length larger than body", _partial(msg))
        body = body[:length]
    msg.body = bytes(body)
    return msg


class StreamFramer:
    """Frames SIP messages on a TCP byte stream (RFC 3261 §18.3: Content-Length is mandatory
    on streams). Handles several messages in one segment and one message across segments,
    and ignores CRLF keep-alives between messages (RFC 5626 §3.5.1).

    ``pings`` counts double-CRLF keep-alive pings seen, so the transport can answer each with
    a single CRLF pong (RFC 5626 §4.4.1).
    """

    def __init__(self, max_message: int = 65535) -> None:
        self.max_message = max_message
        self.pings = 0
        self._buf = bytearray()
        self._scan_from = 0  # where the next header-end search starts (avoid rescans)
        self._pending: int | None = None  # total length of a message whose body is incomplete
        self._crlf_run = 0  # CR/LF bytes seen since the last message (keep-alive detection)

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete raw message now available."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while True:
            total = self._pending
            if total is None:
                self._skip_keepalives()
                if not buf:
                    break
                total = self._frame_length()
                if total is None:
                    break
            if len(buf) < total:
                self._pending = total  # header block known: wait for the body
                break
            self._pending = None
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._scan_from = 0
        return out

    def _frame_length(self) -> int | None:
        """Length of the message at the start of the buffer, None if its headers are incomplete."""
        buf = self._buf
        end, body_start = _find_header_end(buf, self._scan_from)
        if end < 0:
            if len(buf) > self.max_message:
                raise SipParseError("header block too large")
            # the empty-line pattern is at most 3 bytes: rescan only the tail next time
            self._scan_from = max(0, len(buf) - 3)
            return None
        if body_start > self.max_message:
            raise SipParseError("header block too large")
        return body_start + self._stream_content_length(bytes(buf[:end]))

    def _skip_keepalives(self) -> None:
        buf = self._buf
        i = 0
        n = len(buf)
        while i < n and buf[i] in (13, 10):
            i += 1
        if i:
            del buf[:i]
            self._scan_from = 0
            # RFC 5626 §3.5.1: a ping is CRLFCRLF, possibly split across segments
            self._crlf_run += i
            while self._crlf_run >= 4:
                self._crlf_run -= 4
                self.pings += 1
        if buf:
            self._crlf_run = 0  # a message starts here

    def _stream_content_length(self, head: bytes) -> int:
        value: bytes | None = None
        for line in head.split(b"\n"):
            name, colon, rest = line.partition(b":")
            if not colon:
                continue
            key = name.strip().lower()
            if key == b"content-length" or key == b"l":
                value = rest.strip()
                break
        if value is None:
            raise SipParseError("missing Content-Length on stream")
        if not value.isdigit() or len(value) > 9:
            raise SipParseError("bad Content-Length")
        length = int(value)
        if length > self.max_message:
            raise SipParseError("body too large")
        return length
