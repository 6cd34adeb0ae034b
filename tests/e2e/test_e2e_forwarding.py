"""Sequential forwarding with real pjsua2 phones: the first operator is busy, the second
answers. Each attempt has its own media leg (issue 9 §1): the busy attempt's leg is released
at once, and the call's audio goes both ways through the second attempt's leg."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import StartServer
from peers_plugin import StartPhone

from mediasrv.demo.audio import correlate_piecewise, read_wav
from mediasrv.demo.server import ServerProcess

pytestmark = [pytest.mark.e2e]

NUMBER = "0312345678"


async def finished_rows(server: ServerProcess, timeout: float = 10.0) -> list[dict[str, object]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    rows = await asyncio.to_thread(server.calls, 10)
    while (not rows or any(r["disposition"] == "in-progress" for r in rows)) and (
        loop.time() < deadline
    ):
        await asyncio.sleep(0.2)
        rows = await asyncio.to_thread(server.calls, 10)
    return rows


async def test_busy_first_operator_then_the_second_answers_with_audio_both_ways(
    start_server: StartServer,
    start_phone: StartPhone,
    speech_wavs: dict[str, Path],
    tmp_path: Path,
) -> None:
    busy = await start_phone("busy", auto_answer="486")
    operator = await start_phone(
        "operator",
        auto_answer="200",
        answer_delay=0.5,
        play=speech_wavs["operator"],
        record=tmp_path / "operator_heard.wav",
    )
    caller = await start_phone(
        "caller", play=speech_wavs["caller"], record=tmp_path / "caller_heard.wav"
    )
    server = start_server(
        numbers=[
            {
                "number": NUMBER,
                "business": "acme",
                "medium": "web",
                "destinations": [busy.uri, operator.uri],
            }
        ]
    )
    await caller.dial(f"sip:{NUMBER}@{server.sip_uri_host}")
    await busy.wait_event("incoming", timeout=10)
    await operator.wait_event("incoming", timeout=10)
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await caller.wait_event("media_active", timeout=10)
    await caller.wait_event("played", timeout=20)
    await operator.wait_event("played", timeout=20)
    await caller.command("hangup")
    await operator.wait_event("disconnected", timeout=10)
    heard_by_operator = Path((await operator.wait_event("recorded"))["path"])
    heard_by_caller = Path((await caller.wait_event("recorded"))["path"])

    up = correlate_piecewise(
        read_wav(speech_wavs["caller"]).samples, read_wav(heard_by_operator).samples
    )
    down = correlate_piecewise(
        read_wav(speech_wavs["operator"]).samples, read_wav(heard_by_caller).samples
    )
    assert up.score >= 0.9 and up.windows >= 6, up
    assert down.score >= 0.9 and down.windows >= 6, down

    rows = await finished_rows(server)
    assert len(rows) == 1
    row = rows[0]
    assert row["disposition"] == "answered" and row["operator_uri"] == operator.uri
    stats = row["media_stats"]
    assert isinstance(stats, dict)
    # The operator leg in the report is the answered attempt's: it latched to the second
    # phone and received its speech (the busy attempt's leg never carried media).
    legs = stats["legs"]
    assert isinstance(legs, dict), stats
    op = legs["operator"]
    assert isinstance(op, dict) and int(op["packets_in"]) > 100, stats
    leaks = await asyncio.to_thread(server.wait_idle, 20)
    assert not any(leaks.values()), leaks
