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
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mediasrv.media.api import Direction, LegStats
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

    def set_prompt(self, leg: int, active: bool) -> None:
        """While a prompt plays to ``leg``, relayed audio toward it is dropped (no mixing yet)."""
        ...

    def send_payload(self, leg: int, payload: bytes, samples: int, marker: bool) -> bool:
        """Send one frame of our own audio (in the leg's codec) on the leg's outgoing stream.

        ``marker`` starts a talkspurt: the timestamp then jumps by the real elapsed time.
        Returns False when it could not be sent (no address yet, direction forbids sending).
        """
        ...

    def last_rx(self, leg: int) -> float:
        """Loop time of the last valid packet received on ``leg``, 0.0 if none yet."""
        ...

    def stats(self, leg: int) -> LegStats: ...

    def close(self, leg: int) -> None:
        """Stop receiving on ``leg`` and forget it (the engine closes the socket)."""
        ...


@runtime_checkable
class MixingPacketPath(PacketPath, Protocol):
    """A packet path that can mix a prompt into a bridged leg (a whisper, SPEC F4).

    While ``set_prompt(leg, True, mix=True)`` is on, audio relayed toward ``leg`` is not sent
    but decoded into a short FIFO (about 60 ms); the engine's prompt timer takes 20 ms of it
    with :meth:`take_mixed`, adds the prompt and sends the sum on the leg's own stream.
    """

    def set_prompt(self, leg: int, active: bool, mix: bool = False) -> None: ...

    def take_mixed(self, leg: int, samples: int) -> bytes:
        """``samples`` of the partner's audio as 16-bit PCM (silence where there is none)."""
        ...
