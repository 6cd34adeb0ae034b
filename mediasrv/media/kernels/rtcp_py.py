"""RTCP receiver statistics per source (RFC 3550 Appendix A.1, A.3, A.8): reference twin of
``cext.rtcp``. Integer arithmetic throughout, as in the RFC's sample code, so both twins agree
bit for bit. Arrival times are given in RTP timestamp units (e.g. samples at 8 kHz).
"""

from __future__ import annotations

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # A.1
MAX_MISORDER = 100  # A.1
MIN_SEQUENTIAL = 2  # A.1: packets in sequence before a source is valid
LOST_MAX = 0x7FFFFF  # A.3: cumulative loss is a signed 24-bit field
LOST_MIN = -0x800000


def _int32(value: int) -> int:
    """Two's complement 32-bit view of ``value`` (the RFC's ``int`` arithmetic)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class ReceiverStats:
    """Sequence tracking, loss and interarrival jitter of one RTP source."""

    def __init__(self) -> None:
        self.max_seq = 0
        self.cycles = 0  # count of sequence number wraps, times 2^16 (A.1 "shifted")
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.probation = MIN_SEQUENTIAL
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.transit = 0
        self.jitter_q4 = 0  # A.8: jitter scaled by 16
        self._started = False
        self._have_transit = False

    def update(self, seq: int, rtp_ts: int, arrival: int) -> bool:
        """Account one packet (A.1 update_seq, A.8 jitter); False if not (yet) valid."""
        if not self.update_seq(seq):
            return False
        self._update_jitter(rtp_ts, arrival)
        return True

    def update_seq(self, seq: int) -> bool:
        """A.1 only (a packet that must not move the jitter estimate, e.g. an RFC 4733
        event: all its packets carry the event's start timestamp); False if not valid."""
        seq &= 0xFFFF
        if not self._started:
            self._started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = MIN_SEQUENTIAL
        return self._update_seq(seq)

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD  # sequence number wrapped
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                self._init_seq(seq)  # two sequential packets: the source restarted
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet, counted
        self.received += 1
        return True

    def _update_jitter(self, rtp_ts: int, arrival: int) -> None:
        transit = _int32(arrival - rtp_ts)
        if self._have_transit:
            d = abs(_int32(transit - self.transit))
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4)
        self._have_transit = True
        self.transit = transit

    @property
    def extended_max_seq(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max_seq - self.base_seq + 1 if self.received else 0

    @property
    def cumulative_lost(self) -> int:
        """A.3: expected minus received, clamped to the 24-bit report field."""
        return max(LOST_MIN, min(LOST_MAX, self.expected - self.received))

    @property
    def jitter(self) -> int:
        """A.8 interarrival jitter in timestamp units (the report block's value)."""
        return self.jitter_q4 >> 4

    def report_interval(self) -> tuple[int, int, int, int]:
        """A.3: (fraction lost /256 since the last call, cumulative lost, ext. max seq, jitter)."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        return fraction, self.cumulative_lost, self.extended_max_seq & 0xFFFFFFFF, self.jitter
