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

# fixture -> (outcome, what the RFC says and why this is the answer)
EXPECTED: dict[str, tuple[str, str]] = {
    "4475_badaspec": ("200", "§3.1.2.14 spaces in addr-spec of To: processed (OPTIONS reads no To URI)"),
    "4475_badbranch": ("200", "§3.2.1 branch is just the cookie: processed"),
    "4475_baddate": ("100+call", "§3.1.2.12 bad time zone in Date: processed"),
    "4475_baddn": ("200", "§3.1.2.15 non-token display names: processed"),
    "4475_badinv01": ("100+call", "§3.1.2.1 extra ;;,;,, separators: processed (liberal; an answer is given)"),
    "4475_badvers": ("505", "§3.1.2.16 SIP/7.0: 505"),
    "4475_bcast": ("dropped", "§3.3.10 a response: dropped"),
    "4475_bext01": ("420", "§3.3.5 Require of unknown options: 420"),
    "4475_bigcode": ("dropped", "§3.1.2.19 a response: dropped"),
    "4475_clerr": ("400", "§3.1.2.2 Content-Length larger than the message: 400"),
    "4475_cparam01": ("405", "§3.3.12 REGISTER: 405"),
    "4475_dblreq": ("405", "§3.1.1.8 the REGISTER is processed (405), the trailing INVITE discarded (§18.3)"),
    "4475_esc01": ("100+call", "§3.1.1.3 valid: processed"),
    "4475_esc02": ("501", "§3.1.1.5 valid, unknown method: 501"),
    "4475_escnull": ("405", "§3.1.1.4 valid REGISTER: we serve no REGISTER, 405"),
    "4475_escruri": ("100+call", "§3.1.2.11 escaped headers in the Request-URI: processed (allowed)"),
    "4475_insuf": ("400", "§3.3.1 no From, To, Call-ID: 400 from what is there"),
    "4475_intmeth": ("400", "§3.1.1.2 valid (endpoint: 501); its To quotes a NUL, which we refuse with 400"),
    "4475_inv2543": ("100+call", "§3.4.1 RFC 2543 INVITE (no branch, no Max-Forwards): processed"),
    "4475_invut": ("100+415", "§3.3.6 unknown Content-Type: 415"),
    "4475_ltgtruri": ("400", "§3.1.2.7 <> around the Request-URI: 400"),
    "4475_lwsdisp": ("200", "§3.1.1.6 valid: processed"),
    "4475_lwsruri": ("400", "§3.1.2.8 LWS in the Request-URI: 400"),
    "4475_lwsstart": ("400", "§3.1.2.9 multiple SP in the request line: 400 (reject allowed)"),
    "4475_mcl01": ("400", "§3.3.9 conflicting Content-Length: 400"),
    "4475_mismatch01": ("400", "§3.1.2.17 CSeq method mismatch: 400"),
    "4475_mismatch02": ("400", "§3.1.2.18 unknown method, CSeq mismatch: 400 (allowed besides 501)"),
    "4475_multi01": ("400", "§3.3.8 several values in single-value headers: 400"),
    "4475_ncl": ("400", "§3.1.2.3 negative Content-Length: 400"),
    "4475_noreason": ("dropped", "§3.1.1.13 a response matching no transaction: dropped"),
    "4475_novelsc": ("416", "§3.3.3 scheme we never serve: 416"),
    "4475_quotbal": ("400", "§3.1.2.6 unterminated quote: 400"),
    "4475_regaut01": ("405", "§3.3.7 REGISTER: 405"),
    "4475_regbadct": ("405", "§3.1.2.13 REGISTER: 405"),
    "4475_scalar02": ("400", "§3.1.2.4 overlarge CSeq: 400"),
    "4475_scalarlg": ("dropped", "§3.1.2.5 a response: dropped"),
    "4475_sdp01": ("100+406", "§3.3.15 Accept without SDP: 406"),
    "4475_semiuri": ("200", "§3.1.1.9 valid: processed"),
    "4475_transports": ("200", "§3.1.1.10 valid: processed"),
    "4475_trws": ("200", "§3.1.2.10 trailing SP after the version: processed"),
    "4475_unkscm": ("416", "§3.3.2 unknown URI scheme: 416"),
    "4475_unksm2": ("405", "§3.3.4 REGISTER: 405"),
    "4475_unreason": ("dropped", "§3.1.1.12 a response matching no transaction: dropped (§17.1.3)"),
    "4475_wsinv": ("481", "§3.1.1.1 valid; its To has a tag, so it is a re-INVITE of a dialog we do not have: 481 (§12.2.2)"),
    "4475_zeromf": ("200", "§3.3.11 OPTIONS with Max-Forwards 0: we are its final recipient, 200"),
    "5118_ipv4-mapped-ipv6": ("100+call", "§4.9 INVITE: processed"),
    "5118_ipv6-bad": ("405", "§4.2 REGISTER: 405"),
    "5118_ipv6-bug-abnf-3-colons": ("200", "§4.10 OPTIONS (we read no To URI): processed"),
    "5118_ipv6-correct-abnf-2-colons": ("200", "§4.10 OPTIONS: processed"),
    "5118_ipv6-good": ("405", "§4.1 REGISTER: 405"),
    "5118_ipv6-in-sdp": ("100+call", "§4.6 INVITE with IPv6 SDP: processed"),
    "5118_mult-ip-in-header": ("481", "§4.7 BYE of no dialog: 481"),
    "5118_mult-ip-in-sdp": ("100+call", "§4.8 INVITE: processed"),
    "5118_port-ambiguous": ("405", "§4.3 REGISTER: 405"),
    "5118_port-unambiguous": ("405", "§4.4 REGISTER: 405"),
    "5118_via-received-param-no-delim": ("200", "§4.5 OPTIONS: processed"),
    "5118_via-received-param-with-delim": ("481", "§4.5 BYE of no dialog: 481"),
}


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
