"""Regenerate the pjsua2 SDP fixtures in tests/media/data/ from a real pjsua2 phone.

Run: .venv/bin/python tests/media/capture_pjsua2_sdp.py
A minimal UAS on a plain UDP socket answers a pjsua2 (pjproject 2.15) call, then the phone
puts the call on hold and resumes it; the bodies of the INVITE and both re-INVITEs are saved
byte for byte: pjsua2_offer.sdp, pjsua2_hold.sdp, pjsua2_resume.sdp. The phone runs in a
child process (one pjsua2 Endpoint per process).
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
call = pj.Call(acc)
call.makeCall(f"sip:op@127.0.0.1:{port}", pj.CallOpParam(True))
time.sleep(1.0)
call.setHold(pj.CallOpParam(True))
time.sleep(1.0)
prm = pj.CallOpParam(True); prm.opt.flag = pj.PJSUA_CALL_UNHOLD
call.reinvite(prm)
time.sleep(1.0)
call.hangup(pj.CallOpParam(True))
time.sleep(0.3)
del call
ep.libDestroy()
"""

ANSWER_SDP = (
    "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 121\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:121 telephone-event/8000\r\na=fmtp:121 0-16\r\na={direction}\r\n"
)


def _headers(request: bytes, names: tuple[str, ...]) -> list[str]:
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    return [ln for ln in head.split("\r\n")[1:] if ln.split(":", 1)[0].strip().lower() in names]


def _respond(sock: socket.socket, request: bytes, addr: tuple[str, int], body: str) -> None:
    lines = ["SIP/2.0 200 OK"]
    for line in _headers(request, ("via", "v", "from", "f", "call-id", "i", "cseq")):
        lines.append(line)
    for line in _headers(request, ("to", "t")):
        lines.append(line if "tag=" in line else line + ";tag=capture")
    host, port = sock.getsockname()
    lines.append(f"Contact: <sip:op@{host}:{port}>")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), addr)


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    phone = subprocess.Popen([sys.executable, "-c", PHONE, str(sock.getsockname()[1])])
    bodies: list[bytes] = []
    try:
        while True:
            data, addr = sock.recvfrom(65536)
            method = data.split(b" ", 1)[0]
            body = data.split(b"\r\n\r\n", 1)[1]
            if method == b"INVITE":
                bodies.append(body)
                direction = "recvonly" if b"a=sendonly" in body else "sendrecv"
                _respond(sock, data, addr, ANSWER_SDP.format(port=40000, direction=direction))
            elif method == b"BYE":
                _respond(sock, data, addr, "")
                break
    finally:
        phone.wait(20)
    data_dir = Path(__file__).parent / "data"
    names = ("pjsua2_offer.sdp", "pjsua2_hold.sdp", "pjsua2_resume.sdp")
    for name, body in zip(names, bodies, strict=False):
        (data_dir / name).write_bytes(body)
        print(f"--- {name}\n{body.decode()}")


if __name__ == "__main__":
    main()
