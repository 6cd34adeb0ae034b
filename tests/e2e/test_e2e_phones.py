"""Real pjsua2 phones through a real mediasrv process: audio both ways, DTMF, CANCEL, busy,
ring timeout, BYE from each side, hold and resume, and the stereo recording."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import StartServer
from peers_plugin import StartPhone

from mediasrv.demo.audio import correlate_aligned, correlate_piecewise, read_wav
from mediasrv.demo.phones import PhoneProcess
from mediasrv.demo.server import ServerProcess

pytestmark = [pytest.mark.e2e]

NUMBER = "0312345678"


def route_to(operator: PhoneProcess, **extra: object) -> list[dict[str, object]]:
    entry: dict[str, object] = {
        "number": NUMBER,
        "business": "acme",
        "medium": "newspaper",
        "destinations": [operator.uri],
    }
    entry.update(extra)
    return [entry]


def tracking_uri(server: ServerProcess) -> str:
    return f"sip:{NUMBER}@{server.sip_uri_host}"


async def wait_rows(
    server: ServerProcess, n: int, timeout: float = 10.0
) -> list[dict[str, object]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def finished(rows: list[dict[str, object]]) -> bool:
        done = [r for r in rows if r["disposition"] != "in-progress"]
        return len(done) >= n and len(done) == len(rows)

    rows = await asyncio.to_thread(server.calls, 10)
    while not finished(rows) and loop.time() < deadline:
        await asyncio.sleep(0.2)
        rows = await asyncio.to_thread(server.calls, 10)
    return rows


async def assert_idle(server: ServerProcess) -> None:
    leaks = await asyncio.to_thread(server.wait_idle, 20)
    assert not any(leaks.values()), leaks


async def test_bridged_call_audio_both_ways_dtmf_and_stereo_recording(
    start_server: StartServer,
    start_phone: StartPhone,
    speech_wavs: dict[str, Path],
    tmp_path: Path,
) -> None:
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
    server = start_server(numbers=route_to(operator))
    await caller.dial(tracking_uri(server))
    await operator.wait_event("incoming", timeout=10)
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await caller.wait_event("media_active", timeout=10)
    # pjsua sends RFC 4733 packets instead of audio while a digit lasts, so the digits go
    # after the known speech (4 s), not over it.
    await asyncio.sleep(4.5)
    await caller.command("dtmf", digits="1234")
    await operator.wait_event("dtmf", timeout=10, digit="4")
    # The phone reports a digit at its first packet; the server logs it at its end packet
    # (RFC 4733 §2.5.1.4), ~100 ms later: do not hang up inside the last digit.
    await asyncio.sleep(0.6)
    await caller.command("hangup")
    await operator.wait_event("disconnected", timeout=10)
    heard_by_operator = Path((await operator.wait_event("recorded"))["path"])
    heard_by_caller = Path((await caller.wait_event("recorded"))["path"])

    said_by_caller = read_wav(speech_wavs["caller"]).samples
    said_by_operator = read_wav(speech_wavs["operator"]).samples
    # Each phone's adaptive jitter buffer may slip a frame on a loaded machine, which shifts
    # the rest of the audio: align window by window (correlate_piecewise) for what the phones
    # heard. The server's own recording below is checked as one whole signal.
    up = correlate_piecewise(said_by_caller, read_wav(heard_by_operator).samples)
    down = correlate_piecewise(said_by_operator, read_wav(heard_by_caller).samples)
    assert up.score >= 0.9 and up.windows >= 6, up
    assert down.score >= 0.9 and down.windows >= 6, down
    assert operator.digits() == "1234"

    rows = await wait_rows(server, 1)
    assert len(rows) == 1
    row = rows[0]
    assert row["disposition"] == "answered"
    assert row["end_reason"] == "caller-bye"
    assert row["medium"] == "newspaper"
    assert isinstance(row["talk_seconds"], float) and row["talk_seconds"] > 3.0
    assert row["dtmf"] == "1234"
    recording = Path(str(row["recording_path"]))
    assert recording.is_file()
    stereo = read_wav(recording)
    assert stereo.rate == 8000 and stereo.channels == 2
    left, right = stereo.samples[:, 0], stereo.samples[:, 1]
    assert correlate_aligned(said_by_caller, left)[0] >= 0.9
    assert correlate_aligned(said_by_operator, right)[0] >= 0.9
    await assert_idle(server)


async def test_caller_cancels_before_answer(
    start_server: StartServer, start_phone: StartPhone
) -> None:
    operator = await start_phone("operator", auto_answer="none")
    caller = await start_phone("caller")
    server = start_server(numbers=route_to(operator))
    await caller.dial(tracking_uri(server))
    await operator.wait_event("incoming", timeout=10)
    await caller.wait_event("state", state="EARLY", timeout=10)
    await caller.command("hangup")  # CANCEL
    await operator.wait_event("disconnected", timeout=10)
    disconnected = await caller.wait_event("disconnected", timeout=10)
    assert disconnected["code"] == 487
    rows = await wait_rows(server, 1)
    assert rows[0]["disposition"] == "abandoned"
    assert rows[0]["answer_time"] is None
    await assert_idle(server)


async def test_operator_busy_486_reaches_the_caller(
    start_server: StartServer, start_phone: StartPhone
) -> None:
    operator = await start_phone("operator", auto_answer="486")
    caller = await start_phone("caller")
    server = start_server(numbers=route_to(operator))
    await caller.dial(tracking_uri(server))
    disconnected = await caller.wait_event("disconnected", timeout=10)
    assert disconnected["code"] == 486
    rows = await wait_rows(server, 1)
    assert rows[0]["disposition"] == "busy" and rows[0]["sip_code"] == 486
    await assert_idle(server)


async def test_ring_timeout_gives_480_and_cancels_the_operator(
    start_server: StartServer, start_phone: StartPhone
) -> None:
    operator = await start_phone("operator", auto_answer="none")
    caller = await start_phone("caller")
    server = start_server(numbers=route_to(operator, ring_timeout=1.5))
    await caller.dial(tracking_uri(server))
    await operator.wait_event("incoming", timeout=10)
    disconnected = await caller.wait_event("disconnected", timeout=10)
    assert disconnected["code"] == 480
    await operator.wait_event("disconnected", timeout=10)
    rows = await wait_rows(server, 1)
    assert rows[0]["disposition"] == "no-answer"
    await assert_idle(server)


@pytest.mark.parametrize("who_hangs_up", ["caller", "operator"])
async def test_bye_from_either_side_ends_both_legs(
    start_server: StartServer, start_phone: StartPhone, who_hangs_up: str
) -> None:
    operator = await start_phone("operator", auto_answer="200")
    caller = await start_phone("caller")
    server = start_server(numbers=route_to(operator))
    await caller.dial(tracking_uri(server))
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await operator.wait_event("state", state="CONFIRMED", timeout=10)
    phones = {"caller": caller, "operator": operator}
    other = operator if who_hangs_up == "caller" else caller
    await phones[who_hangs_up].command("hangup")
    await other.wait_event("disconnected", timeout=10)
    rows = await wait_rows(server, 1)
    assert rows[0]["end_reason"] == f"{who_hangs_up}-bye"
    await assert_idle(server)


async def test_hold_and_resume_pass_through_to_the_operator(
    start_server: StartServer, start_phone: StartPhone, tmp_path: Path, speech_wavs: dict[str, Path]
) -> None:
    operator = await start_phone("operator", auto_answer="200", record=tmp_path / "op.wav")
    caller = await start_phone("caller", play=speech_wavs["caller"], play_loop=True)
    server = start_server(numbers=route_to(operator))
    await caller.dial(tracking_uri(server))
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await caller.wait_event("media_active", timeout=10)
    await caller.command("hold")
    await operator.wait_event("hold_state", timeout=10, state="remote_hold")
    await caller.command("unhold")
    await operator.wait_event("hold_state", timeout=10, state="active")
    await asyncio.sleep(1.0)
    await caller.command("hangup")
    await operator.wait_event("disconnected", timeout=10)
    heard = read_wav(Path((await operator.wait_event("recorded"))["path"])).samples
    # Audio flows again after the resume.
    assert float(np.sqrt(np.mean(heard[-4000:].astype(np.float64) ** 2))) > 100.0
    await assert_idle(server)


async def test_kill_9_mid_call_keeps_the_row_and_a_valid_recording(
    start_server: StartServer, start_phone: StartPhone, speech_wavs: dict[str, Path]
) -> None:
    """F13/F12: a crash loses nothing: the call row is there after the restart, still
    answered (issue 8, finding 6) and ended at the last checkpoint, and the recording is a
    valid WAV holding the audio up to the kill."""
    operator = await start_phone(
        "operator", auto_answer="200", play=speech_wavs["operator"], play_loop=True
    )
    caller = await start_phone("caller", play=speech_wavs["caller"], play_loop=True)
    store = {"checkpoint_interval": 0.5}
    server = start_server(numbers=route_to(operator), store=store)
    await caller.dial(tracking_uri(server))
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await asyncio.sleep(3.0)
    killed_at = time.time()
    server.kill()  # SIGKILL: no drain, no header update
    killed_at_s = 3.0
    await caller.command("hangup")
    # Restart on the same data directory: rows cut off are closed, WAV headers repaired.
    restarted = start_server(numbers=route_to(operator), store=store, workdir=server.spec.workdir)
    rows = await asyncio.to_thread(restarted.calls, 10)
    assert len(rows) == 1
    row = rows[0]
    assert row["disposition"] == "answered" and row["end_reason"] == "server-restart", row
    assert row["sip_code"] == 200 and row["operator_uri"], row
    answer_time, end_time, talk = row["answer_time"], row["end_time"], row["talk_seconds"]
    assert isinstance(answer_time, float) and isinstance(end_time, float), row
    assert isinstance(talk, float)
    assert killed_at - 2.0 <= end_time <= killed_at + 0.2, end_time - killed_at
    assert killed_at_s - 2.0 <= talk <= killed_at_s + 0.5, talk
    recording = Path(str(row["recording_path"]))
    wav = read_wav(recording)  # the wave module refuses a broken header
    assert wav.channels == 2 and wav.rate == 8000
    seconds = len(wav.samples) / 8000
    assert killed_at_s - 1.0 <= seconds <= killed_at_s + 1.0, seconds
    left = wav.samples[:, 0].astype(np.float64)
    assert float(np.sqrt(np.mean(left**2))) > 100.0  # real audio, not a silent file
