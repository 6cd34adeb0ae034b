"""Pure-Python reference packet path (see :mod:`mediasrv.media.packet_path`).

Each RTP socket is watched with ``loop.add_reader`` and drained with non-blocking
``recvfrom`` (a synchronous callback per readiness, as a Cython twin would do; it works the
same on uvloop and stock asyncio, and needs no coroutine to open a leg). Per datagram:
validate and parse the RTP header (RFC 3550 §5.1), latch the source (symmetric RTP,
RFC 4961) and lock it (see :meth:`PyPacketPath._latch`), update receiver statistics
(RFC 3550 A.1, A.3, A.8), feed the recorder, report
RFC 4733 digits once, and relay to the bridged leg with our own SSRC, continuous sequence
numbers and timestamps, mapped payload types and G.711 transcoding where the codecs differ.
Malformed packets are counted and dropped; nothing here raises on network input.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import random
import socket
import struct
from collections.abc import Sequence

from mediasrv.media import kernels
from mediasrv.media.api import Direction, LegStats, PlayEnd
from mediasrv.media.codec import Codec, transcoder
from mediasrv.media.packet_path import LegParams, PacketEvents, RecordSink

RTP_VERSION = 2
CLOCK = 8000  # G.711 and telephone-event clock rate (RFC 3551 §4.5.14, RFC 4733 §2.1)
MAX_DATAGRAM = 2048
BATCH = 64  # datagrams drained per readiness callback, so one busy leg cannot starve others
FRAME = 160  # samples per prompt frame (20 ms)
FRAME_S = FRAME / CLOCK
PACE_SLACK = 0.0002  # frames due this soon are sent in the same timer callback
MAX_CATCH_UP = 5  # frames sent at once after a stall; beyond that playout skips ahead
DTMF_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 events 0-15
_HEADER = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_SENDS = (Direction.SENDRECV, Direction.SENDONLY)
_RECEIVES = (Direction.SENDRECV, Direction.RECVONLY)


class _Leg:
    """Per-leg state. Slots keep it a few hundred bytes (memory target: 64 KB per call)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "channel",
        "dropped",
        "events",
        "first_ts",
        "foreign_dropped",
        "foreign_reported",
        "id",
        "inband",
        "last_out_time",
        "last_rx",
        "last_seq_out",
        "last_ts_out",
        "latched",
        "latched_at",
        "lost_before",
        "malformed",
        "packets_in",
        "packets_out",
        "params",
        "partner",
        "play_barge",
        "play_due",
        "play_id",
        "play_t0",
        "player",
        "recorder",
        "rx",
        "sdp_source",
        "seq_delta",
        "sock",
        "src_ssrc",
        "ssrc_in",
        "ssrc_out",
        "ts_delta",
    )

    def __init__(self, leg_id: int, sock: socket.socket, ssrc_out: int) -> None:
        self.id = leg_id
        self.sock = sock
        self.params: LegParams | None = None
        self.partner: _Leg | None = None
        self.latched: tuple[str, int] | None = None
        self.latched_at = 0.0  # loop time of the first latch (the learning window starts)
        self.sdp_source: tuple[str, int] | None = None  # routable SDP address, normalised
        self.recorder: RecordSink | None = None
        self.channel = 0
        # Playout (see PyPacketPath.play): frame k of the play is due at play_t0 + k * 20 ms.
        self.player: kernels.playout.Player | None = None
        self.play_id = 0
        self.play_barge = False
        self.play_t0 = self.play_due = 0.0
        self.last_rx = 0.0
        # Incoming stream: the same kernels as the Cython relay (RFC 3550 A.1, A.3, A.8
        # receiver statistics; RFC 4733 report-once), per source.
        self.ssrc_in: int | None = None
        self.first_ts: int | None = None
        self.rx = kernels.rtcp.ReceiverStats()
        self.lost_before = 0  # loss of earlier SSRCs of this leg
        self.events = kernels.rfc4733.TelephoneEventReceiver()
        self.inband: kernels.dtmf.DtmfDetector | None = None  # once configured
        # Outgoing stream: our SSRC and the offsets that map the source onto it.
        self.ssrc_out = ssrc_out
        self.src_ssrc: int | None = None  # source SSRC the deltas are valid for
        self.seq_delta = self.ts_delta = 0
        self.last_seq_out = random.getrandbits(16)
        self.last_ts_out = random.getrandbits(32)
        self.last_out_time: float | None = None
        self.packets_in = self.packets_out = self.bytes_in = self.bytes_out = 0
        self.malformed = self.dropped = 0
        self.foreign_dropped = 0  # valid RTP from a source other than the latched one
        self.foreign_reported = False  # on_foreign_source called since the leg latched

    def sends(self) -> bool:
        return self.params is not None and self.params.direction in _SENDS

    def receives(self) -> bool:
        return self.params is not None and self.params.direction in _RECEIVES

    def destination(self) -> tuple[str, int] | None:
        if self.params is None or self.params.remote is None:
            return None  # hold (c=0.0.0.0) or not negotiated: send nothing
        return self.latched or self.params.remote


class PyPacketPath:
    """The reference :class:`~mediasrv.media.packet_path.PacketPath`."""

    name = "python"

    def __init__(self, loop: asyncio.AbstractEventLoop, events: PacketEvents) -> None:
        self._loop = loop
        self._events = events
        self._legs: dict[int, _Leg] = {}
        self._playing: dict[int, _Leg] = {}
        self._pacer: asyncio.TimerHandle | None = None
        self._pacer_at = 0.0
        self._calls = 0  # Python calls of the per-packet work: one per datagram and frame
        self._closed = [0, 0]  # packets in/out of closed legs

    # ---- control --------------------------------------------------------------------------

    def open(self, leg: int, sock: socket.socket) -> None:
        state = _Leg(leg, sock, random.getrandbits(32))
        self._legs[leg] = state
        self._loop.add_reader(sock.fileno(), self._readable, state)

    def configure(self, leg: int, params: LegParams) -> None:
        state = self._legs[leg]
        old = state.params
        if old is not None and old.remote != params.remote:
            state.latched = None  # a re-INVITE moved the peer: latch again (RFC 4961 §4)
        state.params = params
        state.sdp_source = _routable(params.remote)
        if not params.inband_dtmf:
            state.inband = None
        elif state.inband is None:
            # Telephone-event or not, where the engine's InbandPolicy says (a gateway may send
            # a key both ways): the engine's digit stream (media/digits.py) merges them.
            state.inband = kernels.dtmf.DtmfDetector()

    def bridge(self, a: int, b: int) -> None:
        la, lb = self._legs[a], self._legs[b]
        for leg in (la, lb):
            if leg.partner is not None:
                leg.partner.partner = None
        la.partner, lb.partner = lb, la
        la.src_ssrc = lb.src_ssrc = None  # resync both outgoing streams

    def unbridge(self, leg: int) -> None:
        state = self._legs[leg]
        if state.partner is not None:
            state.partner.partner = None
            state.partner = None

    def set_recorder(self, leg: int, sink: RecordSink | None, channel: int) -> None:
        state = self._legs[leg]
        state.recorder = sink
        state.channel = channel

    # ---- playout (prompts paced by sample count; the reference of cext.relay's) ------------

    def prompt_frames(self, pcm: bytes) -> kernels.playout.PromptFrames:
        return kernels.playout.PromptFrames(pcm)

    def play(
        self,
        leg: int,
        playlist: Sequence[object],
        *,
        loop: bool,
        mix: bool,
        barge_in: bool,
        play_id: int,
    ) -> None:
        state = self._legs[leg]
        player = kernels.playout.Player(playlist, loop, mix)  # type: ignore[arg-type]
        self._stop_play(state)
        # On a 1 ms grid, as cext.relay does (there so that many plays share wake-ups).
        t0 = math.ceil(self._loop.time() * 1000.0) / 1000.0
        state.player, state.play_id, state.play_barge = player, play_id, barge_in
        state.play_t0 = state.play_due = t0
        self._playing[leg] = state
        self._schedule(t0)

    def stop_play(self, leg: int, play_id: int) -> bool:
        state = self._legs.get(leg)
        if state is None or state.player is None or state.play_id != play_id:
            return False
        self._stop_play(state)
        return True

    def python_calls(self) -> int:
        return self._calls

    def packet_totals(self) -> tuple[int, int]:
        rx, tx = self._closed
        for leg in self._legs.values():
            rx += leg.packets_in
            tx += leg.packets_out
        return rx, tx

    def _stop_play(self, leg: _Leg) -> None:
        if leg.player is not None:
            leg.player = None
            del self._playing[leg.id]
            leg.src_ssrc = None  # the relay resumes continuing our stream (RFC 3550 §5.1)
            if not self._playing and self._pacer is not None:
                self._pacer.cancel()
                self._pacer = None

    def _end_play(self, leg: _Leg, reason: PlayEnd) -> None:
        assert leg.player is not None
        index, play_id = leg.player.last_index, leg.play_id
        self._stop_play(leg)
        self._events.on_play_end(leg.id, play_id, reason, index)

    def _barge(self, leg: _Leg) -> None:
        if leg.player is not None and leg.play_barge:
            self._end_play(leg, PlayEnd.BARGED_IN)

    def _schedule(self, when: float) -> None:
        """One timer for the whole path, at the earliest due frame."""
        if self._pacer is not None:
            if self._pacer_at <= when:
                return
            self._pacer.cancel()
        self._pacer = self._loop.call_at(when, self._pace)
        self._pacer_at = when

    def _pace(self) -> None:
        self._pacer = None
        now = self._loop.time()
        nxt: float | None = None
        for leg in list(self._playing.values()):
            self._due_frames(leg, now)
            if leg.player is not None and (nxt is None or leg.play_due < nxt):
                nxt = leg.play_due
        if nxt is not None:
            self._schedule(nxt)

    def _due_frames(self, leg: _Leg, now: float) -> None:
        player = leg.player
        assert player is not None and leg.params is not None
        if leg.play_due > now + PACE_SLACK:
            return
        due = int((now - leg.play_t0) / FRAME_S) + 1  # frames due by now
        if due - player.sent > MAX_CATCH_UP:
            # The loop stalled: skip what is hopelessly late rather than burst it.
            leg.play_t0 += (due - player.sent - MAX_CATCH_UP) * FRAME_S
        while leg.play_due <= now + PACE_SLACK:
            self._calls += 1
            frame = player.next_frame(int(leg.params.codec))
            if frame is None:
                self._end_play(leg, PlayEnd.COMPLETED)  # the last frame has played out
                return
            self._send_own(leg, frame, player.sent == 1, now)
            leg.play_due = leg.play_t0 + player.sent * FRAME_S

    def _send_own(self, state: _Leg, payload: bytes, marker: bool, now: float) -> None:
        """One frame of a prompt on the leg's own outgoing stream: seq +1, ts +160; a marked
        first frame moves the timestamp on by the time elapsed (RFC 3550 §5.1)."""
        dest = state.destination()
        if dest is None or not state.sends():
            return
        assert state.params is not None
        step = len(payload)
        if marker and state.last_out_time is not None:
            step = max(step, round((now - state.last_out_time) * CLOCK))
        seq = (state.last_seq_out + 1) & 0xFFFF
        ts = (state.last_ts_out + step) & 0xFFFFFFFF
        first = 0x80 if marker else 0
        packet = _HEADER.pack(0x80, first | state.params.pt, seq, ts, state.ssrc_out) + payload
        state.last_seq_out, state.last_ts_out, state.last_out_time = seq, ts, now
        state.src_ssrc = None  # a relayed packet after ours must continue from here
        self._send(state, packet, dest)

    def last_rx(self, leg: int) -> float:
        return self._legs[leg].last_rx

    def last_rx_many(self, legs: Sequence[int]) -> list[float]:
        return [self._legs[leg].last_rx for leg in legs]

    def stats(self, leg: int) -> LegStats:
        s = self._legs[leg]
        lost = s.lost_before + max(0, s.rx.expected - s.rx.received)
        codec = s.params.codec.name if s.params is not None else ""
        remote = f"{s.latched[0]}:{s.latched[1]}" if s.latched else ""
        return LegStats(
            packets_in=s.packets_in,
            packets_out=s.packets_out,
            bytes_in=s.bytes_in,
            bytes_out=s.bytes_out,
            packets_lost=lost,
            jitter_ms=s.rx.jitter_q4 / 16.0 * 1000.0 / CLOCK,
            codec=codec,
            remote=remote,
            foreign_dropped=s.foreign_dropped,
        )

    def malformed(self, leg: int) -> int:
        return self._legs[leg].malformed

    def close(self, leg: int) -> None:
        if leg not in self._legs:
            return
        self.unbridge(leg)
        self._stop_play(self._legs[leg])
        state = self._legs.pop(leg)
        state.recorder = None
        self._closed[0] += state.packets_in
        self._closed[1] += state.packets_out
        self._loop.remove_reader(state.sock.fileno())

    # ---- per datagram ---------------------------------------------------------------------

    def _readable(self, leg: _Leg) -> None:
        sock = leg.sock
        for _ in range(BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP errors surfacing on the socket; nothing to read
            self._datagram(leg, data, addr[:2])

    def _datagram(self, leg: _Leg, data: bytes, addr: tuple[str, int]) -> None:
        self._calls += 1
        n = len(data)
        if n < 12 or data[0] >> 6 != RTP_VERSION:
            leg.malformed += 1
            return
        hlen = _header_length(data)
        if hlen < 0:
            leg.malformed += 1
            return
        second = data[1]
        pt = second & 0x7F
        seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        params = leg.params
        if params is None:
            leg.dropped += 1  # nothing negotiated yet: no latching either
            return
        now = self._loop.time()
        codec = params.rx_pts.get(pt)
        negotiated = codec is not None or pt == params.te_pt
        if not self._latch(leg, addr, ssrc, seq, ts, negotiated, now):
            leg.dropped += 1
            return
        leg.last_rx = now
        leg.packets_in += 1
        leg.bytes_in += n
        # RFC 3550 A.1 on every packet of the source; A.8 jitter on audio only (the packets of
        # one RFC 4733 event all carry the event's start timestamp).
        if codec is not None:
            leg.rx.update(seq, ts, int(now * CLOCK) & 0xFFFFFFFF)
        else:
            leg.rx.update_seq(seq)
        end = n - (data[-1] if data[0] & 0x20 else 0)
        if codec is not None:
            self._audio(leg, data, hlen, end, seq, ts, ssrc, codec, second & 0x80, now)
        elif pt == params.te_pt:
            self._event(leg, data, hlen, end, seq, ts, ssrc, now)
        else:
            leg.dropped += 1  # comfort noise or a PT we did not negotiate

    def _latch(
        self,
        leg: _Leg,
        addr: tuple[str, int],
        ssrc: int,
        seq: int,
        ts: int,
        negotiated: bool,
        now: float,
    ) -> bool:
        """Symmetric RTP (RFC 4961): latch once, then lock; False drops the packet.

        The first packet of a negotiated payload type latches the leg to its source. Then
        the leg is locked, as rtpengine's ``strict source`` (we do not follow its
        ``media handover``, which re-learns any new source and so lets a third host hijack
        the stream): packets from any other source are dropped and counted in
        ``foreign_dropped``. Re-latching is allowed only (a) to the SDP address (c=/m=) when
        it is routable, and then for good (rtpengine's ``heuristic`` learning also prefers
        the SDP address), and (b) within the leg's learning window (NAT,
        ``[media] latch_learning_ms``) after the first latch; rtpengine learns for 3 s
        after signalling by default, we lock on the first packet unless a window is set.
        :meth:`configure` with a new remote address (a re-INVITE) re-opens latching.
        """
        latched = leg.latched
        if addr == latched:
            if ssrc != leg.ssrc_in:
                self._new_source(leg, ssrc, seq, ts)  # the peer restarted its stream
            return True
        if latched is not None and not self._may_relatch(leg, addr, now):
            leg.foreign_dropped += 1
            if not leg.foreign_reported:
                leg.foreign_reported = True
                self._events.on_foreign_source(leg.id, addr)
            return False
        if not negotiated:
            return False  # an unknown payload type never claims the leg
        if latched is None:
            leg.latched_at = now
            leg.foreign_reported = False
        leg.latched = addr
        if ssrc != leg.ssrc_in:
            self._new_source(leg, ssrc, seq, ts)
        self._events.on_latched(leg.id, addr)
        return True

    @staticmethod
    def _may_relatch(leg: _Leg, addr: tuple[str, int], now: float) -> bool:
        sdp_source = leg.sdp_source
        if sdp_source is not None and leg.latched == sdp_source:
            return False  # latched to the address the peer itself advertised: final
        if addr == sdp_source:
            return True
        assert leg.params is not None
        return now - leg.latched_at < leg.params.latch_learning

    def _new_source(self, leg: _Leg, ssrc: int, seq: int, ts: int) -> None:
        if leg.ssrc_in is not None:
            leg.lost_before += max(0, leg.rx.expected - leg.rx.received)
        leg.ssrc_in = ssrc
        if leg.first_ts is None:
            leg.first_ts = ts
        leg.rx = kernels.rtcp.ReceiverStats()  # A.1 init_seq: probation again
        leg.events = kernels.rfc4733.TelephoneEventReceiver()
        partner = leg.partner
        if partner is not None:
            partner.src_ssrc = None  # continue partner's outgoing seq/ts across the change

    def _audio(
        self,
        leg: _Leg,
        data: bytes,
        hlen: int,
        end: int,
        seq: int,
        ts: int,
        ssrc: int,
        codec: Codec,
        marker: int,
        now: float,
    ) -> None:
        payload = data[hlen:end]
        if leg.inband is not None:
            self._inband(leg, codec, payload)
        if leg.recorder is not None:
            leg.recorder.feed(leg.channel, ssrc, ts, codec, payload, now)
        out = leg.partner
        if out is None or out.params is None or not leg.receives():
            return
        if out.player is not None:  # a prompt plays to ``out``: it replaces the relay, or mixes
            if out.player.mix:
                out.player.feed(payload, int(codec))
            return
        convert = transcoder(codec, out.params.codec)
        if convert is not None:
            payload = convert(payload)
        self._relay(out, out.params.pt, marker, seq, ts, ssrc, payload, now)

    def _event(
        self, leg: _Leg, data: bytes, hlen: int, end: int, seq: int, ts: int, ssrc: int, now: float
    ) -> None:
        if end - hlen < 4:
            leg.malformed += 1
            return
        # RFC 4733 §2.5.1.4: the end packet comes three times; report each event once.
        event = leg.events.feed(ts, data[hlen:end], bool(data[1] & 0x80))
        if event != kernels.rfc4733.NO_EVENT:
            self._report(leg, event, leg.events.start, leg.events.duration)
        out = leg.partner
        if out is None or out.params is None or out.params.te_pt is None or not leg.receives():
            return
        self._relay(out, out.params.te_pt, data[1] & 0x80, seq, ts, ssrc, data[hlen:end], now)

    def _inband(self, leg: _Leg, codec: Codec, payload: bytes) -> None:
        """Goertzel detection on the audio of a leg without telephone-event (ITU-T Q.24)."""
        assert leg.inband is not None
        if codec is Codec.PCMU:
            found = leg.inband.feed_ulaw(payload)
        else:
            found = leg.inband.feed_alaw(payload)
        for digit, start, duration in found:
            self._events.on_dtmf(leg.id, digit, start / CLOCK, duration / CLOCK, "inband")
        if found:
            self._barge(leg)

    def _report(self, leg: _Leg, event: int, ts: int, duration: int) -> None:
        if event >= len(DTMF_DIGITS):
            return  # flash (16) and other non-digit events are relayed, not reported
        first = leg.first_ts if leg.first_ts is not None else ts
        start = ((ts - first) & 0xFFFFFFFF) / CLOCK
        self._events.on_dtmf(leg.id, DTMF_DIGITS[event], start, duration / CLOCK)
        self._barge(leg)  # barge-in: the digit stops a play that allows it

    def _relay(
        self,
        out: _Leg,
        pt: int,
        marker: int,
        seq: int,
        ts: int,
        ssrc: int,
        payload: bytes,
        now: float,
    ) -> None:
        dest = out.destination()
        if dest is None or not out.sends():
            return  # the leg is on hold or inactive: keep receiving, send nothing
        if out.src_ssrc != ssrc:
            # A new source on this outgoing stream: continue our seq/ts (RFC 3550 §5.1 wants
            # a random start and steady increments, whatever the peers do).
            elapsed = CLOCK // 50
            if out.last_out_time is not None:
                elapsed = max(elapsed, round((now - out.last_out_time) * CLOCK))
            out.seq_delta = (out.last_seq_out + 1 - seq) & 0xFFFF
            out.ts_delta = (out.last_ts_out + elapsed - ts) & 0xFFFFFFFF
            out.src_ssrc = ssrc
            marker = 0x80
        seq_out = (seq + out.seq_delta) & 0xFFFF
        ts_out = (ts + out.ts_delta) & 0xFFFFFFFF
        if (seq_out - out.last_seq_out) & 0xFFFF < 0x8000:
            out.last_seq_out = seq_out
        if (ts_out - out.last_ts_out) & 0xFFFFFFFF < 0x80000000:
            out.last_ts_out = ts_out
        out.last_out_time = now
        packet = _HEADER.pack(0x80, (0x80 if marker else 0) | pt, seq_out, ts_out, out.ssrc_out)
        self._send(out, packet + payload, dest)

    @staticmethod
    def _send(leg: _Leg, packet: bytes, dest: tuple[str, int]) -> bool:
        try:
            leg.sock.sendto(packet, dest)
        except (BlockingIOError, InterruptedError):
            leg.dropped += 1  # socket buffer full: drop, as a router would
            return False
        except OSError:
            leg.dropped += 1  # unreachable destination etc.; never raise into the loop
            return False
        leg.packets_out += 1
        leg.bytes_out += len(packet)
        return True


def _header_length(data: bytes) -> int:
    """Length of the RTP header with CSRCs and extension (RFC 3550 §5.1, §5.3.1); -1 if bad."""
    n = len(data)
    hlen = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if hlen + 4 > n:
            return -1
        hlen += 4 + 4 * int.from_bytes(data[hlen + 2 : hlen + 4], "big")
    pad = data[-1] if data[0] & 0x20 else 0
    if hlen + pad > n or (data[0] & 0x20 and pad == 0):
        return -1
    if 72 <= data[1] & 0x7F <= 76:
        return -1  # RTCP multiplexed on the RTP port (RFC 5761 §4): not audio
    return hlen


def _routable(remote: tuple[str, int] | None) -> tuple[str, int] | None:
    """The SDP address as a source address can match it, or None if no packet can come from it
    (unspecified, e.g. hold with c=0.0.0.0, multicast, broadcast, port 0)."""
    if remote is None or not 0 < remote[1] < 65536:
        return None
    try:
        ip = ipaddress.ip_address(remote[0])
    except ValueError:
        return None
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return (str(ip), remote[1])
