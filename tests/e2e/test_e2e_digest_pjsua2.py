"""Legitimate digest authentication still works through the running server with the new rules
(uri = Request-URI, SHA-256 only, nonce bound to the source, nc tracked): a real UA (pjsua2)
calls a tracking number on a SHA-256 trunk, answers the 401 and is connected to a SIPp UAS."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conftest import FAST_SIP, StartServer
from peers_plugin import needs_sipp

from mediasrv.demo.sipp import SippOptions, SippRun, free_port

pytest.importorskip("pjsua2")
pytestmark = [needs_sipp, pytest.mark.e2e]

NUMBER = "0312345678"
USER, PASSWORD = "carrier1", "s3cret"

# One pjsua2 Endpoint per process (TOOLS.md): the caller runs in a child interpreter.
CALLER = r"""
import sys, time
import pjsua2 as pj

port, number, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
states = []

class Call(pj.Call):
    def onCallState(self, prm):
        info = self.getInfo()
        states.append((info.state, info.lastStatusCode))

ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
cfg.logConfig.level = 0
cfg.logConfig.consoleLevel = 0
ep.libInit(cfg)
tc = pj.TransportConfig()
tc.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
ep.libStart()
ep.audDevManager().setNullDev()
ac = pj.AccountConfig()
ac.idUri = f"sip:{user}@127.0.0.1"
ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
acc = pj.Account()
acc.create(ac)
call = Call(acc)
call.makeCall(f"sip:{number}@127.0.0.1:{port}", pj.CallOpParam(True))
done = (pj.PJSIP_INV_STATE_CONFIRMED, pj.PJSIP_INV_STATE_DISCONNECTED)
deadline = time.time() + 10
while time.time() < deadline and not (states and states[-1][0] in done):
    ep.libHandleEvents(20)
confirmed = any(s == pj.PJSIP_INV_STATE_CONFIRMED for s, _ in states)
if confirmed:
    call.hangup(pj.CallOpParam(True))
    end = time.time() + 3
    while time.time() < end and states[-1][0] != pj.PJSIP_INV_STATE_DISCONNECTED:
        ep.libHandleEvents(20)
print("RESULT", int(confirmed), states[-1][1] if states else 0, flush=True)
del call
acc.shutdown()
del acc
ep.libDestroy()
"""


async def test_pjsua2_call_authenticates_with_sha256(tmp_path: Path, start_server: StartServer):
    uas_port = free_port()
    trunk = {
        "name": "carrier",
        "addresses": ["127.0.0.1/32"],
        "inbound_auth": True,
        "username": USER,
        "password": PASSWORD,
        "algorithm": "SHA-256",
    }
    server = start_server(
        trunks=[trunk],
        numbers=[{"number": NUMBER, "destinations": [f"sip:op@127.0.0.1:{uas_port}"]}],
        sip=dict(FAST_SIP),
    )
    uas = await SippRun.start(
        SippOptions(scenario="uas", name="uas", local_port=uas_port, calls=1, timeout_s=30),
        tmp_path / "uas",
    )
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CALLER, str(server.sip_port), NUMBER, USER, PASSWORD,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=40)
        uas_result = await uas.wait(20)
    finally:
        await uas.stop()
    assert proc.returncode == 0, err.decode(errors="replace")
    result = next(line.split() for line in out.decode().splitlines() if line.startswith("RESULT"))
    assert result[1] == "1", result  # the call was connected
    m = server.metrics()
    assert m.get('mediasrv_sip_auth_attempts_total{result="ok"}') == 1
    assert m.get('mediasrv_sip_auth_attempts_total{result="failed"}') == 0
    assert m.get('mediasrv_sip_auth_attempts_total{result="challenged"}') == 1
    assert uas_result.stats.successful == 1, uas_result.describe()
