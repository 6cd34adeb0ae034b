"""SIPVicious ``svcrack`` (0.3.8), the standard online SIP password cracker, against the running
server: it must not find the trunk's password, although its dictionary contains it, placed
after the guard's threshold (issue 8, "Tests").

svcrack speaks MD5 only, so the trunk is an MD5 trunk. It sends its INVITEs without a body;
mediasrv answers an admitted INVITE without SDP 488, which svcrack does not understand, so a
three-line wrapper gives its INVITEs an SDP offer (digest qop=auth does not cover the body):
the call is then admitted, routed to a SIPp UAS and answered 200, and svcrack reports the
password, as it does against today's server. svcrack's ``-b`` option is parsed but ignored in
0.3.8, so it sends from 127.0.0.1 (``-x`` only sets the address it writes in Via).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import FAST_SIP, StartServer
from peers_plugin import needs_sipp, sipp_scenario

from mediasrv.demo.sipp import SippOptions, SippRun, free_port

SVCRACK = shutil.which("sipvicious_svcrack") or str(
    Path(sys.executable).parent / "sipvicious_svcrack"
)
pytestmark = [
    needs_sipp,
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(SVCRACK).exists(), reason="sipvicious (svcrack) not installed"),
]

NUMBER = "0312345678"
USER, PASSWORD = "carrier1", "s3cret"
MAX_FAILURES = 5
# the password is the 13th guess: well after the threshold
DICTIONARY = [f"guess{i:02d}" for i in range(12)] + [PASSWORD] + ["late1", "late2"]

WRAPPER = r"""
import sys
import sipvicious.svcrack as svcrack

SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
make_request = svcrack.makeRequest

def with_sdp(method, *args, **kwargs):
    if method == "INVITE":
        kwargs["body"] = SDP
    return make_request(method, *args, **kwargs)

svcrack.makeRequest = with_sdp
sys.argv[0] = "svcrack"
svcrack.main()
"""


async def run_svcrack(tmp_path: Path, sip_port: int, wall_s: float) -> str:
    words = tmp_path / "passwords.txt"
    words.write_text("\n".join(DICTIONARY) + "\n")
    wrapper = tmp_path / "svcrack_sdp.py"
    wrapper.write_text(WRAPPER)
    proc = await asyncio.create_subprocess_exec(
        # SIGINT at the end: svcrack catches it and prints what it found ("found nothing")
        "timeout", "-s", "INT", "-k", "5", str(wall_s), sys.executable, str(wrapper),
        "-u", USER, "-e", NUMBER, "-d", str(words), "-m", "INVITE", "-x", "127.0.0.1",
        "-P", str(free_port()), "-p", str(sip_port), "-t", "0.02", "--maximumtime", "2",
        "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=wall_s + 10)
    return out.decode(errors="replace")


@pytest.mark.parametrize("policy", ["reject", "drop"])
async def test_svcrack_is_locked_out(tmp_path: Path, start_server: StartServer, policy: str):
    uas_port = free_port()
    trunk = {
        "name": "carrier",
        "addresses": ["127.0.0.1/32"],
        "inbound_auth": True,
        "username": USER,
        "password": PASSWORD,
        "algorithm": "MD5",
    }
    guard = {"max_failures": MAX_FAILURES, "backoff": 0.0, "blocked_policy": policy}
    server = start_server(
        trunks=[trunk],
        numbers=[{"number": NUMBER, "destinations": [f"sip:op@127.0.0.1:{uas_port}"]}],
        sip={**FAST_SIP, "auth_guard": guard},
    )
    uas = await SippRun.start(
        SippOptions(
            scenario=sipp_scenario("uas_no180"), name="uas", local_port=uas_port, calls=1,
            timeout_s=30,
        ),
        tmp_path / "uas",
    )  # fmt: skip
    try:
        out = await run_svcrack(tmp_path, server.sip_port, wall_s=20.0)
    finally:
        await uas.stop()
    # what svcrack prints when it cracks a password (it did against the previous server):
    # a table row "| carrier1 | s3cret |"; otherwise "found nothing"
    assert not re.search(rf"\|\s*{USER}\s*\|\s*{PASSWORD}\s*\|", out), out[-3000:]
    assert "found nothing" in out, out[-3000:]
    m = server.metrics()
    assert m.get('mediasrv_sip_auth_attempts_total{result="ok"}') == 0
    assert m.get('mediasrv_sip_auth_attempts_total{result="failed"}') == MAX_FAILURES
    assert m.get('mediasrv_sip_auth_blocks_total{scope="source"}') == 1
    assert m.get('mediasrv_sip_auth_attempts_total{result="blocked"}', 0) >= 1
    assert not server.calls()  # no call was admitted, so no row
    forbidden = m.get('mediasrv_sip_responses_total{code="403",direction="out",method="INVITE"}')
    if policy == "drop":
        # a 403 for each wrong guess, then silence: the blocked INVITEs got no response
        assert forbidden == MAX_FAILURES
    else:
        assert forbidden is not None and forbidden > MAX_FAILURES
