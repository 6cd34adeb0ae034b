"""Callback-email tracking end to end (issue 12 §5), real peers only: a pjsua2 caller calls a
tracking number and an operator answers; the notification email, received by aiosmtpd,
shows a leased callback number instead of the caller's; a second pjsua2 phone (the office
calling back) dials that number; the server dials the original caller through the trunk's
``outbound_uri`` and the caller's phone rings and answers; the call log shows a callback
attributed to the original call and its medium, and the medium report counts it there. A
pool number with no lease refuses the call with 410 Gone. One server, four short calls."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import StartServer
from peers_plugin import StartPhone

pytestmark = [pytest.mark.e2e]

NUMBER = "0312345678"  # the advertised tracking number (static [[numbers]])
CALLER = "09011110001"  # the customer's mobile: +819011110001
OFFICE = "0312340000"  # the business calling the customer back
POOL = ("+81355550001", "+81355550002")
BUSINESS_FILE = """
[business]
slug = "acme"
[callback]
trunk = "carrier-a"
lease = 3600
[[numbers]]
number = "03-5555-0001"
callback = true
[[numbers]]
number = "03-5555-0002"
callback = true
"""


def national(e164: str) -> str:
    return "0" + e164.removeprefix("+81")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with socket.socket() as probe:  # aiosmtpd's start() connects to its port: pick one first
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "mediasrv", *args], check=True,
                          capture_output=True, text=True).stdout  # fmt: skip


def _text_of(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


async def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def _call_and_hang_up(phone: Any, uri: str) -> None:
    await phone.dial(uri)
    await phone.wait_event("state", state="CONFIRMED", timeout=10)
    await asyncio.sleep(0.5)
    await phone.command("hangup")
    await phone.wait_event("disconnected", timeout=10)


async def test_a_callback_through_the_emailed_number_reaches_the_caller(
    tmp_path: Path, start_server: StartServer, start_phone: StartPhone, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    workdir = tmp_path / "srv"
    data_dir = workdir / "var"
    business_file = tmp_path / "acme.toml"
    business_file.write_text(BUSINESS_FILE)
    _cli("business", "apply", str(business_file), "--data-dir", str(data_dir))
    _cli("webhooks", "add", "--data-dir", str(data_dir), "--business", "acme",
         "--url", "mailto:office@example.com?lang=ja")  # fmt: skip
    operator = await start_phone("operator", auto_answer="200")
    caller = await start_phone(CALLER, auto_answer="200")  # answers the callback
    office = await start_phone(OFFICE)
    server = start_server(
        numbers=[{"number": NUMBER, "business": "acme", "medium": "新聞", "campaign": "冬",
                  "destinations": [operator.uri], "record": "off"}],
        trunks=[{"name": "carrier-a", "addresses": ["127.0.0.1/32"],
                 "outbound_uri": f"sip:{{national}}@127.0.0.1:{caller.port}"}],
        extra_sections={"notify.smtp": {"host": "127.0.0.1", "port": smtp_port}},
        workdir=workdir,
    )  # fmt: skip
    host = server.sip_uri_host

    # 1. the customer calls the advertised number; the email shows a callback number
    await _call_and_hang_up(caller, f"sip:{NUMBER}@{host}")
    await _until(lambda: inbox.messages, 20, "no email arrived")
    body = _text_of(inbox.messages[0])
    assert POOL[0] in body, body
    assert "+819011110001" not in body, body  # the caller's own number is not shown
    [original] = server.calls(10)
    assert original["caller_number"] == "+819011110001" and original["callback_of"] == ""

    # 2. the office calls the emailed number: the customer's phone rings and answers
    await office.dial(f"sip:{national(POOL[0])}@{host}")
    incoming = await caller.wait_event("incoming", timeout=10)
    assert "0312340000" in str(incoming["remote"])  # the office's number, as it called
    await office.wait_event("state", state="CONFIRMED", timeout=10)
    await asyncio.sleep(0.5)
    await office.command("hangup")
    await office.wait_event("disconnected", timeout=10)

    # 3. a pool number leased to nobody refuses the call, clearly
    await office.dial(f"sip:{national(POOL[1])}@{host}")
    gone = await office.wait_event("disconnected", timeout=10)
    assert gone["code"] == 410, gone

    await _until(lambda: len(server.calls(10)) >= 3
                 and all(c["disposition"] != "in-progress" for c in server.calls(10)),
                 20, "the callback rows were not logged")  # fmt: skip
    rows = {c["tracking_number"]: c for c in server.calls(10)}
    # the tracking number is logged as the business store keeps it (E.164), as every call
    callback = rows[POOL[0]]
    assert callback["callback_of"] == original["call_id"]
    assert (callback["medium"], callback["campaign"]) == ("新聞", "冬")
    assert callback["disposition"] == "answered" and "callback" in callback["flags"]
    assert callback["operator_uri"].startswith("sip:09011110001@")  # type: ignore[union-attr]
    refused = rows[POOL[1]]
    assert refused["sip_code"] == 410 and refused["end_reason"] == "callback-expired"
    assert refused["callback_of"] == ""

    # 4. the report counts the callback under the original call's medium
    report = server.get_json("/api/v1/reports/medium?business=acme")
    assert isinstance(report, dict)
    by_medium = {r["medium"]: r for r in report["rows"]}
    assert by_medium["新聞"]["calls"] == 2 and by_medium["新聞"]["callbacks"] == 1, report
    metrics = server.metrics()
    assert metrics['mediasrv_callback_leases_total{result="new"}'] == 1.0
    assert metrics['mediasrv_callback_calls_total{result="forwarded"}'] == 1.0
    assert metrics['mediasrv_callback_calls_total{result="refused"}'] == 1.0
    # the v1 API (the business's own paths) shows the attribution too
    token = _cli("token", "create", "--data-dir", str(data_dir), "--business", "acme").split()[-1]
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/api/v1/businesses/acme/calls/{callback['call_id']}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        assert json.loads(r.read())["callback_of"] == original["call_id"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}/api/v1/businesses/acme/callback-leases",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        leases = {x["number"]: x for x in json.loads(r.read())["items"]}
    assert leases[POOL[0]]["active"] and leases[POOL[0]]["call_id"] == original["call_id"]
    assert leases[POOL[0]]["caller"] == "+819011110001" and leases[POOL[0]]["medium"] == "新聞"
    assert not leases[POOL[1]]["active"] and leases[POOL[1]]["caller"] is None
