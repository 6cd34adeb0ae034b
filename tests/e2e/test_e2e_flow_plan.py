"""The plan interpreter in the running server (``[calls] interpreter = "plan"``) with SIPp as
caller and operators: calls answered through the plan, busy moving on to the next target at
once, and the call log learning the attempts, on the engine of today (plans without prompts).
One server for the module; each scenario has its own number and its own SIPp operators."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import StartServer
from peers_plugin import needs_sipp
from sipp_calls import NUMBER, call_through, calls_of, number_to, operator_at, start_uas

from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import free_port

pytestmark = [needs_sipp, pytest.mark.e2e]

BUSY_FIRST, NO_ANSWER = "0312340486", "0312340480"
PLAN = {"calls": {"interpreter": "plan"}}


@dataclass
class Plan:
    server: ServerProcess
    ports: dict[str, int]


@pytest.fixture(scope="module")
def plan(start_module_server: StartServer) -> Plan:
    ports = {name: free_port() for name in ("answer", "busy", "ok", "no_answer")}
    numbers = [
        number_to(operator_at(ports["answer"]), business="acme", medium="web"),
        number_to(
            operator_at(ports["busy"], "busy"),
            operator_at(ports["ok"]),
            number=BUSY_FIRST,
            business="acme",
            ring_timeout=10.0,
        ),
        number_to(operator_at(ports["no_answer"]), number=NO_ANSWER, ring_timeout=1.0),
    ]
    return Plan(start_module_server(numbers=numbers, extra_sections=PLAN), ports)


async def test_calls_through_the_plan_are_answered_and_logged(tmp_path: Path, plan: Plan) -> None:
    server = plan.server
    uas = await start_uas(tmp_path, plan.ports["answer"], 20)
    try:
        result = await call_through(server, tmp_path, 20, rate=10, hold_ms=200, timeout_s=60)
    finally:
        uas_result = await uas.wait(30)
    assert result.stats.successful == 20, result.describe() + result.errors_tail()
    assert uas_result.stats.successful == 20, uas_result.describe()
    assert not any(server.wait_idle(20).values())
    rows = calls_of(server, NUMBER)
    assert len(rows) == 20 and {r["disposition"] for r in rows} == {"answered"}
    row = rows[0]
    assert row["medium"] == "web" and row["sip_code"] == 200
    assert row["end_reason"] == "caller-bye"
    assert [a["code"] for a in row["attempts"]] == [200]
    assert row["answer_time"] is not None and row["talk_seconds"] > 0
    assert row["media_stats"]["engine"] and "caller" in row["media_stats"]["legs"]


async def test_busy_first_target_moves_on_at_once_to_the_second(tmp_path: Path, plan: Plan) -> None:
    server = plan.server
    busy = await start_uas(tmp_path, plan.ports["busy"], 3, "uas_486.xml", name="busy")
    ok = await start_uas(tmp_path, plan.ports["ok"], 3, name="ok")
    try:
        result = await call_through(
            server, tmp_path, 3, service=BUSY_FIRST, rate=2, hold_ms=200, timeout_s=60
        )
    finally:
        await busy.stop()
        await ok.wait(30)
    assert result.stats.successful == 3, result.describe() + result.errors_tail()
    assert not any(server.wait_idle(20).values())
    rows = calls_of(server, BUSY_FIRST)
    assert [r["disposition"] for r in rows] == ["answered"] * 3
    for row in rows:
        codes = [a["code"] for a in row["attempts"]]
        assert codes == [486, 200], row["attempts"]
        assert row["attempts"][0]["result"] == "busy"
        assert row["attempts"][0]["ring_seconds"] < 5.0  # 486 moves on at once, not at 10 s
        assert row["operator_uri"] == operator_at(plan.ports["ok"])


async def test_no_answer_times_out_each_target_and_the_caller_gets_480(
    tmp_path: Path, plan: Plan
) -> None:
    server = plan.server
    uas = await start_uas(tmp_path, plan.ports["no_answer"], 2, "uas_noanswer.xml")
    try:
        result = await call_through(
            server,
            tmp_path,
            2,
            scenario="uac_expect_failure.xml",
            service=NO_ANSWER,
            rate=2,
            trace_logs=True,
        )
    finally:
        await uas.stop()
    assert result.final_codes() == [480, 480], result.describe() + result.errors_tail()
    assert not any(server.wait_idle(20).values())
    rows = calls_of(server, NO_ANSWER)
    assert [r["disposition"] for r in rows] == ["no-answer"] * 2
    assert all([a["code"] for a in r["attempts"]] == [408] for r in rows)
