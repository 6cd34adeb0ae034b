"""SDP (RFC 4566) parse/serialize and offer/answer (RFC 3264) for one audio stream.

Only what a G.711 call-tracking server needs: an audio m-line with PCMU, PCMA and
telephone-event (RFC 4733), directions, hold in both the RFC 3264 (a=sendonly/inactive) and
the RFC 2543 (c=0.0.0.0) forms, ptime, rejected streams. Every parse failure raises
:class:`~mediasrv.media.api.SdpError`; no other exception escapes on any input bytes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mediasrv.media.api import Direction, NoCommonCodec, SdpError
from mediasrv.media.codec import Codec

MAX_SDP_BYTES = 65536  # a real offer is < 2 KB; refuse absurd bodies early
MAX_SDP_LINES = 512  # a real offer has < 50; bounds the per-line work (issue 8)
TELEPHONE_EVENT = "telephone-event"
DEFAULT_TE_PT = 101
DEFAULT_PTIME = 20
_DIRECTIONS = {d.value: d for d in Direction}
_HOLD_ADDRESSES = ("0.0.0.0", "::")


@dataclass(slots=True)
class Origin:
    """The o= line (RFC 4566 §5.2)."""

    username: str
    sess_id: int
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    """The c= line (RFC 4566 §5.7); ``address`` without TTL/count suffixes."""

    nettype: str
    addrtype: str
    address: str

    @property
    def is_hold(self) -> bool:
        """RFC 2543 hold: a null connection address (RFC 3264 §8.4 says accept it)."""
        return self.address in _HOLD_ADDRESSES

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @classmethod
    def for_host(cls, host: str) -> Connection:
        return cls("IN", "IP6" if ":" in host else "IP4", host)


@dataclass(slots=True)
class RtpMap:
    """a=rtpmap (RFC 4566 §6)."""

    pt: int
    encoding: str
    clock: int
    channels: int | None = None

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.pt} {self.encoding}/{self.clock}{tail}"


# The static payload types of RFC 3551 §6 that may appear without an rtpmap.
_STATIC = {0: RtpMap(0, "PCMU", 8000), 8: RtpMap(8, "PCMA", 8000)}


@dataclass(slots=True)
class MediaDescription:
    """One m= section (RFC 4566 §5.14) with the attributes we understand broken out."""

    media: str
    port: int
    proto: str
    fmts: list[str]
    connection: Connection | None = None
    rtpmaps: dict[int, RtpMap] = field(default_factory=dict)
    fmtps: dict[int, str] = field(default_factory=dict)
    direction: Direction | None = None
    ptime: int | None = None
    rtcp_port: int | None = None
    other: list[str] = field(default_factory=list)  # other a= values, kept verbatim

    def rtpmap(self, pt: int) -> RtpMap | None:
        return self.rtpmaps.get(pt) or _STATIC.get(pt)

    def payload_types(self) -> list[int]:
        """The numeric formats in the offerer's preference order (RFC 3264 §5.1)."""
        return [int(f) for f in self.fmts if _small_int(f) and int(f) < 128]


@dataclass(slots=True)
class SessionDescription:
    version: int
    origin: Origin
    name: str
    connection: Connection | None
    direction: Direction | None = None  # session-level default (RFC 3264 §5.1)
    media: list[MediaDescription] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # session-level lines other than v/o/s/c/t/a-dir

    def to_bytes(self) -> bytes:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.name or '-'}"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.append("t=0 0")
        lines.extend(self.other)
        if self.direction is not None:
            lines.append(f"a={self.direction.value}")
        for m in self.media:
            lines.extend(_media_lines(m))
        return ("\r\n".join(lines) + "\r\n").encode()

    def audio(self) -> tuple[int, MediaDescription] | None:
        """The first audio stream we can use (RTP/AVP or RTP/SAVP-less), with its index."""
        for i, m in enumerate(self.media):
            if m.media == "audio" and m.port != 0 and m.proto.upper() == "RTP/AVP":
                return i, m
        return None

    def connection_of(self, m: MediaDescription) -> Connection | None:
        return m.connection or self.connection

    def direction_of(self, m: MediaDescription) -> Direction:
        return m.direction or self.direction or Direction.SENDRECV


def _media_lines(m: MediaDescription) -> list[str]:
    lines = [f"m={m.media} {m.port} {m.proto} {' '.join(m.fmts)}"]
    if m.connection is not None:
        lines.append(f"c={m.connection}")
    for pt in m.payload_types():
        rm = m.rtpmaps.get(pt)
        if rm is not None:
            lines.append(f"a=rtpmap:{rm}")
        fmtp = m.fmtps.get(pt)
        if fmtp is not None:
            lines.append(f"a=fmtp:{pt} {fmtp}")
    if m.ptime is not None:
        lines.append(f"a=ptime:{m.ptime}")
    lines.extend(f"a={a}" for a in m.other)
    if m.direction is not None:
        lines.append(f"a={m.direction.value}")
    return lines


# --------------------------------------------------------------------------------------------
# Parsing


def parse(data: bytes) -> SessionDescription:
    """Parse an SDP body. Raises :class:`SdpError` with the offending line on bad input."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SdpError("SDP body must be bytes")
    if len(data) > MAX_SDP_BYTES:
        raise SdpError(f"SDP body too large ({len(data)} bytes)")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError(f"SDP is not UTF-8 (byte {exc.start})") from None
    if text.count("\n") > MAX_SDP_LINES:
        raise SdpError(f"SDP has more than {MAX_SDP_LINES} lines")
    return _Parser(text).run()


class _Parser:
    __slots__ = ("lines", "media", "session")

    def __init__(self, text: str) -> None:
        # RFC 4566 §5 says CRLF, but also asks parsers to accept a bare LF.
        self.lines = [ln.rstrip("\r") for ln in text.split("\n")]
        self.session: SessionDescription | None = None
        self.media: MediaDescription | None = None

    def run(self) -> SessionDescription:
        version: int | None = None
        origin: Origin | None = None
        name = ""
        conn: Connection | None = None
        session_lines: list[tuple[int, str, str]] = []
        for no, line in enumerate(self.lines, 1):
            if not line.strip():
                continue
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpError(f"SDP line {no}: not 'x=value': {line[:60]!r}")
            kind, value = line[0], line[2:]
            if self.session is None:
                if kind == "v":
                    version = _int(value, no, "v=")
                    if version != 0:
                        raise SdpError(f"SDP line {no}: unsupported version v={value}")
                elif kind == "o":
                    origin = _origin(value, no)
                elif kind == "s":
                    name = value
                elif kind == "c":
                    conn = _connection(value, no)
                elif kind == "m":
                    self._start_session(version, origin, name, conn, session_lines)
                    self._add_media(value, no)
                else:
                    session_lines.append((no, kind, value))
            elif kind == "m":
                self._add_media(value, no)
            else:
                self._media_line(kind, value, no)
        if self.session is None:
            self._start_session(version, origin, name, conn, session_lines)
        assert self.session is not None
        return self.session

    def _start_session(
        self,
        version: int | None,
        origin: Origin | None,
        name: str,
        conn: Connection | None,
        lines: list[tuple[int, str, str]],
    ) -> None:
        if version is None:
            raise SdpError("SDP has no v= line")
        if origin is None:
            raise SdpError("SDP has no o= line")
        sd = SessionDescription(version, origin, name, conn)
        for no, kind, value in lines:
            if kind == "a":
                d = _DIRECTIONS.get(value.strip().lower())
                if d is not None:
                    sd.direction = d
                    continue
            elif kind == "t":
                _timing(value, no)
                continue
            sd.other.append(f"{kind}={value}")
        self.session = sd

    def _add_media(self, value: str, no: int) -> None:
        parts = value.split()
        if len(parts) < 4:
            raise SdpError(f"SDP line {no}: m= needs media, port, proto and formats")
        port_s = parts[1].split("/", 1)[0]  # "port/count" (RFC 4566 §5.14)
        port = _int(port_s, no, "m= port")
        if not 0 <= port <= 65535:
            raise SdpError(f"SDP line {no}: m= port {port} out of range")
        self.media = MediaDescription(parts[0].lower(), port, parts[2], parts[3:])
        assert self.session is not None
        self.session.media.append(self.media)

    def _media_line(self, kind: str, value: str, no: int) -> None:
        m = self.media
        assert m is not None
        if kind == "c":
            m.connection = _connection(value, no)
        elif kind == "a":
            self._media_attribute(m, value, no)
        # b=, i=, k= lines of a media section are not needed for G.711 relay.

    def _media_attribute(self, m: MediaDescription, value: str, no: int) -> None:
        name, _, arg = value.partition(":")
        lname = name.strip().lower()
        d = _DIRECTIONS.get(lname)
        if d is not None and not arg:
            m.direction = d
        elif lname == "rtpmap":
            rm = _rtpmap(arg, no)
            m.rtpmaps[rm.pt] = rm
        elif lname == "fmtp":
            pt_s, _, params = arg.partition(" ")
            m.fmtps[_int(pt_s, no, "fmtp payload type")] = params.strip()
        elif lname == "ptime":
            ptime = _int(arg.strip().split(".", 1)[0], no, "ptime")
            if not 1 <= ptime <= 1000:
                raise SdpError(f"SDP line {no}: ptime {ptime} out of range")
            m.ptime = ptime
        elif lname == "rtcp":
            port = _int(arg.split()[0] if arg.split() else "", no, "rtcp port")
            m.rtcp_port = port if 0 < port <= 65535 else None
        else:
            m.other.append(value)


def _small_int(v: str) -> bool:
    return v.isascii() and v.isdigit() and len(v) <= 20


def _int(value: str, no: int, what: str) -> int:
    v = value.strip()
    if not v.isdigit() or not v.isascii() or len(v) > 20:
        raise SdpError(f"SDP line {no}: {what} is not a number: {value[:40]!r}")
    return int(v)


def _origin(value: str, no: int) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError(f"SDP line {no}: o= needs 6 fields, got {len(parts)}")
    return Origin(
        parts[0],
        _int(parts[1], no, "o= sess-id"),
        _int(parts[2], no, "o= sess-version"),
        parts[3],
        parts[4],
        parts[5],
    )


def _connection(value: str, no: int) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"SDP line {no}: c= needs 3 fields, got {len(parts)}")
    nettype, addrtype, addr = parts
    addr = addr.split("/", 1)[0]  # multicast TTL/count suffix
    if nettype.upper() != "IN" or addrtype.upper() not in ("IP4", "IP6"):
        raise SdpError(f"SDP line {no}: unsupported c= {nettype} {addrtype}")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise SdpError(f"SDP line {no}: c= address {addr[:60]!r} is not an IP address") from None
    if (ip.version == 6) != (addrtype.upper() == "IP6"):
        raise SdpError(f"SDP line {no}: c= {addrtype} does not match address {addr}")
    return Connection(nettype.upper(), addrtype.upper(), str(ip) if ip.version == 6 else addr)


def _rtpmap(arg: str, no: int) -> RtpMap:
    pt_s, _, enc = arg.strip().partition(" ")
    pt = _int(pt_s, no, "rtpmap payload type")
    bits = enc.strip().split("/")
    if len(bits) < 2 or not bits[0]:
        raise SdpError(f"SDP line {no}: rtpmap needs encoding/clock: {arg[:60]!r}")
    clock = _int(bits[1], no, "rtpmap clock rate")
    channels = _int(bits[2], no, "rtpmap channels") if len(bits) > 2 and bits[2] else None
    if pt > 127:
        raise SdpError(f"SDP line {no}: payload type {pt} out of range")
    return RtpMap(pt, bits[0], clock, channels)


def _timing(value: str, no: int) -> None:
    parts = value.split()
    if len(parts) != 2:
        raise SdpError(f"SDP line {no}: t= needs start and stop")
    _int(parts[0], no, "t= start")
    _int(parts[1], no, "t= stop")


# --------------------------------------------------------------------------------------------
# Offer / answer (RFC 3264)


def complement(d: Direction) -> Direction:
    """The answer's direction for an offered direction (RFC 3264 §6.1)."""
    return {
        Direction.SENDONLY: Direction.RECVONLY,
        Direction.RECVONLY: Direction.SENDONLY,
    }.get(d, d)


def intersect(a: Direction, b: Direction) -> Direction:
    """The direction that allows only what both ``a`` and ``b`` allow."""
    send = _sends(a) and _sends(b)
    recv = _receives(a) and _receives(b)
    return _direction(send, recv)


def _sends(d: Direction) -> bool:
    return d in (Direction.SENDRECV, Direction.SENDONLY)


def _receives(d: Direction) -> bool:
    return d in (Direction.SENDRECV, Direction.RECVONLY)


def _direction(send: bool, recv: bool) -> Direction:
    if send and recv:
        return Direction.SENDRECV
    if send:
        return Direction.SENDONLY
    if recv:
        return Direction.RECVONLY
    return Direction.INACTIVE


@dataclass(slots=True)
class Negotiated:
    """The outcome of one offer/answer for a leg, seen from our side."""

    codec: Codec  # what we send, and what the peer should send
    pt: int  # payload type of ``codec`` on this leg
    te_pt: int | None  # telephone-event payload type, None if the peer has none
    remote: tuple[str, int] | None  # where the peer wants RTP, None on hold / rejected
    direction: Direction  # OUR direction on this leg (sendonly = we send, peer does not)
    ptime: int
    rx_pts: dict[int, Codec] = field(default_factory=dict)  # audio PTs we accept from the peer


class OriginState:
    """Our o= line for one leg; the version increments when the SDP changes (RFC 3264 §8)."""

    __slots__ = ("host", "last_body", "sess_id", "version")

    def __init__(self, sess_id: int, host: str) -> None:
        self.sess_id = sess_id
        self.version = sess_id
        self.host = host
        self.last_body: bytes | None = None

    def stamp(self, sd: SessionDescription) -> bytes:
        """Serialize ``sd`` with our origin; bump the version if the content changed."""
        sd.origin = Origin("mediasrv", self.sess_id, 0, "IN", _addrtype(self.host), self.host)
        body = sd.to_bytes()
        if self.last_body is not None and body != self.last_body:
            self.version += 1
        self.last_body = body
        sd.origin.sess_version = self.version
        return sd.to_bytes()


def _addrtype(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


def build_offer(
    host: str,
    port: int,
    codecs: Sequence[Codec] = (Codec.PCMU, Codec.PCMA),
    te_pt: int | None = DEFAULT_TE_PT,
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
) -> SessionDescription:
    """Our offer: one audio stream with ``codecs`` in preference order plus telephone-event."""
    if not codecs:
        raise NoCommonCodec("no codec to offer")
    m = MediaDescription("audio", port, "RTP/AVP", [str(int(c)) for c in codecs])
    for c in codecs:
        m.rtpmaps[int(c)] = RtpMap(int(c), c.name, 8000)
    if te_pt is not None:
        m.fmts.append(str(te_pt))
        m.rtpmaps[te_pt] = RtpMap(te_pt, TELEPHONE_EVENT, 8000)
        m.fmtps[te_pt] = "0-16"
    m.ptime = ptime
    m.direction = direction
    origin = Origin("mediasrv", 0, 0, "IN", _addrtype(host), host)
    return SessionDescription(0, origin, "mediasrv", Connection.for_host(host), media=[m])


def offered_codecs(sd: SessionDescription) -> tuple[list[Codec], int | None]:
    """Codecs we support that ``sd`` lists for its audio stream, in its order; and its TE PT."""
    found = sd.audio()
    if found is None:
        return [], None
    _, m = found
    codecs: list[Codec] = []
    te_pt: int | None = None
    for pt in m.payload_types():
        c = _codec_of(m, pt)
        if c is not None and c not in codecs:
            codecs.append(c)
        elif te_pt is None and _is_te(m, pt):
            te_pt = pt
    return codecs, te_pt


def _codec_of(m: MediaDescription, pt: int) -> Codec | None:
    rm = m.rtpmap(pt)
    if rm is None or rm.clock != 8000 or rm.channels not in (None, 1):
        return None
    return Codec.by_name(rm.encoding)


def _is_te(m: MediaDescription, pt: int) -> bool:
    rm = m.rtpmap(pt)
    return rm is not None and rm.encoding.lower() == TELEPHONE_EVENT and rm.clock == 8000


def _remote(sd: SessionDescription, m: MediaDescription) -> tuple[str, int] | None:
    conn = sd.connection_of(m)
    if conn is None:
        raise SdpError("SDP audio stream has no c= line (RFC 4566 §5.7)")
    if conn.is_hold or m.port == 0:
        return None
    return conn.address, m.port


def offered_direction(sd: SessionDescription) -> Direction:
    """The direction the peer declared for its audio stream (c=0.0.0.0 counts as sendonly)."""
    found = sd.audio()
    return Direction.SENDRECV if found is None else _peer_direction(sd, found[1])


def _peer_direction(sd: SessionDescription, m: MediaDescription) -> Direction:
    """The peer's declared direction; a null c= address means it wants nothing sent to it."""
    d = sd.direction_of(m)
    conn = sd.connection_of(m)
    if conn is not None and conn.is_hold:
        d = intersect(d, Direction.SENDONLY)  # RFC 2543 hold: do not send to me
    return d


def answer_offer(
    offer: SessionDescription,
    host: str,
    port: int,
    supported: Sequence[Codec] = (Codec.PCMU, Codec.PCMA),
    prefer: Iterable[str] | None = None,
    want: Direction = Direction.SENDRECV,
) -> tuple[SessionDescription, Negotiated]:
    """Answer ``offer`` (RFC 3264 §6): one m= line per offered one, ours in the audio slot.

    The codec is the first of ``prefer`` that the offer has, else the first offered codec
    we support. The answer repeats the offer's telephone-event payload type.
    """
    found = offer.audio()
    if found is None:
        raise NoCommonCodec("the offer has no usable RTP/AVP audio stream")
    index, m = found
    codecs, te_pt = offered_codecs(offer)
    usable = [c for c in codecs if c in supported]
    chosen = _choose(usable, prefer)
    if chosen is None:
        offered = ", ".join(_describe(m, pt) for pt in m.payload_types()) or "none"
        raise NoCommonCodec(f"no common codec: offer has {offered}; we support PCMU, PCMA")
    pt = _pt_in(m, chosen)
    remote = _remote(offer, m)
    peer_dir = _peer_direction(offer, m)
    ours = intersect(complement(peer_dir), want)
    ptime = m.ptime or DEFAULT_PTIME
    answer_m = MediaDescription("audio", port, m.proto, [str(pt)])
    answer_m.rtpmaps[pt] = RtpMap(pt, chosen.name, 8000)
    if te_pt is not None:
        answer_m.fmts.append(str(te_pt))
        answer_m.rtpmaps[te_pt] = RtpMap(te_pt, TELEPHONE_EVENT, 8000)
        answer_m.fmtps[te_pt] = m.fmtps.get(te_pt, "0-16")
    answer_m.ptime = ptime
    answer_m.direction = ours
    media = [_rejected(x) for x in offer.media]
    media[index] = answer_m
    origin = Origin("mediasrv", 0, 0, "IN", _addrtype(host), host)
    sd = SessionDescription(0, origin, "mediasrv", Connection.for_host(host), media=media)
    neg = Negotiated(chosen, pt, te_pt, remote, ours, ptime, {pt: chosen})
    return sd, neg


def accept_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """Apply the peer's answer to our offer (RFC 3264 §7)."""
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m= lines, offer had {len(offer.media)} (RFC 3264 §6)"
        )
    found = offer.audio()
    assert found is not None, "our offers always carry an audio stream"
    index, om = found
    am = answer.media[index]
    if am.media != "audio":
        raise SdpError(f"answer m= line {index + 1} is {am.media!r}, offered audio")
    if am.port == 0:
        raise NoCommonCodec("the peer rejected the audio stream (port 0)")
    offered, _ = offered_codecs(offer)
    rx_pts: dict[int, Codec] = {}
    te_pt: int | None = None
    for pt in am.payload_types():
        c = _codec_of(am, pt)
        if c is not None and c in offered:
            rx_pts[pt] = c
        elif te_pt is None and _is_te(am, pt):
            te_pt = pt
    if not rx_pts:
        listed = ", ".join(_describe(am, pt) for pt in am.payload_types()) or "none"
        raise NoCommonCodec(f"the answer has no codec we offered (answer has {listed})")
    pt, codec = next(iter(rx_pts.items()))
    remote = _remote(answer, am)
    ours = intersect(complement(_peer_direction(answer, am)), om.direction or Direction.SENDRECV)
    ptime = am.ptime or om.ptime or DEFAULT_PTIME
    return Negotiated(codec, pt, te_pt, remote, ours, ptime, rx_pts)


def _choose(usable: list[Codec], prefer: Iterable[str] | None) -> Codec | None:
    for name in prefer or ():
        c = Codec.by_name(name)
        if c is not None and c in usable:
            return c
    return usable[0] if usable else None


def _pt_in(m: MediaDescription, codec: Codec) -> int:
    for pt in m.payload_types():
        if _codec_of(m, pt) is codec:
            return pt
    return int(codec)  # unreachable: codec came from m


def _describe(m: MediaDescription, pt: int) -> str:
    rm = m.rtpmap(pt)
    return f"{pt} {rm.encoding}/{rm.clock}" if rm else str(pt)


def _rejected(m: MediaDescription) -> MediaDescription:
    """An answer's m= line refusing a stream: port 0 (RFC 3264 §6)."""
    return MediaDescription(m.media, 0, m.proto, m.fmts[:1] or ["0"])
