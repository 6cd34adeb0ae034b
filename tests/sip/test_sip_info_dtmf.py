"""SIP INFO digit bodies (application/dtmf-relay, application/dtmf) into Dtmf leg events;
bad bodies give no digit (the INFO still gets 200), never an exception."""

from __future__ import annotations

import pytest

from mediasrv.sip.events import Dtmf
from mediasrv.sip.legs import parse_dtmf_info


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", Dtmf("5", 160)),
        ("Application/DTMF-Relay; charset=x", b"signal= 9 \nduration = 250", Dtmf("9", 250)),
        ("application/dtmf-relay", b"Signal=11\r\nDuration=100", Dtmf("#", 100)),
        ("application/dtmf-relay", b"Signal=10", Dtmf("*", 160)),
        ("application/dtmf-relay", b"Signal=a\r\nDuration=x", Dtmf("A", 160)),
        ("application/dtmf-relay", b"Signal=1\r\nDuration=99999999999", Dtmf("1", 160)),
        ("application/dtmf-relay", b"Signal=1\r\nDuration=86400", Dtmf("1", 5000)),
        ("application/dtmf", b"7\r\n", Dtmf("7", 160)),
        ("application/dtmf-relay", b"Signal=12\r\n", None),
        ("application/dtmf-relay", b"Duration=160\r\n", None),
        ("application/dtmf-relay", b"\xff\xfe", None),
        ("application/dtmf", b"55", None),
        ("text/plain", b"Signal=5", None),
        ("", b"", None),
    ],
)
def test_info_bodies(ctype: str, body: bytes, expected: Dtmf | None) -> None:
    assert parse_dtmf_info(ctype, body) == expected
