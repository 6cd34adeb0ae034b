"""Stereo recorder: channel separation, RTP-timestamp alignment under loss/reorder, crash safety."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from media_peers import HOST, Peer, Rtp, answer_sdp, offer_sdp

from mediasrv.media import codec as g711
from mediasrv.media import kernels
from mediasrv.media.api import LegRole, MediaEvent, RecordMode
from mediasrv.media.codec import Codec
from mediasrv.media.engine import MediaEngine
from mediasrv.media.recorder import RecordingFormat, repair_dir, repair_wav, wav_header

RATE = 8000
CALLER_HZ, OPERATOR_HZ = 440.0, 1230.0


def tone(hz: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def read_stereo(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, RATE, 2)
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, dtype="<i2").reshape(-1, 2).astype(np.float64)


def level_db(signal: np.ndarray, hz: float) -> float:
    """Power of the ``hz`` component of ``signal`` in dB relative to full scale."""
    t = np.arange(len(signal)) / RATE
    i = np.dot(signal, np.cos(2 * np.pi * hz * t)) * 2 / len(signal)
    q = np.dot(signal, np.sin(2 * np.pi * hz * t)) * 2 / len(signal)
    return 20 * np.log10(max(np.hypot(i, q), 1e-9) / 32767)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Peak normalised cross-correlation of ``a`` and ``b`` within ±40 ms."""
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    best = 0.0
    for lag in range(-320, 321, 4):
        x, y = (a[lag:], b[: n - lag]) if lag >= 0 else (a[: n + lag], b[-lag:])
        denom = np.linalg.norm(x) * np.linalg.norm(y)
        if denom:
            best = max(best, float(np.dot(x, y) / denom))
    return best


# ---- the recording kernel and its writer, with a scripted clock ---------------------------

_MASKS = {RecordMode.BOTH: 3, RecordMode.CALLER: 1, RecordMode.OPERATOR: 2}


async def record_script(
    path: Path,
    packets: list[tuple[float, int, int, int, bytes]],
    mode: RecordMode = RecordMode.BOTH,
    fmt: RecordingFormat = RecordingFormat.PCM16,
) -> int:
    """Feed (arrival, channel, ssrc, ts, payload) in arrival order, running the writer every
    250 ms; returns the size the file must have (header + frames)."""
    timeline = kernels.recbuf.StereoTimeline()
    writer = kernels.recbuf.Writer()
    writer.register(timeline, 0.0)  # the script's clock is the timeline's
    ulaw = fmt is RecordingFormat.ULAW
    out = timeline.add_output(1, 2, _MASKS[mode], ulaw, 0.0, bytes(path))
    next_tick = 0.25
    for now, channel, ssrc, ts, payload in sorted(packets, key=lambda p: p[0]):
        while now >= next_tick:
            writer.run_pass(next_tick)
            next_tick += 0.25
        timeline.feed(channel, ssrc, ts, int(Codec.PCMU), payload, now)
    timeline.close()
    writer.run_pass(next_tick)
    start, stop = timeline.output_frames(out)
    return len(wav_header(fmt, 0)) + (stop - start) * (2 if ulaw else 4)


def stream(
    channel: int, pcm: np.ndarray, start: float, ts0: int, ssrc: int, jitter: float = 0.0
) -> list[tuple[float, int, int, int, bytes]]:
    rng = random.Random(channel)
    out = []
    for i in range(len(pcm) // 160):
        payload = g711.encode(Codec.PCMU, pcm[i * 160 : (i + 1) * 160])
        arrival = start + (i + 1) * 0.02 + rng.uniform(0, jitter)
        out.append((arrival, channel, ssrc, (ts0 + i * 160) & 0xFFFFFFFF, payload))
    return out


async def test_channels_hold_their_own_leg_only(tmp_path: Path) -> None:
    caller, operator = tone(CALLER_HZ, 3), tone(OPERATOR_HZ, 3)
    packets = stream(0, caller, 0.0, 1234, 0xA, 0.01) + stream(
        1, operator, 0.0, 0xFFFFF000, 0xB, 0.01
    )
    size = await record_script(tmp_path / "r.wav", packets)
    assert size == (tmp_path / "r.wav").stat().st_size
    audio = read_stereo(tmp_path / "r.wav")
    left, right = audio[:, 0], audio[:, 1]
    assert len(audio) == pytest.approx(3 * RATE, abs=400)
    assert correlation(left, caller.astype(np.float64)) >= 0.9
    assert correlation(right, operator.astype(np.float64)) >= 0.9
    # Cross-talk: the other leg's tone is at least 40 dB below this leg's.
    assert level_db(left, OPERATOR_HZ) - level_db(left, CALLER_HZ) <= -40
    assert level_db(right, CALLER_HZ) - level_db(right, OPERATOR_HZ) <= -40


def onset(signal: np.ndarray) -> int:
    """First sample where the signal becomes loud."""
    return int(np.argmax(np.abs(signal) > 3000))


async def test_alignment_survives_loss_reorder_and_jitter(tmp_path: Path) -> None:
    # Both phones start a loud tone at the same moment, t = 2.0 s after the call starts;
    # before it they send silence. The operator's stream starts 0.7 s late with another
    # timestamp base (and wraps the 32-bit timestamp).
    quiet_caller, quiet_operator = np.zeros(16000, np.int16), np.zeros(10400, np.int16)
    caller = np.concatenate([quiet_caller, tone(CALLER_HZ, 1.0)])
    operator = np.concatenate([quiet_operator, tone(OPERATOR_HZ, 1.0)])
    packets = stream(0, caller, 0.0, 5000, 0xA, 0.03) + stream(
        1, operator, 0.7, 0xFFFFFFFF - 8000, 0xB, 0.03
    )
    rng = random.Random(7)
    kept = [p for p in packets if rng.random() > 0.1]  # 10% loss
    reordered = [(t + (0.04 if i % 7 == 3 else 0.0), *rest) for i, (t, *rest) in enumerate(kept)]
    await record_script(tmp_path / "r.wav", reordered)  # type: ignore[arg-type]
    audio = read_stereo(tmp_path / "r.wav")
    left_on, right_on = onset(audio[:, 0]), onset(audio[:, 1])
    assert abs(left_on - right_on) <= 160, (left_on, right_on)  # within 20 ms
    assert abs(left_on - 2 * RATE) <= 400


async def test_gaps_and_hold_are_silence_and_the_clock_keeps_running(tmp_path: Path) -> None:
    # The caller talks 1 s, goes silent 2 s (hold, no packets), then talks 1 s with a
    # timestamp that continued as if nothing happened: re-anchored on arrival.
    first = stream(0, tone(CALLER_HZ, 1.0), 0.0, 0, 0xA)
    second = stream(0, tone(CALLER_HZ, 1.0), 3.0, 8000, 0xA)
    await record_script(tmp_path / "r.wav", first + second)
    left = read_stereo(tmp_path / "r.wav")[:, 0]
    assert len(left) == pytest.approx(4 * RATE, abs=400)
    assert np.abs(left[int(1.2 * RATE) : int(2.9 * RATE)]).max() == 0
    assert np.abs(left[int(3.2 * RATE) : int(3.9 * RATE)]).max() > 3000


@pytest.mark.parametrize(("mode", "live"), [(RecordMode.CALLER, 0), (RecordMode.OPERATOR, 1)])
async def test_one_sided_modes_keep_stereo_with_a_silent_channel(
    tmp_path: Path, mode: RecordMode, live: int
) -> None:
    packets = stream(0, tone(CALLER_HZ, 1), 0, 0, 1) + stream(1, tone(OPERATOR_HZ, 1), 0, 0, 2)
    await record_script(tmp_path / "r.wav", packets, mode)
    audio = read_stereo(tmp_path / "r.wav")
    assert np.abs(audio[:, live]).max() > 3000
    assert np.abs(audio[:, 1 - live]).max() == 0


async def test_ulaw_wav_is_format_7_and_sox_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "u.wav"
    pcm = tone(CALLER_HZ, 1)
    size = await record_script(path, stream(0, pcm, 0, 0, 1), fmt=RecordingFormat.ULAW)
    data = path.read_bytes()
    assert len(data) == size
    assert int.from_bytes(data[20:22], "little") == 7  # WAVE_FORMAT_MULAW
    info = subprocess.run(["soxi", str(path)], capture_output=True, text=True, check=True).stdout
    assert "u-law" in info and "Channels       : 2" in info
    assert repair_wav(path) is False  # a cleanly closed file needs nothing


async def test_repair_of_a_cut_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    await record_script(path, stream(0, tone(CALLER_HZ, 1), 0, 0, 1))
    data = path.read_bytes()
    # What kill -9 leaves: sizes from an older header update, and half a frame at the end.
    broken = data[:4] + (100).to_bytes(4, "little") + data[8:40] + (0).to_bytes(4, "little")
    path.write_bytes(broken + data[44:] + b"\x01")
    assert repair_wav(path) is True
    assert len(read_stereo(path)) == (len(data) - 44) // 4
    assert repair_wav(path) is False
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")
    assert repair_wav(tmp_path / "junk.wav") is False
    assert repair_dir(tmp_path) == []


# ---- through the engine, over loopback ---------------------------------------------------


async def test_engine_records_a_bridged_call(tmp_path: Path) -> None:
    events: list[MediaEvent] = []
    engine = MediaEngine(asyncio.get_running_loop(), HOST, 43000, 43998, events.append)
    a, b = Peer(), Peer()
    caller = engine.allocate("rec", LegRole.CALLER)
    operator = engine.allocate("rec", LegRole.OPERATOR)
    engine.answer(caller, offer_sdp(a.port, [Codec.PCMU]))
    engine.accept_answer(operator, answer_sdp(engine.offer(operator), b.port, [Codec.PCMA]))
    engine.bridge(caller, operator)
    engine.record("rec", tmp_path / "call.wav", RecordMode.BOTH)
    caller_pcm, operator_pcm = tone(CALLER_HZ, 2), tone(OPERATOR_HZ, 2)
    t0 = time.monotonic()
    for i in range(100):
        frame = slice(i * 160, (i + 1) * 160)
        a.send(
            Rtp(0, i, 160 * i, 0xA, g711.encode(Codec.PCMU, caller_pcm[frame])),
            (HOST, caller.local_port),
        )
        b.send(
            Rtp(8, i, 99 + 160 * i, 0xB, g711.encode(Codec.PCMA, operator_pcm[frame])),
            (HOST, operator.local_port),
        )
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))
    report = engine.release("rec")
    await engine.flush()
    assert report.recording == tmp_path / "call.wav"
    assert report.recording_bytes == report.recording.stat().st_size
    audio = read_stereo(report.recording)
    assert correlation(audio[:, 0], caller_pcm.astype(np.float64)) >= 0.9
    assert correlation(audio[:, 1], operator_pcm.astype(np.float64)) >= 0.9
    assert level_db(audio[:, 0], OPERATOR_HZ) - level_db(audio[:, 0], CALLER_HZ) <= -40
    assert level_db(audio[:, 1], CALLER_HZ) - level_db(audio[:, 1], OPERATOR_HZ) <= -40
    await engine.close()
    a.close()
    b.close()


CHILD = r"""
import asyncio, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np
from media_peers import HOST, Peer, Rtp, offer_sdp
from mediasrv.media import codec as g711
from mediasrv.media.api import LegRole, RecordMode
from mediasrv.media.codec import Codec
from mediasrv.media.engine import MediaEngine

async def main():
    engine = MediaEngine(asyncio.get_running_loop(), HOST, 44000, 44998, lambda e: None)
    peer = Peer()
    leg = engine.allocate("k", LegRole.CALLER)
    engine.answer(leg, offer_sdp(peer.port))
    engine.record("k", __import__("pathlib").Path(sys.argv[1]), RecordMode.BOTH)
    pcm = (8000 * np.sin(2 * np.pi * 440 * np.arange(160) / 8000)).astype(np.int16)
    payload = g711.encode(Codec.PCMU, pcm)
    t0 = time.monotonic()
    print(f"started {t0!r}", flush=True)
    for i in range(100000):
        peer.send(Rtp(0, i & 0xFFFF, 160 * i, 7, payload), (HOST, leg.local_port))
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))

asyncio.run(main())
"""


def test_kill_9_mid_recording_leaves_a_repairable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("started"), line
        started = float(line.split()[1])
        # Kill once 3 s are on disk as the header says (it is updated every second while
        # recording), however long a loaded machine takes to get there.
        on_disk = seconds_on_disk(path, 3.0, timeout=30.0)
        killed_at = time.monotonic()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    # Valid even before repair (the header lags by at most a second) ...
    before = read_stereo(path)
    assert len(before) / RATE >= on_disk
    # ... and after repair it holds at least that (all that was written), and never more
    # than the child ran.
    repair_wav(path)
    audio = read_stereo(path)
    assert len(audio) >= len(before)
    recorded = len(audio) / RATE
    assert on_disk <= recorded <= (killed_at - started) + 0.5, (on_disk, recorded)
    assert np.abs(audio[: len(audio) - 400, 0]).max() > 3000


def seconds_on_disk(path: Path, wanted: float, timeout: float) -> float:
    """Poll the WAV being written until its header covers ``wanted`` seconds."""
    deadline = time.monotonic() + timeout
    held = 0.0
    while time.monotonic() < deadline:
        try:
            held = len(read_stereo(path)) / RATE
        except (OSError, EOFError, wave.Error, ValueError):
            held = 0.0  # not there yet, or the header caught mid-update
        if held >= wanted:
            return held
        time.sleep(0.05)
    raise AssertionError(f"{path}: {held:.2f} s on disk after {timeout} s, want {wanted}")


async def test_unwritable_recording_is_left_out_of_the_report(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the recordings directory should be")
    engine = MediaEngine(asyncio.get_running_loop(), HOST, 43000, 43998, lambda e: None)
    peer = Peer()
    leg = engine.allocate("f", LegRole.CALLER)
    engine.answer(leg, offer_sdp(peer.port))
    engine.record("f", blocker / "call.wav", RecordMode.BOTH)
    await engine.flush()
    peer.send(Rtp(0, 1, 160, 1, b"\xff" * 160), (HOST, leg.local_port))
    await asyncio.sleep(0.05)
    report = engine.release("f")
    assert (report.recording, report.recording_bytes) == (None, 0)
    await engine.close()
    peer.close()
