"""The operators' registrar through the running server: a real pjsua2 account registers
(digest), re-registers and unregisters; a raw UA queries the bindings (a REGISTER without
Contact, RFC 3261 §10.2.3); bindings survive a restart in SQLite; malformed REGISTERs get
400 and the server carries on; with the registrar off, REGISTER still gets 405."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import FAST_SIP, StartServer
from peers_plugin import needs_sipp
from sipp_calls import call_through

from mediasrv.demo.server import ServerProcess
from mediasrv.sip.digest import DigestClient, DigestCredentials
from mediasrv.sip.message import Response
from mediasrv.sip.parser import parse_message

pytest.importorskip("pjsua2")
pytestmark = [pytest.mark.e2e]

USER, PASSWORD = "alice", "wonder-land"
DATA = Path(__file__).parent.parent / "data" / "sip" / "register"

# One pjsua2 Endpoint per process (TOOLS.md): the phone is a child interpreter that obeys
# "register" / "unregister" / "quit" on stdin and prints each registration state.
PHONE = r"""
import select, sys, time
import pjsua2 as pj

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Account(pj.Account):
    def onRegState(self, prm):
        info = self.getInfo()
        print("REG", prm.code, int(info.regIsActive), info.regExpiresSec, flush=True)

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
ac.regConfig.timeoutSec = 120
ac.regConfig.retryIntervalSec = 0
ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
acc = Account()
acc.create(ac)
print("READY", flush=True)
deadline = time.time() + 60
running = True
while running and time.time() < deadline:
    ep.libHandleEvents(20)
    if select.select([sys.stdin], [], [], 0)[0]:
        line = sys.stdin.readline().strip()
        if line == "register":
            acc.setRegistration(True)
        elif line == "unregister":
            acc.setRegistration(False)
        elif line in ("quit", ""):
            running = False
acc.shutdown()
del acc
ep.libDestroy()
"""


class Phone:
    def __init__(self, server: ServerProcess) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PHONE, str(server.sip_port), USER, PASSWORD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def state(self, timeout: float = 10.0) -> tuple[int, bool, int]:
        """The next "REG code active expires" line."""
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
            if not line:
                raise AssertionError("the phone exited")
            if line.startswith("REG "):
                _, code, active, expires = line.split()
                return int(code), active == "1", int(expires)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _exchange(sock: socket.socket, server: ServerProcess, data: bytes) -> Response:
    sock.sendto(data, ("127.0.0.1", server.sip_port))
    while True:
        reply, _ = sock.recvfrom(65535)
        msg = parse_message(reply)
        if isinstance(msg, Response) and msg.status >= 200:
            return msg


def _register_bytes(
    sock: socket.socket, call_id: str, cseq: int, auth: str | None, extra: str = ""
) -> bytes:
    port = sock.getsockname()[1]
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{uuid.uuid4().hex[:12]}",
        "Max-Forwards: 70",
        f"From: <sip:{USER}@127.0.0.1>;tag=q{port}",
        f"To: <sip:{USER}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    if extra:
        lines.append(extra)
    if auth:
        lines.append(f"Authorization: {auth}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


async def query_bindings(server: ServerProcess, password: str = PASSWORD) -> Response:
    """REGISTER without Contact (a query), answering the digest challenge."""

    def run() -> Response:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            call_id = uuid.uuid4().hex
            first = _exchange(sock, server, _register_bytes(sock, call_id, 1, None))
            if first.status != 401:
                return first  # refused before any challenge (the auth guard)
            challenge = first.headers.get_all("WWW-Authenticate")[0]
            auth = DigestClient().authorization(
                challenge, "REGISTER", "sip:127.0.0.1", DigestCredentials(USER, password)
            )
            return _exchange(sock, server, _register_bytes(sock, call_id, 2, auth))

    return await asyncio.to_thread(run)


def contacts(response: Response) -> list[str]:
    return response.headers.get_all("Contact")


def registrar_config(**registrar: object) -> dict[str, object]:
    """The server keywords of a registrar (enabled, with ``registrar`` keys) knowing alice."""
    return {
        "extra_sections": {"registrar": {"enabled": True, **registrar}},
        "extra_tables": {"registrar.users": [{"name": USER, "password": PASSWORD}]},
    }


def registrar_server(start_server: StartServer, workdir: Path | None = None) -> ServerProcess:
    kwargs = registrar_config(min_expires=60)
    if workdir is not None:
        kwargs["workdir"] = workdir
    return start_server(**kwargs)


async def test_pjsua2_registers_reregisters_and_unregisters(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = registrar_server(start_server, tmp_path / "node")
    phone = Phone(server)
    try:
        # pjsua2 reports the expiry less its refresh lead (5 s): what we granted is below.
        assert (await phone.state())[:2] == (200, True)
        [bound] = contacts(await query_bindings(server))
        metrics = await asyncio.to_thread(server.metrics)
        assert metrics["mediasrv_registrar_contacts"] == 1.0
        assert bound.startswith("<sip:alice@127.0.0.1:") and ";expires=" in bound
        assert 110 <= int(bound.rpartition("expires=")[2]) <= 120

        phone.send("register")  # a refresh: the same contact, not a second one
        assert (await phone.state())[:2] == (200, True)
        assert contacts(await query_bindings(server)) == [bound.rpartition(";")[0] + ";expires=120"]

        phone.send("unregister")
        code, active, _ = await phone.state()
        assert (code, active) == (200, False)
        assert contacts(await query_bindings(server)) == []

        phone.send("register")
        assert (await phone.state())[:2] == (200, True)
        # Killed, the phone cannot unregister (pjsua2 does on a clean exit): it stays bound.
        phone.proc.kill()
        phone.proc.wait(10)
    finally:
        phone.close()
    # The binding is in SQLite: a restarted server still knows where alice is.
    assert server.stop() == 0
    again = registrar_server(start_server, tmp_path / "node")
    [kept] = contacts(await query_bindings(again))
    assert kept.startswith("<sip:alice@127.0.0.1:")


async def test_wrong_password_and_malformed_registers_through_the_server(
    start_server: StartServer,
) -> None:
    server = registrar_server(start_server)

    def send_bad(name: str) -> Response:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            text = (DATA / name).read_bytes().decode()
            text = text.replace("{BRANCH}", uuid.uuid4().hex[:10]).replace("{AUTH}\r\n", "")
            return _exchange(sock, server, text.encode())

    for name in ("to_garbage.sip", "cseq_method_mismatch.sip"):
        assert (await asyncio.to_thread(send_bad, name)).status == 400, name
    assert (await query_bindings(server)).status == 200  # still serving

    wrong = await query_bindings(server, password="guess")
    assert (wrong.status, wrong.reason) == (403, "Forbidden (bad credentials)")
    # The auth guard (as for trunks) backs the source off: even the right password waits.
    backed_off = await query_bindings(server)
    assert (backed_off.status, backed_off.reason) == (403, "Forbidden")


@pytest.mark.parametrize("listed", [True, False])
async def test_phones_networks_pass_the_drop_policy_gate(
    start_server: StartServer, listed: bool
) -> None:
    """With a trunk configured and untrusted_source_policy = "drop", strangers' datagrams are
    dropped before parsing; REGISTERs pass only from [registrar] networks."""
    networks = {"networks": ["127.0.0.0/8"]} if listed else {}
    server = start_server(
        trunks=[{"name": "carrier", "addresses": ["192.0.2.1/32"]}],
        sip={**FAST_SIP, "untrusted_source_policy": "drop"},
        **registrar_config(min_expires=60, **networks),
    )
    if listed:
        assert (await query_bindings(server)).status == 200
    else:
        with pytest.raises(TimeoutError):
            await query_bindings(server)


@needs_sipp
async def test_sipp_phones_register_and_unregister_with_digest(
    start_server: StartServer, tmp_path: Path
) -> None:
    """200 SIPp phones, 5 at a time: REGISTER, 401, with credentials 200 listing the
    contact; then Expires: 0 the same way. SIPp answers MD5 only, so the registrar offers
    MD5 here."""
    server = start_server(**registrar_config(algorithms=["MD5"]))
    result = await call_through(
        server,
        tmp_path,
        200,
        scenario="register_auth.xml",
        name="reg",
        service=USER,
        rate=50,
        limit=5,
        timeout_s=60,
        extra=("-au", USER, "-ap", PASSWORD),
    )
    assert result.stats.successful == 200, result.describe() + result.errors_tail()
    assert result.stats.failed == 0
    assert contacts(await query_bindings(server)) == []  # every phone unregistered
    metrics = await asyncio.to_thread(server.metrics)
    assert metrics["mediasrv_registrar_contacts"] == 0.0


async def test_register_gets_405_when_the_registrar_is_off(start_server: StartServer) -> None:
    server = start_server()

    def run() -> Response:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            return _exchange(sock, server, _register_bytes(sock, uuid.uuid4().hex, 1, None))

    response = await asyncio.to_thread(run)
    assert response.status == 405
    assert "REGISTER" not in (response.headers.get("Allow") or "")
