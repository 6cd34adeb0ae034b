"""RFC 4475 and RFC 5118 torture messages (tests/data/sip/torture/) through the user agent:
each one's expected outcome, and never silence where a response can be formed (issue 7
part 5). The same table is replayed against the running server in
tests/e2e/test_e2e_conformance.py.

Outcome: the status codes sent, in order, "+call" when a call leg was handed to the call
layer, "dropped" when nothing was sent (only responses, which no response can answer).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sip_fakeclock import FakeClock

from mediasrv.sip.dialog import LocalContact, Peer
from mediasrv.sip.legs import InboundLeg
from mediasrv.sip.transaction import TimerConfig
from mediasrv.sip.ua import UserAgent

TORTURE = Path(__file__).parent.parent / "data" / "sip" / "torture"
CALLER = Peer("UDP", "127.0.0.1", 5071)

EXPECTED_TSV = TORTURE / "expected.tsv"  # fixture, outcome, why (shared with the e2e replay)


def load_expected() -> dict[str, tuple[str, str]]:
    rows = (line.split("\t") for line in EXPECTED_TSV.read_text().splitlines())
    return {r[0]: (r[1], r[2]) for r in rows if r[0] and not r[0].startswith("#")}


EXPECTED = load_expected()


def outcome(data: bytes) -> str:
    sent: list[bytes] = []
    legs: list[InboundLeg] = []
    ua = UserAgent(
        FakeClock(),
        lambda wire, _peer: sent.append(wire),
        LocalContact("127.0.0.1", 5060),
        lambda leg, _trunk: legs.append(leg),
        cfg=TimerConfig(),
    )
    ua.receive(data, CALLER)
    codes = [wire.split(b" ", 2)[1].decode() for wire in sent]
    assert all(wire.startswith(b"SIP/2.0 ") for wire in sent)
    return "+".join(codes + (["call"] if legs else [])) or "dropped"


def test_every_torture_fixture_has_an_expected_outcome() -> None:
    assert sorted(p.stem for p in TORTURE.glob("*.sip")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message_gets_its_expected_answer(name: str) -> None:
    expected, why = EXPECTED[name]
    assert outcome((TORTURE / f"{name}.sip").read_bytes()) == expected, why


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_request_is_met_with_silence(name: str) -> None:
    data = (TORTURE / f"{name}.sip").read_bytes()
    if data.startswith(b"SIP/2.0 "):
        assert outcome(data) == "dropped"  # a response: nothing can answer it
    else:
        assert outcome(data) != "dropped", name
