"""Regenerate tests/media/data/pjsua2_offer.sdp: the SDP body of a real pjsua2 INVITE.

Run: /work/venv/bin/python tests/media/capture_pjsua2_sdp.py
A plain UDP socket plays the callee; pjsua2 (pjproject 2.15) dials it; the INVITE's body is
saved byte for byte. The pjsua2 phone runs in a child process (one Endpoint per process).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

PHONE = r"""
import sys, time
import pjsua2 as pj
port = int(sys.argv[1])
ep = pj.Endpoint(); ep.libCreate()
cfg = pj.EpConfig(); cfg.logConfig.level = 0; cfg.logConfig.consoleLevel = 0
ep.libInit(cfg)
tc = pj.TransportConfig(); tc.port = 0; tc.boundAddress = "127.0.0.1"
ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
ep.libStart(); ep.audDevManager().setNullDev()
acc = pj.Account(); ac = pj.AccountConfig(); ac.idUri = "sip:caller@127.0.0.1"
ac.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
acc.create(ac)
call = pj.Call(acc); prm = pj.CallOpParam(True)
call.makeCall(f"sip:op@127.0.0.1:{port}", prm)
time.sleep(1.5)
del call
ep.libDestroy()
"""


def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    phone = subprocess.Popen([sys.executable, "-c", PHONE, str(port)])
    try:
        while True:
            data, _ = listener.recvfrom(65536)
            if data.startswith(b"INVITE "):
                break
    finally:
        phone.wait(20)
    body = data.split(b"\r\n\r\n", 1)[1]
    out = Path(__file__).parent / "data" / "pjsua2_offer.sdp"
    out.write_bytes(body)
    print(body.decode())


if __name__ == "__main__":
    main()
