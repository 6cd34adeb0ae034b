"""The recording kernel: both twins agree bit for bit (timeline, every output layout, pauses,
stops, the files their writers produce), and what they write is right (placement by
timestamp, silence in pauses, channel masks, mono mixdown, WAV headers, failures)."""

from __future__ import annotations

import random
import struct
import time
import wave
from pathlib import Path
from types import ModuleType

import pytest
from kernel_twins import kernel_pair

from mediasrv.media.kernels import load_kernel

Packet = tuple[int, int, int, int, bytes, float]  # channel, ssrc, ts, codec, payload, arrival
# (ident, channels, mask, ulaw, start time): every layout, some added mid-call
LAYOUTS = [
    (1, 2, 3, False, 0.0),
    (2, 2, 3, True, 0.4),
    (3, 1, 1, False, 0.9),  # voicemail: mono caller
    (4, 1, 3, True, 0.2),  # mono mixdown
    (5, 2, 2, False, 1.3),  # stereo, caller muted
    (6, 1, 2, False, 0.0),
]
# (time, verb, output)
SCRIPT = [
    (0.7, "pause", 0),
    (0.75, "pause", 0),  # a second pause while paused changes nothing
    (1.1, "resume", 0),
    (1.6, "pause", 0),
    (1.9, "resume", 0),
    (1.5, "stop", 2),
    (1.2, "pause", 3),
    (2.2, "pause", 4),  # still paused when the call ends
    (2.4, "resume", 5),  # not paused: nothing
    (2.5, "stop", 1),
]


@pytest.fixture
def recbuf(impl_kind: str) -> ModuleType:
    return load_kernel("recbuf", python=impl_kind == "python")


def network(rng: random.Random, seconds: float = 3.0) -> list[Packet]:
    """Two legs of 20 ms packets with jitter, loss, reordering, an SSRC change and a ts jump."""
    packets: list[Packet] = []
    for channel in (0, 1):
        ssrc, ts = rng.randrange(2**32), rng.randrange(2**32)
        codec = (0, 8)[channel]
        t = 0.013 * channel
        for i in range(int(seconds * 50)):
            if i == 70 + 10 * channel:
                ssrc, ts = rng.randrange(2**32), rng.randrange(2**32)  # source restart
            if i == 110:
                ts = (ts + 8000 * 3) % 2**32  # peer clock jump beyond RESYNC
            payload = bytes(rng.randrange(256) for _ in range(160))
            if rng.random() > 0.05:  # 5% loss
                packets.append(
                    (channel, ssrc, ts, codec, payload, t + i * 0.02 + rng.uniform(0, 0.03))
                )
            ts = (ts + 160) % 2**32
    packets.sort(key=lambda p: p[5])  # arrival order (jitter reorders)
    return packets


def run_script(
    recbuf: ModuleType, packets: list[Packet], paths: Path | None = None
) -> tuple[list[bytes], list[object]]:
    """Feed packets in arrival order, add outputs and run the script at their times, tick
    (or run the writer) every 250 ms; return each output's bytes and every call's result."""
    tl = recbuf.StereoTimeline()
    writer = recbuf.Writer() if paths is not None else None
    if writer is not None:
        writer.register(tl, 0.0)
    pending_outputs = sorted(LAYOUTS, key=lambda o: o[4])
    script = sorted(SCRIPT)
    index: dict[int, int] = {}
    data: dict[int, bytes] = {}
    results: list[object] = []
    next_tick = 0.25

    def at(now: float) -> None:
        while pending_outputs and pending_outputs[0][4] <= now:
            ident, channels, mask, ulaw, t = pending_outputs.pop(0)
            path = None if paths is None else bytes(paths / f"{ident}.wav")
            index[ident - 1] = tl.add_output(ident, channels, mask, ulaw, t, path)
            data[ident - 1] = b""
        while script and script[0][0] <= now:
            t, verb, out = script.pop(0)
            results.append(getattr(tl, f"{verb}_output")(index[out], t))

    for channel, ssrc, ts, codec, payload, now in packets:
        while now >= next_tick:
            at(next_tick)
            if writer is not None:
                writer.run_pass(next_tick)
            else:
                tl.tick(next_tick)
                for i in index:
                    data[i] += tl.take(index[i])
            next_tick += 0.25
        at(now)
        tl.feed(channel, ssrc, ts, codec, payload, now)
    tl.close()
    if writer is not None:
        writer.run_pass(next_tick)
        assert writer.reap() == 1  # every file closed: the writer forgets the timeline
    for i in index:
        data[i] += tl.take(index[i])
        results.append(tl.output_frames(index[i]))
        results.append(tl.output_state(index[i]))
    return [data[i] for i in sorted(data)], results


@pytest.mark.parametrize("seed", range(3))
def test_twins_agree(seed: int) -> None:
    py, cy = kernel_pair("recbuf")
    packets = network(random.Random(seed))
    assert run_script(py, packets) == run_script(cy, packets)


def test_writers_write_the_same_files(tmp_path: Path) -> None:
    py, cy = kernel_pair("recbuf")
    packets = network(random.Random(11))
    (tmp_path / "py").mkdir()
    run_script(py, packets, tmp_path / "py")
    run_script(cy, packets, tmp_path / "cy" / "made" / "by" / "the" / "writer")
    buffered, _ = run_script(cy, packets)
    for ident, channels, _mask, ulaw, _t in LAYOUTS:
        a = (tmp_path / "py" / f"{ident}.wav").read_bytes()
        b = (tmp_path / "cy" / "made" / "by" / "the" / "writer" / f"{ident}.wav").read_bytes()
        assert a == b
        header = len(py.wav_header(channels, ulaw, 0))
        assert a[:header] == py.wav_header(channels, ulaw, len(a) - header)
        assert a[header:] == buffered[ident - 1]  # the file holds exactly the output's bytes


def test_wav_headers_agree_and_read_back(tmp_path: Path) -> None:
    py, cy = kernel_pair("recbuf")
    for channels in (1, 2):
        for ulaw in (False, True):
            for size in (0, 4, 160_000):
                assert py.wav_header(channels, ulaw, size) == cy.wav_header(channels, ulaw, size)
    path = tmp_path / "m.wav"
    path.write_bytes(py.wav_header(1, False, 320) + bytes(320))
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (
            1,
            8000,
            2,
            160,
        )


def test_channels_placed_by_timestamp(recbuf: ModuleType) -> None:
    """A lost packet leaves silence of its length; the next lands by its timestamp."""
    tone = bytes([0x80]) * 160  # µ-law positive peak
    tl = recbuf.StereoTimeline()
    out = tl.add_output(1, 2, 3, False, 0.0)
    for i in (0, 1, 3):  # packet 2 lost
        tl.feed(0, 1, 1000 + 160 * i, 0, tone, 0.02 * i)
    tl.close()
    frames = struct.unpack(f"<{4 * 160 * 2}h", tl.take(out))
    left = frames[0::2]
    assert left[:320] == (32124,) * 320
    assert left[320:480] == (0,) * 160
    assert left[480:640] == (32124,) * 160
    assert set(frames[1::2]) == {0}


def test_pause_is_silence_and_layouts_pick_their_channels(recbuf: ModuleType) -> None:
    tl = recbuf.StereoTimeline()
    stereo = tl.add_output(1, 2, 3, False, 0.0)
    caller_only = tl.add_output(2, 2, 1, False, 0.0)
    mono_caller = tl.add_output(3, 1, 1, False, 0.0)
    mono_mix = tl.add_output(4, 1, 3, False, 0.0)
    for i in range(100):  # 2 s, both legs at µ-law's positive peak
        tl.feed(0, 1, 160 * i, 0, b"\x80" * 160, 0.02 * i)
        tl.feed(1, 2, 160 * i, 0, b"\x80" * 160, 0.02 * i)
        if i == 25:
            assert tl.pause_output(stereo, 0.5) == 4000
        if i == 75:
            assert tl.resume_output(stereo, 1.5) == 12000
    tl.close()
    s = struct.unpack(f"<{2 * 16000}h", tl.take(stereo))
    assert set(s[: 2 * 4000]) == {32124}
    assert set(s[2 * 4000 : 2 * 12000]) == {0}  # the paused second
    assert set(s[2 * 12000 :]) == {32124}
    c = struct.unpack(f"<{2 * 16000}h", tl.take(caller_only))
    assert set(c[0::2]) == {32124} and set(c[1::2]) == {0}
    assert set(struct.unpack("<16000h", tl.take(mono_caller))) == {32124}
    assert set(struct.unpack("<16000h", tl.take(mono_mix))) == {32767}  # saturated, not wrapped


def test_an_output_starts_where_it_was_added(recbuf: ModuleType) -> None:
    tl = recbuf.StereoTimeline()
    early = tl.add_output(1, 1, 1, False, 0.0)
    late = None
    for i in range(100):
        if i == 50:
            late = tl.add_output(2, 1, 1, False, 1.0)
        tl.feed(0, 1, 160 * i, 0, b"\x80" * 160, 0.02 * i)
    assert late is not None
    assert tl.stop_output(late, 1.5) == (8000, 12000)
    assert len(tl.take(late)) == 2 * 4000  # stopped at once, the rest of the call goes on
    tl.close()
    assert tl.output_frames(early) == (0, 16000)
    assert len(tl.take(early)) == 2 * 16000


def test_late_packet_is_dropped_and_counted(recbuf: ModuleType) -> None:
    tl = recbuf.StereoTimeline()
    tl.feed(1, 5, 0, 0, b"\xff" * 160, 0.0)
    tl.tick(1.0)  # commits up to 0.8 s
    tl.feed(1, 5, 160, 0, b"\x80" * 160, 1.0)  # ts says 20 ms: long committed
    assert tl.late(1) == 1


def test_feed_after_close_is_ignored_and_outputs_refused(recbuf: ModuleType) -> None:
    tl = recbuf.StereoTimeline()
    out = tl.add_output(1, 2, 3, False, 0.0)
    tl.close()
    tl.feed(0, 1, 0, 0, b"\x80" * 160, 0.0)
    assert tl.take(out) == b"" and tl.end == 0
    with pytest.raises(ValueError):
        tl.add_output(2, 2, 3, False, 0.0)
    with pytest.raises(ValueError):
        recbuf.StereoTimeline().add_output(1, 3, 3, False, 0.0)  # no such layout


def test_unwritable_file_is_reported_not_raised(recbuf: ModuleType, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    tl = recbuf.StereoTimeline()
    writer = recbuf.Writer()
    writer.register(tl, 0.0)
    out = tl.add_output(7, 2, 3, False, 0.0, bytes(blocker / "x.wav"))
    good = tl.add_output(8, 2, 3, False, 0.0, bytes(tmp_path / "ok.wav"))
    tl.feed(0, 1, 0, 0, b"\x80" * 160, 0.0)
    writer.run_pass(0.25)
    failures = writer.failures()
    assert [ident for ident, _err in failures] == [7] and failures[0][1] != 0
    assert tl.output_state(out)[1] == failures[0][1]
    tl.close()
    writer.run_pass(0.5)
    assert writer.failures() == [] and writer.reap() == 1
    assert tl.output_state(good) == (recbuf.FINISHED, 0)
    # 160 samples of audio, and the silence the 0.25 s pass had committed after it (0.05 s)
    assert (tmp_path / "ok.wav").stat().st_size == 44 + 4 * (round(0.25 * 8000) - 1600)


def test_writer_thread_writes_and_syncs(recbuf: ModuleType, tmp_path: Path) -> None:
    writer = recbuf.Writer()
    writer.start(0.05)
    try:
        timelines = []
        for k in range(3):
            tl = recbuf.StereoTimeline()
            writer.register(tl, 0.0)  # the writer's clock is CLOCK_MONOTONIC, as ours here
            t0 = time.monotonic()
            tl.add_output(k, 2, 3, False, t0, bytes(tmp_path / f"{k}.wav"))
            for i in range(50):
                tl.feed(0, 1, 160 * i, 0, b"\x80" * 160, t0 + 0.02 * i)
            tl.close()
            timelines.append(tl)
        writer.sync()  # a whole pass after the closes: every file is complete
        for k in range(3):
            with wave.open(str(tmp_path / f"{k}.wav")) as w:
                assert w.getnframes() == 8000
        assert writer.reap() == 3 and writer.registered() == 0
    finally:
        writer.stop()
    assert not writer.running
