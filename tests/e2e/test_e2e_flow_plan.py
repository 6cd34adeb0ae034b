"""The plan interpreter in the running server (``[calls] interpreter = "plan"``) with SIPp as
caller and operators: calls answered through the plan, busy moving on to the next target at
once, and the call log learning the attempts, on the engine of today (plans without prompts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import StartServer
from peers_plugin import needs_sipp, sipp_scenario

from mediasrv.demo.sipp import SippOptions, SippRun, free_port, run_sipp

pytestmark = [needs_sipp, pytest.mark.e2e]

NUMBER = "0312345678"
PLAN = {"calls": {"interpreter": "plan"}}


async def start_uas(tmp_path: Path, scenario: str, port: int, calls: int, name: str) -> SippRun:
    opts = SippOptions(
        scenario=sipp_scenario(scenario) if scenario.endswith(".xml") else scenario,
        name=name,
        local_port=port,
        calls=calls,
        timeout_s=60,
    )
    return await SippRun.start(opts, tmp_path / name)


async def test_calls_through_the_plan_are_answered_and_logged(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    number = {
        "number": NUMBER,
        "business": "acme",
        "medium": "web",
        "destinations": [f"sip:operator@127.0.0.1:{uas_port}"],
    }
    server = start_server(numbers=[number], extra_sections=PLAN)
    uas = await start_uas(tmp_path, "uas", uas_port, 20, "uas")
    try:
        result = await run_sipp(
            SippOptions(
                scenario="uac",
                name="uac",
                remote=server.sip_uri_host,
                service=NUMBER,
                calls=20,
                rate=10,
                hold_ms=200,
                timeout_s=60,
            ),
            tmp_path / "uac",
        )
    finally:
        uas_result = await uas.wait(30)
    assert result.stats.successful == 20, result.describe() + result.errors_tail()
    assert uas_result.stats.successful == 20, uas_result.describe()
    assert not any(server.wait_idle(20).values())
    rows = server.calls(100)
    assert len(rows) == 20 and {r["disposition"] for r in rows} == {"answered"}
    row = rows[0]
    assert row["medium"] == "web" and row["sip_code"] == 200
    assert row["end_reason"] == "caller-bye"
    assert [a["code"] for a in row["attempts"]] == [200]
    assert row["answer_time"] is not None and row["talk_seconds"] > 0
    assert row["media_stats"]["engine"] and "caller" in row["media_stats"]["legs"]


async def test_busy_first_target_moves_on_at_once_to_the_second(
    tmp_path: Path, start_server: StartServer
) -> None:
    busy_port, ok_port = free_port(), free_port()
    number = {
        "number": NUMBER,
        "business": "acme",
        "destinations": [
            f"sip:busy@127.0.0.1:{busy_port}",
            f"sip:operator@127.0.0.1:{ok_port}",
        ],
        "ring_timeout": 10.0,
    }
    server = start_server(numbers=[number], extra_sections=PLAN)
    busy = await start_uas(tmp_path, "uas_486.xml", busy_port, 3, "busy")
    ok = await start_uas(tmp_path, "uas", ok_port, 3, "ok")
    try:
        result = await run_sipp(
            SippOptions(
                scenario="uac",
                name="uac",
                remote=server.sip_uri_host,
                service=NUMBER,
                calls=3,
                rate=2,
                hold_ms=200,
                timeout_s=60,
            ),
            tmp_path / "uac",
        )
    finally:
        await busy.stop()
        await ok.wait(30)
    assert result.stats.successful == 3, result.describe() + result.errors_tail()
    assert not any(server.wait_idle(20).values())
    rows = server.calls(10)
    assert [r["disposition"] for r in rows] == ["answered"] * 3
    for row in rows:
        codes = [a["code"] for a in row["attempts"]]
        assert codes == [486, 200], row["attempts"]
        assert row["attempts"][0]["result"] == "busy"
        assert row["attempts"][0]["ring_seconds"] < 5.0  # 486 moves on at once, not at 10 s
        assert row["operator_uri"] == f"sip:operator@127.0.0.1:{ok_port}"


async def test_no_answer_times_out_each_target_and_the_caller_gets_480(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    number = {
        "number": NUMBER,
        "destinations": [f"sip:operator@127.0.0.1:{uas_port}"],
        "ring_timeout": 1.0,
    }
    server = start_server(numbers=[number], extra_sections=PLAN)
    uas = await start_uas(tmp_path, "uas_noanswer.xml", uas_port, 2, "uas")
    try:
        result = await run_sipp(
            SippOptions(
                scenario=sipp_scenario("uac_expect_failure.xml"),
                name="uac",
                remote=server.sip_uri_host,
                service=NUMBER,
                calls=2,
                rate=2,
                timeout_s=30,
                trace_logs=True,
            ),
            tmp_path / "uac",
        )
    finally:
        await uas.stop()
    assert result.final_codes() == [480, 480], result.describe() + result.errors_tail()
    assert not any(server.wait_idle(20).values())
    rows = server.calls(10)
    assert [r["disposition"] for r in rows] == ["no-answer"] * 2
    assert all([a["code"] for a in r["attempts"]] == [408] for r in rows)
