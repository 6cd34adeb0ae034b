"""The pjsua2 phone harness, proven phone to phone (no server in between)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from peers_plugin import StartPhone

from mediasrv.demo.audio import correlate_piecewise, read_wav
from mediasrv.demo.phones import PhoneError, PhoneProcess

pytestmark = [pytest.mark.e2e]


async def _connected(caller: PhoneProcess, callee: PhoneProcess) -> None:
    await caller.dial(callee.uri)
    await callee.wait_event("incoming")
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await callee.wait_event("state", state="CONFIRMED", timeout=10)


async def test_known_audio_arrives_both_ways(
        start_phone: StartPhone, speech_wavs: dict[str, Path], tmp_path: Path) -> None:
    caller = await start_phone("caller", play=speech_wavs["caller"],
                               record=tmp_path / "caller_heard.wav")
    operator = await start_phone("operator", auto_answer="200", answer_delay=0.3,
                                 play=speech_wavs["operator"],
                                 record=tmp_path / "operator_heard.wav")
    await _connected(caller, operator)
    await caller.wait_event("media_active")
    await caller.wait_event("played", timeout=20)  # the 4 s of known audio, each way
    await operator.wait_event("played", timeout=20)
    await caller.command("hangup")
    await operator.wait_event("disconnected")
    heard_by_operator = Path((await operator.wait_event("recorded"))["path"])
    heard_by_caller = Path((await caller.wait_event("recorded"))["path"])

    said_by_caller = read_wav(speech_wavs["caller"]).samples
    said_by_operator = read_wav(speech_wavs["operator"]).samples
    op_rec = read_wav(heard_by_operator)
    caller_rec = read_wav(heard_by_caller)
    assert op_rec.rate == caller_rec.rate == 8000
    up = correlate_piecewise(said_by_caller, op_rec.samples)
    down = correlate_piecewise(said_by_operator, caller_rec.samples)
    assert up.windows >= 6 and down.windows >= 6  # nearly all of the 4 s arrived
    assert up.score >= 0.9, up
    assert down.score >= 0.9, down
    # The check tells the directions apart: the caller never hears its own audio.
    assert correlate_piecewise(said_by_caller, caller_rec.samples).score < 0.4


async def test_rfc4733_digits_arrive(start_phone: StartPhone) -> None:
    caller = await start_phone("caller")
    operator = await start_phone("operator", auto_answer="200")
    await _connected(caller, operator)
    await caller.wait_event("media_active")
    await caller.command("dtmf", digits="123#")
    for digit in "123#":
        await operator.wait_event("dtmf", digit=digit, timeout=5)
    assert operator.digits() == "123#"
    assert caller.digits() == ""


async def test_rtp_counters_of_a_live_call(start_phone: StartPhone) -> None:
    caller = await start_phone("caller")
    operator = await start_phone("operator", auto_answer="200")
    await _connected(caller, operator)
    await caller.wait_event("media_active")
    # 20 ms packets both ways (no VAD: silence is sent too): the counters reach 30 (0.6 s)
    # however long a loaded machine takes, so wait for them (bounded). Not more: with
    # nothing to play, one of the two pjsua2 phones stops sending after about 50 packets.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    stats = await caller.stats()
    while min(stats["tx_packets"], stats["rx_packets"]) < 30 and loop.time() < deadline:
        await asyncio.sleep(0.1)
        stats = await caller.stats()
    assert stats["tx_packets"] >= 30, stats
    assert stats["rx_packets"] >= 30, stats
    assert stats["rx_loss"] == 0


async def test_busy_operator_gives_486(start_phone: StartPhone) -> None:
    caller = await start_phone("caller")
    operator = await start_phone("operator", auto_answer="486", answer_delay=0.2)
    await caller.dial(operator.uri)
    await caller.wait_event("state", state="EARLY", code=180)
    ended = await caller.wait_event("disconnected", timeout=5)
    assert ended["code"] == 486
    assert not caller.seen("state", state="CONFIRMED")


async def test_cancel_before_answer(start_phone: StartPhone) -> None:
    caller = await start_phone("caller")
    operator = await start_phone("operator", auto_answer="none")
    await caller.dial(operator.uri)
    await operator.wait_event("incoming")
    await caller.wait_event("state", state="EARLY", code=180)
    await caller.command("hangup")
    ended = await operator.wait_event("disconnected", timeout=5)
    assert ended["code"] == 487  # RFC 3261 9.2: the INVITE ends with 487 after CANCEL
    assert (await caller.wait_event("disconnected", timeout=5))["code"] == 487


async def test_manual_answer_and_bye_from_callee(start_phone: StartPhone) -> None:
    caller = await start_phone("caller")
    operator = await start_phone("operator", auto_answer="none")
    await caller.dial(operator.uri)
    await operator.wait_event("incoming")
    await operator.command("answer", code=200)
    await caller.wait_event("state", state="CONFIRMED")
    await operator.command("hangup")
    ended = await caller.wait_event("disconnected", timeout=5)
    assert ended["code"] == 200
    assert ended["duration"] >= 0


async def test_hold_and_resume(start_phone: StartPhone) -> None:
    caller = await start_phone("caller")
    operator = await start_phone("operator", auto_answer="200")
    await _connected(caller, operator)
    await caller.wait_event("media_active")
    await operator.wait_event("media_active")
    await caller.command("hold")
    assert (await caller.wait_event("hold_state", timeout=5))["state"] == "local_hold"
    assert (await operator.wait_event("hold_state", timeout=5))["state"] == "remote_hold"
    await caller.command("unhold")
    assert (await caller.wait_event("hold_state", timeout=5))["state"] == "active"
    assert (await operator.wait_event("hold_state", timeout=5))["state"] == "active"


async def test_pcma_only_phone_negotiates_pcma(start_phone: StartPhone) -> None:
    caller = await start_phone("caller", codec="PCMA")
    operator = await start_phone("operator", auto_answer="200", codec="PCMU,PCMA")
    await _connected(caller, operator)
    media = await operator.wait_event("media_active")
    assert media["codec"] == "PCMA"


async def test_bad_commands_are_reported_not_fatal(start_phone: StartPhone) -> None:
    phone = await start_phone("lonely")
    await phone.command("hangup")
    assert "no live call" in (await phone.wait_event("error"))["message"]
    await phone.command("frobnicate")
    assert "unknown command" in (await phone.wait_event("error"))["message"]
    await phone.command("dial", uri="not a sip uri")
    await phone.wait_event("error")
    await phone.command("dtmf", digits="1")
    await phone.wait_event("error")
    assert phone.returncode is None
    assert await phone.stop() == 0


async def test_stop_reaps_a_hung_phone() -> None:
    phone = await PhoneProcess.start("frozen")
    os.kill(phone.proc.pid, signal.SIGSTOP)  # ignores quit and SIGTERM from now on
    code = await phone.stop(timeout=0.5)
    assert code == -signal.SIGKILL
    assert phone.returncode is not None


async def test_wait_event_raises_when_the_phone_dies() -> None:
    phone = await PhoneProcess.start("doomed")
    phone.proc.kill()
    with pytest.raises(PhoneError, match="exited"):
        await phone.wait_event("incoming", timeout=5)
    await phone.stop()


async def test_phone_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(PhoneError):
        await PhoneProcess.start("x", play=tmp_path / "missing.wav")


async def test_call_over_tcp(start_phone: StartPhone) -> None:
    caller = await start_phone("caller", tcp=True)
    operator = await start_phone("operator", auto_answer="200", tcp=True)
    await caller.dial(f"{operator.uri};transport=tcp")
    await operator.wait_event("incoming")
    await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await caller.command("hangup")
    assert (await operator.wait_event("disconnected", timeout=5))["code"] == 200


async def test_five_calls_to_one_phone_hit_its_limit(start_phone: StartPhone) -> None:
    # pjsua2 holds at most 4 calls per process (TOOLS.md): the 5th is refused, not lost.
    operator = await start_phone("operator", auto_answer="200")
    callers = [await start_phone(f"caller{i}") for i in range(5)]
    for caller in callers[:4]:
        await caller.dial(operator.uri)
        await caller.wait_event("state", state="CONFIRMED", timeout=10)
    await callers[4].dial(operator.uri)
    refused = await callers[4].wait_event("disconnected", timeout=10)
    assert refused["code"] >= 400


async def test_a_taken_port_is_a_clear_start_error(start_phone: StartPhone) -> None:
    first = await start_phone("first")
    with pytest.raises(PhoneError, match=r"exited before ready.*start failed"):
        await PhoneProcess.start("second", port=first.port)
