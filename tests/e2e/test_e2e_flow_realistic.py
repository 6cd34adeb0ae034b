"""SIPp through the realistic flow of issue 10 (``mediasrv.demo.flows``), with the flow taken
from the business store: blocklist, business hours, round-robin over two operators, and a
whisper to the operator who answers (mixed into the operator's leg while the caller hears
ringback; the caller is answered and bridged when it ends). 1,000 calls with 0 failures, the
rotation from the store splitting them evenly, every bridge at least the whisper's length after
the operator's answer, the call log learning the flow (version, path, rules, phases, who hung
up), and a blocked caller refused with the number's code. Bounded: 1,000 calls at 100 cps,
every SIPp run under a timeout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import StartServer
from peers_plugin import needs_sipp, sipp_scenario

from mediasrv.demo.flows import (
    BLOCKED_CALLER,
    REALISTIC_NUMBER,
    WHISPER_SECONDS,
    realistic_business_toml,
    write_whisper_wav,
)
from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import SippOptions, SippRun, free_port, run_sipp

pytestmark = [needs_sipp, pytest.mark.e2e]

CALLS = 1000
RATE = 100
PAGE = 500
PLAN = {"calls": {"interpreter": "plan"}}


def apply_business(data_dir: Path, toml: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir.parent / "realistic.toml"
    path.write_text(toml, encoding="utf-8")
    command = ["business", "apply", str(path), "--data-dir", str(data_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "mediasrv", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "new version 1" in done.stdout


async def start_uas(tmp_path: Path, port: int, name: str) -> SippRun:
    opts = SippOptions(scenario="uas", name=name, local_port=port, calls=CALLS, timeout_s=120)
    return await SippRun.start(opts, tmp_path / name)


def blocked_caller_scenario(tmp_path: Path) -> Path:
    """``uac_expect_failure.xml`` with the From user a number on the blocklist."""
    text = sipp_scenario("uac_expect_failure.xml").read_text()
    assert "sip:sipp@" in text
    path = tmp_path / "uac_blocked.xml"
    path.write_text(text.replace("sip:sipp@", f"sip:{BLOCKED_CALLER}@"))
    return path


def all_calls(server: ServerProcess) -> list[dict[str, Any]]:
    """Every row of the call log, through /api/v1/calls pages."""
    rows: list[dict[str, Any]] = []
    while True:
        page = server.get_json(f"/api/v1/calls?limit={PAGE}&offset={len(rows)}")
        assert isinstance(page, dict)
        rows.extend(page["calls"])
        if len(page["calls"]) < PAGE:
            return rows


@pytest.mark.slow
async def test_thousand_calls_through_the_realistic_flow(
    tmp_path: Path, start_server: StartServer
) -> None:
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    targets = (f"sip:op-a@127.0.0.1:{port_a}", f"sip:op-b@127.0.0.1:{port_b}")
    workdir = tmp_path / "server0"
    whisper = write_whisper_wav(tmp_path / "whisper.wav")
    apply_business(workdir / "var", realistic_business_toml(targets, whisper_file=whisper))
    server = start_server(workdir=workdir, extra_sections=PLAN)
    uas_a = await start_uas(tmp_path, port_a, "uas-a")
    uas_b = await start_uas(tmp_path, port_b, "uas-b")
    try:
        result = await run_sipp(
            SippOptions(
                scenario="uac",
                name="uac",
                remote=server.sip_uri_host,
                service=REALISTIC_NUMBER,
                calls=CALLS,
                rate=RATE,
                limit=200,
                hold_ms=100,
                timeout_s=120,
            ),
            tmp_path / "uac",
        )
        blocked = await run_sipp(
            SippOptions(
                scenario=blocked_caller_scenario(tmp_path),
                name="blocked",
                remote=server.sip_uri_host,
                service=REALISTIC_NUMBER,
                calls=3,
                rate=3,
                timeout_s=30,
                trace_logs=True,
            ),
            tmp_path / "blocked",
        )
    finally:
        await uas_a.stop()
        await uas_b.stop()
    assert result.stats.successful == CALLS, result.describe() + result.errors_tail()
    assert result.stats.failed == 0, result.describe()
    assert blocked.final_codes() == [603] * 3, blocked.describe() + blocked.errors_tail()
    assert not any(server.wait_idle(30).values())

    rows = all_calls(server)
    answered = [r for r in rows if r["disposition"] == "answered"]
    refused = [r for r in rows if r["disposition"] == "blocked"]
    assert len(answered) == CALLS and len(refused) == 3
    # round robin from the store's rotation: the two operators share the calls evenly
    by_operator = {t: sum(r["operator_uri"] == t for r in answered) for t in targets}
    assert all(abs(n - CALLS / 2) <= CALLS * 0.05 for n in by_operator.values()), by_operator
    row = answered[0]
    assert row["tracking_number"] == "+81312340000"
    assert row["flow_version"] == 1
    assert "blocklist=no" in row["flow_rules"] and "hours:always=open" in row["flow_rules"]
    assert any(step.startswith("dial") for step in row["flow_path"]), row["flow_path"]
    phases = row["phases"]
    assert phases["received"] <= phases["bridged"] <= phases["ended"]
    assert row["hung_up_by"] == "caller" and row["attempts"][-1]["code"] == 200
    # the whisper played to the operator before every bridge (a missing or failed prompt would
    # bridge at once and flag the row); the engine paces it in real time, so this is a floor
    whispered = [r["phases"]["bridged"] - r["attempts"][-1]["end"] for r in answered]
    assert min(whispered) >= WHISPER_SECONDS - 0.05, min(whispered)
    assert not [r["call_id"] for r in answered if "flow-failures" in r["flags"]]
    assert refused[0]["sip_code"] == 603 and refused[0]["hung_up_by"] == "system"


def wait_for_log(server: ServerProcess, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in server.log_path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {needle!r} in the log within {timeout} s:\n{server.log_tail()}")


def wait_for_answer(server: ServerProcess, timeout: float) -> None:
    """Until the call log has a call in progress that an operator answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(
            r["disposition"] == "in-progress" and r["answer_time"] for r in server.calls(10)
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"no answered call in progress within {timeout} s")


@pytest.mark.timeout(120)
async def test_an_apply_during_a_call_changes_only_new_calls(
    tmp_path: Path, start_server: StartServer
) -> None:
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    old = (f"sip:op-a@127.0.0.1:{port_a}", f"sip:op-b@127.0.0.1:{port_a}")
    new = (f"sip:op-a@127.0.0.1:{port_b}", f"sip:op-b@127.0.0.1:{port_b}")
    workdir = tmp_path / "server0"
    apply_business(workdir / "var", realistic_business_toml(old))
    server = start_server(
        workdir=workdir, extra_sections=PLAN, store={"business_refresh_interval": 0.2}
    )
    uas_a = await start_uas(tmp_path, port_a, "uas-a")
    uas_b = await start_uas(tmp_path, port_b, "uas-b")

    def caller(name: str, hold_ms: int) -> SippOptions:
        return SippOptions(
            scenario="uac",
            name=name,
            remote=server.sip_uri_host,
            service=REALISTIC_NUMBER,
            calls=1,
            hold_ms=hold_ms,
            timeout_s=60,
        )

    try:
        long_call = await SippRun.start(caller("long", 6000), tmp_path / "long")
        await asyncio.to_thread(wait_for_answer, server, 10.0)
        (workdir / "realistic.toml").write_text(realistic_business_toml(new), encoding="utf-8")
        command = ["business", "apply", str(workdir / "realistic.toml")]
        done = subprocess.run(
            [sys.executable, "-m", "mediasrv", *command, "--data-dir", str(workdir / "var")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and "new version 2" in done.stdout, done.stderr
        await asyncio.to_thread(
            wait_for_log, server, "business configuration changed: reloaded", 10.0
        )
        short = await run_sipp(caller("short", 100), tmp_path / "short")
        first = await long_call.wait(30)
    finally:
        await uas_a.stop()
        await uas_b.stop()
    assert first.stats.successful == 1, first.describe() + first.errors_tail()
    assert short.stats.successful == 1, short.describe() + short.errors_tail()
    assert not any(server.wait_idle(20).values())
    rows = sorted(all_calls(server), key=lambda r: r["start_time"])
    assert [(r["flow_version"], r["disposition"]) for r in rows] == [
        (1, "answered"),
        (2, "answered"),
    ]
    assert rows[0]["operator_uri"] in old and rows[1]["operator_uri"] in new
