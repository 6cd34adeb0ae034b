"""One digit stream per leg (issue 9 §4) through the running server with real pjsua2 phones:
a key sent as RFC 4733, as tones, as SIP INFO, and two or three ways at once, is in the call
log once per press. The server's "dtmf duplicate merged" lines give the offsets between the
reports of one press that the suppression window must cover (bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import StartServer
from dtmf_pcap import write_pcap
from peers_plugin import StartPhone, needs_sipp
from test_e2e_phones import assert_idle, route_to, tracking_uri, wait_rows

from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import SippOptions, SippRun, free_port, run_sipp, sipp_path

pytest.importorskip("pjsua2")
pytestmark = [pytest.mark.e2e]

# (key, the ways the caller's phone sends it at once)
PRESSES = [
    ("1", ["rfc4733"]),
    ("2", ["inband"]),
    ("3", ["info"]),
    ("4", ["rfc4733", "inband"]),
    ("5", ["rfc4733", "info"]),
    ("6", ["inband", "info"]),
    ("7", ["rfc4733", "inband", "info"]),
]


def _log(server: ServerProcess, msg: str) -> list[dict[str, object]]:
    out = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") == msg:
            out.append(record)
    return out


async def _wait_digits(server: ServerProcess, count: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(_log(server, "dtmf digit")) < count:
        if loop.time() > deadline:
            raise AssertionError(
                f"{len(_log(server, 'dtmf digit'))} digits of {count}:\n{server.log_tail(3000)}"
            )
        await asyncio.sleep(0.05)


async def test_each_press_is_reported_once_whatever_carried_it(
    start_server: StartServer, start_phone: StartPhone
) -> None:
    operator = await start_phone("operator", auto_answer="200", answer_delay=0.2)
    caller = await start_phone("caller")
    server = start_server(numbers=route_to(operator))
    await caller.dial(tracking_uri(server))
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await caller.wait_event("media_active", timeout=10)
    await asyncio.sleep(0.5)  # the operator's media is up too
    for n, (key, methods) in enumerate(PRESSES, start=1):
        await caller.command("dtmf", digits=key, methods=methods)
        await _wait_digits(server, n)
        # Longer than the tone (200 ms) plus the merge window (200 ms): a duplicate report
        # of this press would be in the log before the next key.
        await asyncio.sleep(0.8)
        assert len(_log(server, "dtmf digit")) == n, (key, methods, server.log_tail(3000))
    await caller.command("hangup")
    await operator.wait_event("disconnected", timeout=10)
    rows = await wait_rows(server, 1)
    assert rows[0]["dtmf"] == "".join(key for key, _ in PRESSES)

    sources = [str(r["source"]) for r in _log(server, "dtmf digit")]
    for (key, methods), source in zip(PRESSES, sources, strict=True):
        expected = "rfc4733" if "rfc4733" in methods else None
        if expected is not None:  # RFC 4733 wins whenever it was sent
            assert source == expected, (key, methods, source)
        else:
            assert source in methods, (key, methods, source)
    merged = _log(server, "dtmf duplicate merged")
    assert merged, "no press was sent two ways that both arrived"
    offsets = [abs(float(str(r["offset_ms"]))) for r in merged]
    print("MERGED", [(r["kept"], r["dropped"], r["offset_ms"]) for r in merged])
    assert max(offsets) <= 200.0  # within the window, or they would be two digits
    await assert_idle(server)


def _gateway_scenario(tmp_path: Path, pcap: Path, seconds: float) -> Path:
    """SIPp's own uac_pcap (its SDP offers PCMA and telephone-event 101), playing our pcap."""
    # SIPp exits 99 after dumping a scenario: the XML on stdout is what counts.
    text = subprocess.run(
        [sipp_path(), "-sd", "uac_pcap"], capture_output=True, text=True, check=False
    ).stdout
    assert "play_pcap_audio" in text, "sipp -sd uac_pcap printed no scenario"
    text = text.replace("pcap/g711a.pcap", str(pcap))
    text = re.sub(r"<nop>\s*<action>\s*<exec play_pcap_audio=\"pcap/dtmf_2833_1.pcap\"/>"
                  r"\s*</action>\s*</nop>", "", text)
    text = text.replace('<pause milliseconds="8000"/>', f'<pause milliseconds="{int(seconds * 1000)}"/>')
    path = tmp_path / "uac_gateway.xml"
    path.write_text(text)
    return path


@needs_sipp
async def test_a_gateway_sending_tones_and_rfc4733_gives_each_press_once(
    tmp_path: Path, start_server: StartServer
) -> None:
    """SIPp plays a pcap of a gateway that does not mute: every key is in the audio AND sent
    as RFC 4733 at the same time ("1 1" quickly included). One digit per press, the RFC 4733
    one; the merge lines measure how far the tone report lags the event's end."""
    plan: list[tuple[str | None, int]] = [(None, 1000)]
    for key in "5", "9", "#", "1", "1", "0":
        plan += [(key, 120), (None, 120 if key == "1" else 400)]
    plan.append((None, 600))
    pcap = tmp_path / "gateway.pcap"
    pressed = write_pcap(pcap, plan)
    seconds = sum(ms for _, ms in plan) / 1000
    uas_port = free_port()
    numbers = [{"number": "0312345678", "business": "acme", "medium": "web",
                "destinations": [f"sip:operator@127.0.0.1:{uas_port}"]}]
    server = start_server(numbers=numbers)
    uas = await SippRun.start(
        SippOptions(scenario="uas", name="uas", local_port=uas_port, calls=1, timeout_s=60),
        tmp_path / "uas",
    )
    try:
        result = await run_sipp(
            SippOptions(
                scenario=_gateway_scenario(tmp_path, pcap, seconds + 0.5),
                name="uac",
                remote=server.sip_uri_host,
                service="0312345678",
                calls=1,
                timeout_s=60,
            ),
            tmp_path / "uac",
        )
    finally:
        await uas.wait(30)
    assert result.stats.successful == 1, result.describe() + result.errors_tail()
    rows = await wait_rows(server, 1)
    assert rows[0]["dtmf"] == "".join(pressed), (rows[0]["dtmf"], server.log_tail(3000))
    assert {str(r["source"]) for r in _log(server, "dtmf digit")} == {"rfc4733"}
    merged = _log(server, "dtmf duplicate merged")
    print("MERGED", [(r["kept"], r["dropped"], r["offset_ms"]) for r in merged])
    assert len(merged) == len(pressed)  # every tone was detected, and merged with its event
    assert all(r["dropped"] == "inband" for r in merged)
    await assert_idle(server)
