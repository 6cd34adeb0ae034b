"""Prompt playout (gap-free playlists, loop, whisper mixing); both implementations, and the
C player against the Python reference bit for bit on the same input."""

from __future__ import annotations

import random
import struct
from types import ModuleType

import pytest
from kernel_twins import kernel_pair

from mediasrv.media.kernels import load_kernel

PCMU, PCMA = 0, 8


@pytest.fixture
def playout(impl_kind: str) -> ModuleType:
    return load_kernel("playout", python=impl_kind == "python")


@pytest.fixture
def g711(impl_kind: str) -> ModuleType:
    return load_kernel("g711", python=impl_kind == "python")


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def ramp(n: int, step: int = 37) -> bytes:
    return pcm(*(((i * step) % 20000) - 10000 for i in range(n)))


def frames(player: object, codec: int, limit: int = 1000) -> list[bytes]:
    out = []
    for _ in range(limit):
        frame = player.next_frame(codec)  # type: ignore[attr-defined]
        if frame is None:
            return out
        out.append(frame)
    return out


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_one_prompt_is_its_encoding_padded_with_silence(
    playout: ModuleType, g711: ModuleType, codec: int
) -> None:
    data = ramp(400)  # 2.5 frames
    player = playout.Player([playout.PromptFrames(data)], False, False)
    got = frames(player, codec)
    encode = g711.alaw_encode if codec == PCMA else g711.ulaw_encode
    silence = encode(pcm(0))
    assert len(got) == 3 and all(len(f) == 160 for f in got)
    assert b"".join(got) == encode(data) + silence * 80
    assert player.done and player.sent == 3


def test_playlist_is_gap_free(playout: ModuleType, g711: ModuleType) -> None:
    """Three files ("you are caller number 3") follow sample by sample: no padding inside."""
    parts = [ramp(250, 11), ramp(130, 23), ramp(300, 41)]
    player = playout.Player([playout.PromptFrames(p) for p in parts], False, False)
    got = frames(player, PCMU)
    assert len(got) == -(-680 // 160)
    assert b"".join(got)[:680] == g711.ulaw_encode(b"".join(parts))
    assert b"".join(got)[680:] == g711.ulaw_encode(pcm(0)) * (len(got) * 160 - 680)


def test_last_index_names_the_prompt_each_frame_began_in(playout: ModuleType) -> None:
    parts = [ramp(250), ramp(130), ramp(300)]
    player = playout.Player([playout.PromptFrames(p) for p in parts], False, False)
    began = []
    while player.next_frame(PCMU) is not None:
        began.append(player.last_index)
    # Frames start at samples 0, 160, 320, 480, 640: prompts 0, 0, 1, 2, 2.
    assert began == [0, 0, 1, 2, 2]


def test_loop_wraps_without_a_gap(playout: ModuleType, g711: ModuleType) -> None:
    data = ramp(250)
    player = playout.Player([playout.PromptFrames(data)], True, False)
    got = b"".join(player.next_frame(PCMA) for _ in range(10))
    assert got == (g711.alaw_encode(data) * 7)[:1600]
    assert not player.done


def test_mix_without_partner_is_the_prompt_alone(playout: ModuleType) -> None:
    prompt = playout.PromptFrames(ramp(480))
    plain = frames(playout.Player([prompt], False, False), PCMU)
    mixed = frames(playout.Player([prompt], False, True), PCMU)
    assert mixed == plain


def test_mix_adds_the_partner_with_saturation(playout: ModuleType, g711: ModuleType) -> None:
    prompt = playout.PromptFrames(pcm(*([30000] * 160 + [1000] * 160)))
    player = playout.Player([prompt], False, True)
    partner = g711.ulaw_encode(pcm(*([8000] * 160)))
    player.feed(partner, PCMU)
    assert not player.primed
    # Not primed yet (two frames of jitter margin): the first frame is the prompt alone.
    assert player.next_frame(PCMU) == g711.ulaw_encode(pcm(*([30000] * 160)))
    player.feed(partner, PCMU)
    decoded = struct.unpack("<h", g711.ulaw_decode(partner[:1]))[0]
    second = player.next_frame(PCMU)
    assert second == g711.ulaw_encode(pcm(*([1000 + decoded] * 160)))
    # The FIFO holds one more frame of the partner: mixed into the padding after the end.
    assert player.next_frame(PCMU) is None


def test_mix_saturates_at_full_scale(playout: ModuleType, g711: ModuleType) -> None:
    prompt = playout.PromptFrames(pcm(*([30000] * 160 + [-30000] * 160 + [5] * 160)))
    player = playout.Player([prompt], False, True)
    player.feed(g711.ulaw_encode(pcm(*([20000] * 160 + [-20000] * 160))), PCMU)
    # 40 ms buffered: primed at once; +20000 + 30000 and -20000 - 30000 clip to full scale.
    assert player.next_frame(PCMU) == g711.ulaw_encode(pcm(*([32767] * 160)))
    assert player.next_frame(PCMU) == g711.ulaw_encode(pcm(*([-32768] * 160)))
    assert player.next_frame(PCMU) == g711.ulaw_encode(pcm(*([5] * 160)))  # partner drained


def test_fifo_keeps_the_newest_60_ms(playout: ModuleType, g711: ModuleType) -> None:
    player = playout.Player([playout.PromptFrames(pcm(*([0] * 800)))], False, True)
    for value in (1000, 2000, 3000, 4000, 5000):  # 100 ms arrive at once: keep the last 60
        player.feed(g711.alaw_encode(pcm(*([value] * 160))), PCMA)
    heard = [g711.alaw_decode(player.next_frame(PCMA) or b"") for _ in range(4)]
    expect = [g711.alaw_decode(g711.alaw_encode(pcm(*([v] * 160)))) for v in (3000, 4000, 5000)]
    assert heard[:3] == expect
    assert heard[3] == g711.alaw_decode(g711.alaw_encode(pcm(*([0] * 160))))


def test_bad_input_is_refused(playout: ModuleType) -> None:
    with pytest.raises(ValueError, match="even length"):
        playout.PromptFrames(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="at least one sample"):
        playout.PromptFrames(b"")
    with pytest.raises(ValueError, match="at least one prompt"):
        playout.Player([], False, False)


@pytest.mark.parametrize("seed", range(6))
def test_c_player_equals_the_reference_bit_for_bit(seed: int) -> None:
    """Random playlists, loop/mix flags, codecs and partner packets (sizes, codecs, timing):
    the C player and the Python reference produce the same frames and positions."""
    ref, cy = kernel_pair("playout")
    rng = random.Random(seed)
    parts = [
        pcm(*(rng.randint(-32768, 32767) for _ in range(rng.randint(1, 500))))
        for _ in range(rng.randint(1, 4))
    ]
    loop, mix = rng.random() < 0.5, rng.random() < 0.7
    players = [
        m.Player([m.PromptFrames(p) for p in parts], loop, mix) for m in (ref, cy)
    ]
    for _ in range(200):
        if rng.random() < 0.8:
            n = rng.choice([80, 160, 160, 160, 240, 600])
            payload = bytes(rng.randrange(256) for _ in range(n))
            codec = rng.choice([PCMU, PCMA])
            for player in players:
                player.feed(payload, codec)
        codec = rng.choice([PCMU, PCMA])
        out = [player.next_frame(codec) for player in players]
        assert out[0] == out[1]
        state = [(p.index, p.offset, p.last_index, p.sent, p.primed, p.done) for p in players]
        assert state[0] == state[1]
        if out[0] is None:
            break
