"""RTP port pool: even pairs at random, skipping ports the OS refuses, O(1) reuse, exhaustion."""

from __future__ import annotations

import itertools
import socket

import pytest

from mediasrv.media.api import PortsExhausted
from mediasrv.media.ports import PortPool

HOST = "127.0.0.1"


def test_pairs_are_even_rtp_with_rtcp_next_to_it() -> None:
    pool = PortPool(HOST, 46001, 46020)  # odd minimum rounds up
    pairs = [pool.allocate() for _ in range(5)]
    try:
        for pair in pairs:
            assert pair.port % 2 == 0 and 46002 <= pair.port < 46020
            assert pair.rtp.getsockname() == (HOST, pair.port)
            assert pair.rtcp.getsockname() == (HOST, pair.port + 1)
        assert pool.in_use() == 5
    finally:
        for pair in pairs:
            pool.free(pair)
    assert pool.in_use() == 0


def test_ports_taken_by_someone_else_are_skipped() -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, 46103))  # the RTCP port of the first pair
    pool = PortPool(HOST, 46102, 46108)
    try:
        pairs = [pool.allocate(), pool.allocate()]
        assert sorted(p.port for p in pairs) == [46104, 46106]
        with pytest.raises(PortsExhausted):
            pool.allocate()
        for pair in pairs:
            pool.free(pair)
    finally:
        squatter.close()


def test_exhaustion_and_reuse_order() -> None:
    pool = PortPool(HOST, 46200, 46205)  # 46200/1, 46202/3, 46204/5 (the maximum is inclusive)
    pairs = [pool.allocate(), pool.allocate(), pool.allocate()]
    assert pool.capacity() == 3
    with pytest.raises(PortsExhausted, match="no free RTP port pair"):
        pool.allocate()
    pool.free(pairs[0])
    again = pool.allocate()
    assert again.port == pairs[0].port
    for pair in (again, *pairs[1:]):
        pool.free(pair)
    pool.free(again)  # freeing twice is harmless
    assert pool.in_use() == 0


def test_ipv6_pool() -> None:
    try:
        pool = PortPool("::1", 46300, 46310)
        pair = pool.allocate()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert pair.rtp.family == socket.AF_INET6
    pool.free(pair)


def test_bad_range_is_refused() -> None:
    with pytest.raises(ValueError, match="bad RTP port range"):
        PortPool(HOST, 5000, 5000)


def test_ports_are_handed_out_at_random_within_the_range() -> None:
    """Issue 8: sequential ports (40000, 40002, ...) let a third host guess a call's port."""
    low, high = 46400, 46599  # 100 pairs
    orders = []
    for _ in range(2):
        pool = PortPool(HOST, low, high)
        pairs = [pool.allocate() for _ in range(30)]
        ports = [p.port for p in pairs]
        for pair in pairs:
            pool.free(pair)
        assert all(p % 2 == 0 and low <= p and p + 1 <= high for p in ports)
        assert len(set(ports)) == 30
        orders.append(ports)
    for ports in orders:
        steps = [b - a for a, b in itertools.pairwise(ports)]
        # In order, every step would be +2; at random, hardly any (expected ~0.3 of 29).
        assert sum(step == 2 for step in steps) < 10, ports
        assert ports != sorted(ports)
    assert orders[0] != orders[1]  # not the same "random" order each time


def test_a_just_freed_port_is_not_reused_at_once() -> None:
    pool = PortPool(HOST, 46600, 46679)  # 40 pairs
    for _ in range(50):
        pair = pool.allocate()
        port = pair.port
        pool.free(pair)
        again = [pool.allocate() for _ in range(5)]
        assert port not in [p.port for p in again]
        for p in again:
            pool.free(p)
    assert pool.in_use() == 0 and pool.capacity() == 40


@pytest.fixture(autouse=True)
def packet_path() -> str:
    """Overrides tests/media/conftest.py: this module never builds an engine, so it runs once,
    not once per packet path."""
    return "none"
