"""RFC 4733 telephone-events: payload parse/pack, a receiver that reports each event once,
and the packet sequence a sender emits. Reference twin of ``cext.rfc4733``.

Payload (RFC 4733 §2.3): event (8 bits), E (end) bit, R bit, volume (6 bits, -dBm0),
duration (16 bits, timestamp units). All packets of one event carry the event's start
timestamp (§2.5.1.1); the first has the marker bit; the end packet is retransmitted three
times (§2.5.1.4); an event longer than 0xFFFF samples continues in a new segment with a new
timestamp and no marker (§2.5.1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

DTMF_DIGITS = "0123456789*#ABCD"  # event codes 0..15 (RFC 4733 §3.2)
EVENT_PAYLOAD_SIZE = 4
END_RETRANSMISSIONS = 3  # §2.5.1.4: the final packet is sent three times
MAX_DURATION = 0xFFFF
NO_EVENT = -1


class TelephoneEventError(ValueError):
    """A telephone-event payload that is too short."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int  # 0..63, power level in -dBm0
    duration: int  # in RTP timestamp units


def parse_telephone_event(payload: bytes | bytearray | memoryview) -> TelephoneEvent:
    if len(payload) < EVENT_PAYLOAD_SIZE:
        raise TelephoneEventError(f"telephone-event payload needs 4 bytes, got {len(payload)}")
    return TelephoneEvent(
        event=payload[0],
        end=bool(payload[1] & 0x80),
        volume=payload[1] & 0x3F,
        duration=(payload[2] << 8) | payload[3],
    )


def pack_telephone_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= MAX_DURATION:
        raise ValueError(f"event {event}, volume {volume}, duration {duration} out of range")
    return bytes((event, (0x80 if end else 0) | volume, duration >> 8, duration & 0xFF))


def event_payloads(
    event: int, duration: int, volume: int = 10, packet_samples: int = 160
) -> list[tuple[bool, bytes]]:
    """(marker, payload) of every packet a sender emits for one event, in order.

    Updates every ``packet_samples`` (§2.5.1.2), then the end packet three times. All share
    the event's start timestamp (this helper covers events up to 0xFFFF samples).
    """
    if not 0 < duration <= MAX_DURATION or packet_samples <= 0:
        raise ValueError(f"duration {duration} must be 1..65535 samples")
    out: list[tuple[bool, bytes]] = []
    elapsed = packet_samples
    while elapsed < duration:
        out.append((not out, pack_telephone_event(event, False, volume, elapsed)))
        elapsed += packet_samples
    final = pack_telephone_event(event, True, volume, duration)
    out.extend((not out and i == 0, final) for i in range(END_RETRANSMISSIONS))
    return out


class TelephoneEventReceiver:
    """Turns a stream of telephone-event packets into one report per event.

    ``feed`` returns the event code once per event, when its end is first seen, or when a
    newer event starts while the previous one never showed its end (lost end packets).
    ``start`` and ``duration`` then describe the reported event. Retransmitted end packets
    and late packets of an already reported event return ``NO_EVENT``.
    """

    def __init__(self) -> None:
        self.start = 0
        self.duration = 0
        self.volume = 0
        self._active = False
        self._event = 0
        self._segment_ts = 0
        self._first_ts = 0
        self._segment_base = 0  # duration of earlier segments of a long event (§2.5.1.3)
        self._duration = 0
        self._volume = 0
        self._reported_ts = 0
        self._have_reported = False

    def feed(self, timestamp: int, payload: bytes | bytearray | memoryview, marker: bool) -> int:
        if len(payload) < EVENT_PAYLOAD_SIZE:
            return NO_EVENT
        event = payload[0]
        end = bool(payload[1] & 0x80)
        volume = payload[1] & 0x3F
        duration = (payload[2] << 8) | payload[3]
        timestamp %= 1 << 32
        if self._have_reported and timestamp == self._reported_ts:
            return NO_EVENT  # retransmitted end, or a late packet of a reported event
        result = NO_EVENT
        if self._active and timestamp != self._segment_ts:
            if event == self._event and not marker and self._is_next_segment(timestamp):
                self._segment_base += self._duration
                self._segment_ts = timestamp
                self._duration = 0
            else:
                result = self._report()  # the previous event lost its end packets
        if not self._active:
            self._begin(event, timestamp)
        if duration > self._duration:
            self._duration = duration
        self._volume = volume
        if end:
            if result != NO_EVENT:
                return result  # report the older event now; this end is reported on retransmit
            return self._report()
        return result

    def flush(self) -> int:
        """Report an event whose end never arrived (call on timeout or at leg end)."""
        return self._report() if self._active else NO_EVENT

    def _is_next_segment(self, timestamp: int) -> bool:
        gap = (timestamp - self._segment_ts) % (1 << 32)
        return 0 < gap <= MAX_DURATION + 1 and self._duration >= MAX_DURATION - 8000

    def _begin(self, event: int, timestamp: int) -> None:
        self._active = True
        self._event = event
        self._segment_ts = timestamp
        self._first_ts = timestamp
        self._segment_base = 0
        self._duration = 0

    def _report(self) -> int:
        self._active = False
        self._have_reported = True
        self._reported_ts = self._segment_ts
        self.start = self._first_ts
        self.duration = self._segment_base + self._duration
        self.volume = self._volume
        return self._event
