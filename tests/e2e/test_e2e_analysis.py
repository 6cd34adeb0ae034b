"""A recorded call through the server is analysed after it ends: the call's row gets the
speaker-separated timeline, the caller's gender and an outcome label (issue 4, wired)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import StartServer
from peers_plugin import StartPhone

from mediasrv.analysis.manifest import Manifest, default_models_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DATA = Path(__file__).parent.parent / "analysis" / "data"
NUMBER = "0312345678"


def _models_built() -> bool:
    try:
        return "whisper-base" in Manifest.load(default_models_dir()).models
    except Exception:
        return False


@pytest.mark.skipif(
    not _models_built(), reason="run `mediasrv models build` first (bootstrap does)"
)
async def test_finished_call_gets_timeline_gender_and_label(
    start_server: StartServer, start_phone: StartPhone
) -> None:
    # Caller (female voice) asks to book; operator (male voice) confirms the booking.
    caller = await start_phone("caller", play=DATA / "ja_f1.wav")
    operator = await start_phone("operator", auto_answer="200", play=DATA / "ja_m2.wav")
    server = start_server(
        numbers=[{"number": NUMBER, "business": "clinic", "destinations": [operator.uri]}],
        analysis={"enabled": True, "workers": 1, "language": "ja"},
    )
    await caller.dial(f"sip:{NUMBER}@{server.sip_uri_host}")
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    # Hang up once both have said their clip (about 5 s each), not after a guessed time.
    await caller.wait_event("played", timeout=30)
    await operator.wait_event("played", timeout=30)
    await caller.command("hangup")
    await operator.wait_event("disconnected", timeout=10)

    deadline = time.monotonic() + 240
    row: dict[str, object] = {}
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(server.calls, 1)
        if rows and rows[0].get("analysis"):
            row = rows[0]
            break
        await asyncio.sleep(1.0)
    assert row, "no analysis result within the deadline:\n" + server.log_tail()
    analysis = row["analysis"]
    assert isinstance(analysis, dict)
    timeline = analysis["timeline"]
    assert isinstance(timeline, list) and timeline
    by_channel: dict[str, str] = {}
    for utterance in timeline:
        by_channel[utterance["channel"]] = (
            by_channel.get(utterance["channel"], "") + utterance["text"]
        )
    assert "予約" in by_channel.get("caller", ""), by_channel
    assert "予約" in by_channel.get("operator", "") or "午後" in by_channel.get("operator", ""), (
        by_channel
    )
    starts = [u["start"] for u in timeline]
    assert starts == sorted(starts)
    gender = analysis["gender"]
    assert isinstance(gender, dict) and gender["gender"] in ("female", "unknown"), gender
    outcome = analysis["outcome"]
    assert isinstance(outcome, dict) and outcome["label"] in ("booking_made", "undetermined"), (
        outcome
    )
