"""Issue 11 end to end: a real pjsua2 caller from a Sapporo number (011...) through a real
mediasrv process shows 北海道 in the call log and in the report by prefecture; its repeat
call within the business's window is a duplicate."""

from __future__ import annotations

import asyncio

import pytest
from conftest import StartServer
from peers_plugin import StartPhone
from test_e2e_phones import route_to, tracking_uri, wait_rows

pytestmark = [pytest.mark.e2e]

SAPPORO = "0112111111"  # the caller phone's SIP user part: sip:0112111111@127.0.0.1


async def test_sapporo_caller_prefecture_report_and_duplicate(
    start_server: StartServer, start_phone: StartPhone
) -> None:
    operator = await start_phone("operator", auto_answer="200")
    caller = await start_phone(SAPPORO)
    server = start_server(numbers=route_to(operator))
    for n in (1, 2):
        await caller.dial(tracking_uri(server))
        await caller.wait_event("state", state="CONFIRMED", timeout=10)
        await caller.command("hangup")
        await caller.wait_event("disconnected", timeout=10)
        await operator.wait_event("disconnected", timeout=10)
        rows = await wait_rows(server, n)
        assert len(rows) == n
    second, first = rows  # newest first
    for row in rows:
        assert row["caller_number"] == "+81112111111"
        assert (row["caller_kind"], row["caller_area"]) == ("fixed", "札幌")
        assert (row["prefecture_code"], row["prefecture"]) == ("01", "北海道")
        assert row["disposition"] == "answered" and row["caller_source"] == "from"
    assert (first["duplicate"], first["first_time"], first["repeat_count"]) == (False, True, 0)
    assert (second["duplicate"], second["first_time"], second["repeat_count"]) == (True, False, 1)
    assert first["valid"] is False  # a few seconds of talk: under the 60 s default

    since = float(first["start_time"]) - 1  # type: ignore[arg-type]
    report = await asyncio.to_thread(
        server.get_json, f"/api/v1/reports/prefecture?since={since}&business=acme"
    )
    assert isinstance(report, dict)
    by_pref = {r["prefecture"]: r for r in report["rows"]}
    assert set(by_pref) == {"北海道"}
    hokkaido = by_pref["北海道"]
    assert (hokkaido["calls"], hokkaido["answered"], hokkaido["first_time"]) == (2, 2, 1)
    assert hokkaido["prefecture_code"] == "01" and hokkaido["answer_rate"] == 1.0
    info = await asyncio.to_thread(server.get_json, "/api/v1/number-info/011-211-1111")
    assert isinstance(info, dict) and info["prefecture"] == "北海道"
