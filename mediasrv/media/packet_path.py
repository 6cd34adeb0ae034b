"""The narrow interface between the media control plane and per-packet work.

:class:`~mediasrv.media.engine.MediaEngine` (control plane: calls, SDP, timers, recorder
lifetime) drives exactly one :class:`PacketPath`. The pure-Python reference lives in
:mod:`mediasrv.media.packet_path_py`; a Cython twin (per-datagram callback or an engine thread
with recvmmsg/sendmmsg) implements the same methods. Legs are small integers chosen by the
engine, so an implementation can keep its state in C arrays.

Per-packet work never calls back into Python except through :class:`PacketEvents`, and only
for rare things (a digit, a latch). The engine polls :meth:`PacketPath.last_rx` from one
periodic timer for the no-RTP timeout instead of being told about every packet.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mediasrv.media.api import Direction, LegStats, PlayEnd
from mediasrv.media.codec import Codec


@dataclass(frozen=True, slots=True)
class LegParams:
    """What offer/answer decided for a leg (see :class:`mediasrv.media.sdp.Negotiated`)."""

    codec: Codec  # codec we send on this leg
    pt: int  # payload type we send ``codec`` with
    rx_pts: dict[int, Codec] = field(default_factory=dict)  # audio PTs accepted from the peer
    te_pt: int | None = None  # telephone-event PT (RFC 4733), both ways; None = not negotiated
    inband_dtmf: bool = True  # run the Goertzel detector on this leg's audio (InbandPolicy)
    remote: tuple[str, int] | None = None  # SDP address; None = on hold / unknown
    direction: Direction = Direction.SENDRECV  # OUR direction on this leg
    # Seconds after the first latch during which another source may take the leg over (NAT
    # rebinding at call start); 0 locks the leg to its first source (trunk peers).
    latch_learning: float = 0.0


class RecordSink(Protocol):
    """Where a leg's received audio goes for recording (see :mod:`mediasrv.media.recorder`)."""

    def feed(
        self, channel: int, ssrc: int, ts: int, codec: Codec, payload: bytes, now: float
    ) -> None:
        """Audio the peer of ``channel`` *sent* (never what we send it), by RTP timestamp."""
        ...


class PacketEvents(Protocol):
    """Rare per-leg events from the packet path back to the control plane."""

    def on_dtmf(
        self, leg: int, digit: str, start: float, duration: float, source: str = "rfc4733"
    ) -> None:
        """One digit, reported once: an RFC 4733 event when its end packet arrives
        (RFC 4733 §2.5.1.4), or an in-band tone (``source="inband"``) when it ends.
        In-band detection runs only on legs that negotiated no telephone-event, so a phone
        that sends both never yields a digit twice."""
        ...

    def on_latched(self, leg: int, addr: tuple[str, int]) -> None:
        """The leg latched (or, within its learning window or to its SDP address, re-latched)
        to ``addr``: we now send there and drop RTP from any other source."""
        ...

    def on_foreign_source(self, leg: int, addr: tuple[str, int]) -> None:
        """The locked leg dropped RTP from ``addr``, not its latched source: reported for the
        first such packet after each latch only (all of them are counted in the stats)."""
        ...

    def on_play_end(self, leg: int, play_id: int, reason: PlayEnd, prompt_index: int) -> None:
        """A play ended by itself: its playlist played out (after the last frame's 20 ms) or
        a digit detected on the leg barged in; ``prompt_index`` is the playlist's prompt
        that played last. A play stopped with :meth:`PacketPath.stop_play` reports nothing."""
        ...


class PacketPath(Protocol):
    """Per-packet RTP work for every leg of one engine."""

    name: str

    def open(self, leg: int, sock: socket.socket) -> None:
        """Start receiving on the leg's bound, non-blocking RTP socket."""
        ...

    def configure(self, leg: int, params: LegParams) -> None:
        """Apply (re-)negotiated media parameters; a changed remote address un-latches
        (a re-INVITE that moves the peer re-opens latching)."""
        ...

    def bridge(self, a: int, b: int) -> None:
        """Relay RTP and RFC 4733 events both ways between ``a`` and ``b``."""
        ...

    def unbridge(self, leg: int) -> None:
        """Stop relaying from and to ``leg`` (and its partner)."""
        ...

    def set_recorder(self, leg: int, sink: RecordSink | None, channel: int) -> None:
        """Feed what ``leg`` receives to ``sink`` as ``channel`` (0 left, 1 right); None stops."""
        ...

    def prompt_frames(self, pcm: bytes) -> object:
        """One prompt (8 kHz 16-bit little-endian PCM) prepared once for this path's playout
        (PCM, µ-law, A-law: ``kernels.playout.PromptFrames``), shared by every leg playing it."""
        ...

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
        """Play ``playlist`` (from :meth:`prompt_frames`) to ``leg``, replacing its play.

        Paced by the path itself from sample counts: frame k is due 20 ms * k after the start.
        Without ``mix`` the prompt replaces what the partner says; with ``mix`` the partner's
        audio is added to it (saturating), the prompt alone while the partner is silent. The
        frames go on the leg's own outgoing stream (one SSRC; the first frame is marked).
        ``barge_in``: a digit detected on the leg ends the play (:meth:`PacketEvents.on_play_end`).
        """
        ...

    def stop_play(self, leg: int, play_id: int) -> bool:
        """Stop ``leg``'s play if it is ``play_id`` (no event); False if it was not playing."""
        ...

    def python_calls(self) -> int:
        """Python-level calls made by the per-packet machinery so far (a bench figure: the
        Cython engine thread makes none per packet, only per rare event)."""
        ...

    def packet_totals(self) -> tuple[int, int]:
        """(RTP packets received, RTP packets sent) over every leg, open or closed."""
        ...

    def last_rx(self, leg: int) -> float:
        """Loop time of the last valid packet received on ``leg``, 0.0 if none yet."""
        ...

    def last_rx_many(self, legs: Sequence[int]) -> list[float]:
        """``last_rx`` of each of ``legs`` in one call (the no-RTP check of every leg)."""
        ...

    def stats(self, leg: int) -> LegStats: ...

    def close(self, leg: int) -> None:
        """Stop receiving on ``leg`` and forget it (the engine closes the socket)."""
        ...
