"""RTCP receiver statistics (RFC 3550 A.1, A.3, A.8) over both implementations."""

from __future__ import annotations

import random
from types import ModuleType

import pytest
from kernel_twins import kernel_pair

from mediasrv.media.kernels import load_kernel


@pytest.fixture
def rtcp(impl_kind: str) -> ModuleType:
    return load_kernel("rtcp", python=impl_kind == "python")


def feed(stats: object, seqs: list[int], step: int = 160) -> list[bool]:
    return [stats.update(s, (s * step) % 2**32, (s * step) % 2**32) for s in seqs]  # type: ignore[attr-defined]


def test_probation_then_counting(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    valid = feed(st, list(range(1000, 1100)))
    assert valid == [False] + [True] * 99  # A.1: MIN_SEQUENTIAL=2, the first is probation
    assert (st.received, st.expected, st.cumulative_lost) == (99, 99, 0)
    assert st.report_interval() == (0, 0, 1099, 0)


def test_loss_and_fraction(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    seqs = [s for s in range(0, 101) if s % 10 != 5]  # 10 lost of 100 after probation
    feed(st, seqs)
    fraction, lost, ext_max, _ = st.report_interval()
    assert (lost, ext_max) == (10, 100)
    assert fraction == (10 << 8) // 100
    feed(st, list(range(101, 201)))
    assert st.report_interval()[0] == 0  # nothing lost in the second interval


def test_sequence_wrap_extends(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    feed(st, [s % 65536 for s in range(65500, 65600)])
    assert st.extended_max_seq == 65536 + 63
    assert st.cumulative_lost == 0 and st.received == 99


def test_duplicates_make_loss_negative(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    feed(st, [1, 2, 3, 3, 3, 4])
    assert st.cumulative_lost == -2  # RFC 3550 §6.4.1: duplicates can make it negative


def test_large_jump_needs_two_sequential_packets(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    feed(st, list(range(10, 20)))
    assert feed(st, [30000]) == [False]
    assert feed(st, [30001, 30002]) == [True, True]  # source restarted: re-based
    assert st.received == 2 and st.cumulative_lost == 0


def test_jitter_zero_for_constant_transit(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    for i in range(200):
        st.update(i, i * 160, 5000 + i * 160)
    assert st.jitter == 0


def test_jitter_converges_to_alternating_delay(rtcp: ModuleType) -> None:
    """Arrivals alternating ±20 samples: |D| = 40, A.8's estimate converges to 40."""
    st = rtcp.ReceiverStats()
    for i in range(2000):
        st.update(i, i * 160, i * 160 + (20 if i % 2 else -20))
    assert 38 <= st.jitter <= 40


def test_jitter_handles_timestamp_wrap(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    for i in range(100):
        ts = (2**32 - 50 * 160 + i * 160) % 2**32
        st.update(i, ts, (ts + 777) % 2**32)
    assert st.jitter == 0


@pytest.mark.parametrize("seed", range(5))
def test_parity_random_network(seed: int) -> None:
    py, cy = kernel_pair("rtcp")
    rng = random.Random(seed)
    sp, sc = py.ReceiverStats(), cy.ReceiverStats()
    seq, ts, now = rng.randrange(65536), rng.randrange(2**32), rng.randrange(2**32)
    for i in range(5000):
        roll = rng.random()
        step = 1 if roll < 0.9 else rng.choice((0, 2, 5, -3, 4000, -60000))
        seq = (seq + step) % 65536
        ts = (ts + 160 * step) % 2**32
        now = (now + 160 + rng.randrange(-40, 41)) % 2**32
        assert sp.update(seq, ts, now) == sc.update(seq, ts, now)
        if i % 250 == 0:
            assert sp.report_interval() == sc.report_interval()
    for name in ("received", "expected", "cumulative_lost", "extended_max_seq", "jitter"):
        assert getattr(sp, name) == getattr(sc, name), name


@pytest.mark.parametrize("seed", range(3))
def test_parity_with_sequence_only_packets(seed: int) -> None:
    """What the relay does: audio updates A.1 and A.8, RFC 4733 event packets A.1 only."""
    py, cy = kernel_pair("rtcp")
    rng = random.Random(100 + seed)
    sp, sc = py.ReceiverStats(), cy.ReceiverStats()
    seq, ts, now = rng.randrange(65536), rng.randrange(2**32), rng.randrange(2**32)
    for _ in range(3000):
        seq = (seq + (1 if rng.random() < 0.95 else rng.choice((0, 3, -2, 5000)))) % 65536
        ts, now = (ts + 160) % 2**32, (now + 160 + rng.randrange(-30, 31)) % 2**32
        if rng.random() < 0.2:
            assert sp.update_seq(seq) == sc.update_seq(seq)
        else:
            assert sp.update(seq, ts, now) == sc.update(seq, ts, now)
    for name in ("received", "expected", "cumulative_lost", "extended_max_seq", "jitter"):
        assert getattr(sp, name) == getattr(sc, name), name


def test_sequence_only_packets_leave_jitter_alone(rtcp: ModuleType) -> None:
    st = rtcp.ReceiverStats()
    for i in range(100):
        st.update(2 * i, 2 * i * 160, 9000 + 2 * i * 160)
        st.update_seq(2 * i + 1)  # an event packet between audio packets: same clock
    assert st.jitter == 0 and st.cumulative_lost == 0
