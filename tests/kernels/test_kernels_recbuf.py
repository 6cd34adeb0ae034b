"""Stereo recording timeline: both twins agree bit for bit, and both write exactly what the
reference recorder (mediasrv.media.recorder.StereoRecorder) writes for the same packets."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from types import ModuleType

import pytest
from kernel_twins import kernel_pair

from mediasrv.media.api import RecordMode
from mediasrv.media.codec import Codec
from mediasrv.media.kernels import load_kernel
from mediasrv.media.recorder import RecordingFormat, RecordingWriter, StereoRecorder

Packet = tuple[int, int, int, int, bytes, float]  # channel, ssrc, ts, codec, payload, arrival


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


def run_timeline(
    recbuf: ModuleType,
    packets: list[Packet],
    ulaw: bool = False,
    mode: tuple[bool, bool] = (True, True),
) -> bytes:
    tl = recbuf.StereoTimeline(mode[0], mode[1], ulaw)
    out = b""
    next_tick = 0.25
    for channel, ssrc, ts, codec, payload, now in packets:
        while now >= next_tick:
            tl.tick(next_tick)
            out += tl.take()
            next_tick += 0.25
        tl.feed(channel, ssrc, ts, codec, payload, now)
    tl.close()
    return out + tl.take()


def run_reference(
    tmp_path: Path, packets: list[Packet], ulaw: bool = False, mode: RecordMode = RecordMode.BOTH
) -> bytes:
    writer = RecordingWriter()
    fmt = RecordingFormat.ULAW if ulaw else RecordingFormat.PCM16
    path = tmp_path / f"ref-{ulaw}-{mode.value}.wav"
    rec = StereoRecorder(path, writer, mode, fmt)
    next_tick = 0.25
    for channel, ssrc, ts, codec, payload, now in packets:
        while now >= next_tick:
            rec.tick(next_tick)
            next_tick += 0.25
        rec.feed(channel, ssrc, ts, Codec(codec), payload, now)
    rec.close()
    assert rec.closed_future is not None
    rec.closed_future.result(timeout=10)
    data = path.read_bytes()
    header = data.index(b"data") + 8
    return data[header:]


@pytest.mark.parametrize("seed", range(3))
def test_twins_agree(seed: int) -> None:
    py, cy = kernel_pair("recbuf")
    packets = network(random.Random(seed))
    for ulaw in (False, True):
        assert run_timeline(py, packets, ulaw) == run_timeline(cy, packets, ulaw)


@pytest.mark.parametrize("ulaw", [False, True])
def test_same_bytes_as_the_reference_recorder(
    recbuf: ModuleType, tmp_path: Path, ulaw: bool
) -> None:
    packets = network(random.Random(42))
    assert run_timeline(recbuf, packets, ulaw) == run_reference(tmp_path, packets, ulaw)


@pytest.mark.parametrize(
    ("mode", "flags"), [(RecordMode.CALLER, (True, False)), (RecordMode.OPERATOR, (False, True))]
)
def test_one_channel_modes_match_reference(
    recbuf: ModuleType, tmp_path: Path, mode: RecordMode, flags: tuple[bool, bool]
) -> None:
    packets = network(random.Random(7), seconds=1.5)
    assert run_timeline(recbuf, packets, mode=flags) == run_reference(tmp_path, packets, mode=mode)


def test_channels_placed_by_timestamp(recbuf: ModuleType) -> None:
    """A lost packet leaves silence of its length; the next lands by its timestamp."""
    tone = bytes([0x80]) * 160  # µ-law positive peak
    tl = recbuf.StereoTimeline()
    for i in (0, 1, 3):  # packet 2 lost
        tl.feed(0, 1, 1000 + 160 * i, 0, tone, 0.02 * i)
    tl.close()
    frames = struct.unpack(f"<{4 * 160 * 2}h", tl.take())
    left = frames[0::2]
    assert left[:320] == (32124,) * 320
    assert left[320:480] == (0,) * 160
    assert left[480:640] == (32124,) * 160
    assert set(frames[1::2]) == {0}


def test_late_packet_is_dropped_and_counted(recbuf: ModuleType) -> None:
    tl = recbuf.StereoTimeline()
    tl.feed(1, 5, 0, 0, b"\xff" * 160, 0.0)
    tl.tick(1.0)  # commits up to 0.8 s
    tl.feed(1, 5, 160, 0, b"\x80" * 160, 1.0)  # ts says 20 ms: long committed
    assert tl.late(1) == 1


def test_feed_after_close_is_ignored(recbuf: ModuleType) -> None:
    tl = recbuf.StereoTimeline()
    tl.close()
    tl.feed(0, 1, 0, 0, b"\x80" * 160, 0.0)
    assert tl.take() == b"" and tl.end == 0
