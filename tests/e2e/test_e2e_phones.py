"""Real pjsua2 phones through a real mediasrv process: audio both ways, DTMF, CANCEL, busy,
ring timeout, BYE from each side, hold and resume, and the stereo recording."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import StartServer
from peers_plugin import StartPhone

from mediasrv.demo.audio import AudioError, correlate_aligned, correlate_piecewise, read_wav
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


async def wait_log(
    server: ServerProcess, msg: str, timeout: float = 10.0, **fields: object
) -> dict[str, object]:
    """The first JSON log line of the server with this ``msg`` and these fields."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for line in server.log_path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("msg") == msg and all(record.get(k) == v for k, v in fields.items()):
                return dict(record)
        if loop.time() > deadline:
            raise AssertionError(f"no log line {msg!r} {fields} within {timeout} s:\n"
                                 f"{server.log_tail(2000)}")
        await asyncio.sleep(0.1)


async def wait_rx_packets(phone: PhoneProcess, more: int, timeout: float = 10.0) -> int:
    """Wait until the phone's call has received ``more`` RTP packets beyond what it had."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first = int((await phone.stats())["rx_packets"])
    while True:
        await asyncio.sleep(0.1)
        now = int((await phone.stats())["rx_packets"])
        if now >= first + more:
            return now - first
        if loop.time() > deadline:
            raise AssertionError(f"{phone.name}: {now - first} packets in {timeout} s, want {more}")


async def wait_recorded_seconds(path: Path, seconds: float, timeout: float = 20.0) -> float:
    """Wait until the recording on disk (its header is updated every second while recording)
    holds ``seconds`` of audio; returns what it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    held = 0.0
    while loop.time() < deadline:
        try:
            wav = read_wav(path)
            held = len(wav.samples) / wav.rate
        except (OSError, AudioError):
            held = 0.0  # not created yet, or the header caught mid-update
        if held >= seconds:
            return held
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path}: {held:.2f} s recorded within {timeout} s, want {seconds}")


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
    # after the known speech (4 s), not over it: once both phones have played their file.
    await caller.wait_event("played", timeout=20)
    await operator.wait_event("played", timeout=20)
    await caller.command("dtmf", digits="1234")
    await operator.wait_event("dtmf", timeout=10, digit="4")
    # The phone reports a digit at its first packet; the server takes it at its end packet
    # (RFC 4733 §2.5.1.4), ~100 ms later: do not hang up inside the last digit.
    await wait_log(server, "dtmf digit", count=4)
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
    await wait_rx_packets(operator, 50)  # 1 s of audio after the resume
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
    loop = asyncio.get_running_loop()
    dialled_at = loop.time()
    await caller.dial(tracking_uri(server))
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    rows = await asyncio.to_thread(server.calls, 10)
    while not (rows and rows[0]["recording_path"]) and loop.time() < dialled_at + 20:
        await asyncio.sleep(0.1)  # the row of a call in progress names its recording
        rows = await asyncio.to_thread(server.calls, 10)
    assert len(rows) == 1 and rows[0]["recording_path"], rows
    recording = Path(str(rows[0]["recording_path"]))
    on_disk_s = await wait_recorded_seconds(recording, 3.0)
    killed_at = time.time()
    server.kill()  # SIGKILL: no drain, no header update
    up_for_s = loop.time() - dialled_at  # the recording cannot be longer than the call
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
    # ended at the last checkpoint (every 0.5 s) before the kill
    assert killed_at - 2.0 <= end_time <= killed_at + 0.2, end_time - killed_at
    # talk time: at least what was recorded before the kill, less a checkpoint's slack
    assert on_disk_s - 2.0 <= talk <= up_for_s + 0.5, (talk, on_disk_s, up_for_s)
    assert Path(str(row["recording_path"])) == recording
    wav = read_wav(recording)  # the wave module refuses a broken header
    assert wav.channels == 2 and wav.rate == 8000
    seconds = len(wav.samples) / 8000
    # Everything on disk before the kill is kept (the header was repaired to cover it).
    assert on_disk_s <= seconds <= up_for_s + 0.5, (on_disk_s, seconds, up_for_s)
    left = wav.samples[:, 0].astype(np.float64)
    assert float(np.sqrt(np.mean(left**2))) > 100.0  # real audio, not a silent file
