"""Cross-check DigestServer with SIPp's ``[authentication]`` keyword (MD5: SIPp 3.6.1 supports
no other digest algorithm, and it answers the first challenge it is given)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import cast

import pytest

from mediasrv.sip.digest import DigestAlgorithm, DigestServer, DigestStatus
from mediasrv.sip.message import Request, make_response, new_tag, serialize
from mediasrv.sip.parser import SipParseError, parse_message

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
]

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register with digest">
  <send retrans="500"><![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:trunk1@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:trunk1@[local_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: sip:trunk1@[local_ip]:[local_port]
      Expires: 60
      Content-Length: 0

  ]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:trunk1@[local_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:trunk1@[local_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: sip:trunk1@[local_ip]:[local_port]
      [authentication]
      Expires: 60
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


class Registrar(asyncio.DatagramProtocol):
    def __init__(self, server: DigestServer) -> None:
        self.server = server
        self.results: list[DigestStatus] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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
            result = self.server.verify(auth, req.method, {"trunk1": "pw1"}.get, req.uri)
            self.results.append(result.status)
            resp = make_response(req, 200 if result.ok else 403, to_tag=new_tag())
        self.transport.sendto(serialize(resp), addr)


async def run_sipp(tmp_path: Path, password: str) -> tuple[int, list[DigestStatus]]:
    scenario = tmp_path / "register_auth.xml"
    scenario.write_text(SCENARIO)
    loop = asyncio.get_running_loop()
    registrar = Registrar(
        DigestServer("trunk.test", b"sipp-cross-check-secret", [DigestAlgorithm.MD5])
    )
    transport, _ = await loop.create_datagram_endpoint(
        lambda: registrar, local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(scenario), "-m", "1", "-i", "127.0.0.1", "-p", "0",
            f"127.0.0.1:{port}", "-au", "trunk1", "-ap", password,
            "-timeout", "10", "-nostdin", "-trace_err", "-error_file", str(tmp_path / "err.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=tmp_path,
        )  # fmt: skip
        try:
            rc = await asyncio.wait_for(proc.wait(), timeout=20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        return rc, registrar.results
    finally:
        transport.close()


async def test_sipp_md5_digest_accepted(tmp_path: Path) -> None:
    rc, results = await run_sipp(tmp_path, "pw1")
    assert results == [DigestStatus.OK]
    assert rc == 0  # SIPp exit 0: every call succeeded


async def test_sipp_wrong_password_refused(tmp_path: Path) -> None:
    rc, results = await run_sipp(tmp_path, "wrong")
    assert results == [DigestStatus.FAILED]
    assert rc != 0  # the scenario expected 200 and got 403
