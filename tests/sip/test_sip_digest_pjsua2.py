"""Cross-check DigestServer with a real UA: pjsua2 registers with credentials against a tiny
UDP registrar built on parse_message / make_response / DigestServer (RFC 3261 §22)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import cast

import pytest

from mediasrv.sip.digest import DigestAlgorithm, DigestServer, DigestStatus, parse_digest_params
from mediasrv.sip.message import Request, make_response, new_tag, serialize
from mediasrv.sip.parser import SipParseError, parse_message

pytest.importorskip("pjsua2")
pytestmark = pytest.mark.e2e

# One pjsua2 Endpoint per process (TOOLS.md), so the phone runs in a child interpreter.
PHONE = r"""
import sys, time
import pjsua2 as pj

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
codes = []

class Acc(pj.Account):
    def onRegState(self, prm):
        codes.append(prm.code)

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
ac.regConfig.registrarUri = f"sip:127.0.0.1:{port}"
ac.regConfig.retryIntervalSec = 0
ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
acc = Acc()
acc.create(ac)
deadline = time.time() + 5
while not codes and time.time() < deadline:
    ep.libHandleEvents(20)
print("REGCODE", codes[0] if codes else 0, flush=True)
acc.shutdown()
del acc
ep.libDestroy()
"""


@dataclass
class Registrar(asyncio.DatagramProtocol):
    server: DigestServer
    passwords: dict[str, str]
    results: list[tuple[DigestStatus, str]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport is not a DatagramTransport subclass in 3.11
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        try:
            req = parse_message(data)
        except SipParseError:
            return
        if not isinstance(req, Request):
            return
        auth = req.headers.get("Authorization")
        if auth is None:
            resp = make_response(req, 401, to_tag=new_tag())
            for value in self.server.challenges():
                resp.headers.add("WWW-Authenticate", value)
        else:
            result = self.server.verify(auth, req.method, self.passwords.get, req.uri)
            self.results.append((result.status, parse_digest_params(auth)["algorithm"]))
            if result.ok:
                resp = make_response(req, 200, to_tag=new_tag())
                resp.headers.add("Contact", req.headers.get("Contact") or "")
                resp.headers.add("Expires", "300")
            else:
                resp = make_response(req, 403, to_tag=new_tag())
        self.transport.sendto(serialize(resp), addr)


async def register(algorithms: list[DigestAlgorithm], password: str) -> tuple[int, Registrar]:
    loop = asyncio.get_running_loop()
    registrar = Registrar(
        DigestServer("trunk.test", b"pjsua2-cross-check-secret", algorithms), {"trunk1": "pw1"}
    )
    transport, _ = await loop.create_datagram_endpoint(
        lambda: registrar, local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PHONE,
            str(port),
            "trunk1",
            password,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode(errors="replace")
        code = next(
            int(line.split()[1]) for line in out.decode().splitlines() if line.startswith("REGCODE")
        )
        return code, registrar
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("algorithms", "used"),
    [
        ([DigestAlgorithm.MD5], "MD5"),
        ([DigestAlgorithm.SHA256], "SHA-256"),
    ],
)
async def test_pjsua2_registers_with_digest(algorithms: list[DigestAlgorithm], used: str) -> None:
    code, registrar = await register(algorithms, "pw1")
    assert code == 200
    assert registrar.results[0] == (DigestStatus.OK, used)


async def test_pjsua2_answers_one_of_two_challenges() -> None:
    """RFC 8760 §2.4: we offer SHA-256 then MD5; the UA answers one it supports."""
    code, registrar = await register([DigestAlgorithm.SHA256, DigestAlgorithm.MD5], "pw1")
    assert code == 200
    status, used = registrar.results[0]
    assert status is DigestStatus.OK and used in ("SHA-256", "MD5")
    print("pjsua2 chose", used)


async def test_pjsua2_wrong_password_is_refused() -> None:
    code, registrar = await register([DigestAlgorithm.MD5], "not-the-password")
    assert code == 403
    assert registrar.results and registrar.results[0][0] is DigestStatus.FAILED
