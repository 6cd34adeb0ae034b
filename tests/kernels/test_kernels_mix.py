"""Mixing with Q12 gain and saturation, PCM and G.711 in place; both implementations."""

from __future__ import annotations

import random
import struct
from types import ModuleType

import pytest
from kernel_twins import kernel_pair

from mediasrv.media.kernels import load_kernel


@pytest.fixture
def mix(impl_kind: str) -> ModuleType:
    return load_kernel("mix", python=impl_kind == "python")


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def values(data: bytes | bytearray) -> tuple[int, ...]:
    return struct.unpack(f"<{len(data) // 2}h", bytes(data))


def test_gain_from_db(mix: ModuleType) -> None:
    assert mix.gain_from_db(0.0) == 4096
    assert mix.gain_from_db(-6.0) == 2053
    assert mix.gain_from_db(6.0) == 8173


def test_mix_saturates(mix: ModuleType) -> None:
    dst = bytearray(pcm(30000, -30000, 100, 0))
    assert mix.mix_into(dst, pcm(10000, -10000, -50, 7)) == 4
    assert values(dst) == (32767, -32768, 50, 7)


def test_mix_gain_floors(mix: ModuleType) -> None:
    dst = bytearray(pcm(0, 0, 0))
    mix.mix_into(dst, pcm(1001, -1001, 3), mix.gain_from_db(-6.0))
    assert values(dst) == ((1001 * 2053) >> 12, (-1001 * 2053) >> 12, (3 * 2053) >> 12)


def test_mix_uses_common_length(mix: ModuleType) -> None:
    dst = bytearray(pcm(1, 2, 3))
    assert mix.mix_into(dst, pcm(10)) == 1
    assert values(dst) == (11, 2, 3)


def test_scale(mix: ModuleType) -> None:
    assert values(mix.scale(pcm(20000, -20000, 5), 8192)) == (32767, -32768, 10)


def test_bad_input_is_a_clear_error(mix: ModuleType) -> None:
    with pytest.raises(ValueError, match="even length"):
        mix.mix_into(bytearray(3), pcm(1))
    with pytest.raises(ValueError, match="gain"):
        mix.scale(pcm(1), -1)
    with pytest.raises(ValueError, match="gain"):
        mix.mix_into(bytearray(2), pcm(1), mix.MAX_GAIN + 1)


@pytest.mark.parametrize("alaw", [False, True])
def test_mix_into_silent_g711_is_the_prompt(mix: ModuleType, alaw: bool) -> None:
    g711 = load_kernel("g711", python=True)
    prompt = pcm(*[(i * 997) % 20000 - 10000 for i in range(160)])
    silence = bytearray(b"\xd5" * 160 if alaw else b"\xff" * 160)  # the +0 codes
    mix.mix_into_g711(silence, prompt, alaw=alaw)
    encode = g711.alaw_encode if alaw else g711.ulaw_encode
    decode = g711.alaw_decode if alaw else g711.ulaw_decode
    expected = bytearray(encode(prompt))
    if alaw:  # A-law has no zero: +0 code 0xD5 decodes to +8, so levels may move one step
        got, want = values(decode(bytes(silence))), values(decode(bytes(expected)))
        assert all(abs(a - b) <= max(16, abs(b) >> 4) for a, b in zip(got, want, strict=True))
    else:
        assert silence == expected


def test_parity_random() -> None:
    py, cy = kernel_pair("mix")
    rng = random.Random(4)
    for _ in range(50):
        n = rng.randrange(0, 400)
        a = rng.randbytes(2 * n)
        b = rng.randbytes(2 * rng.randrange(0, 400))
        gain = rng.choice((0, 1, 4096, 2053, 65536, rng.randrange(65537)))
        da, db = bytearray(a), bytearray(a)
        assert py.mix_into(da, b, gain) == cy.mix_into(db, b, gain)
        assert da == db
        assert py.scale(a, gain) == cy.scale(a, gain)
        for alaw in (False, True):
            pa, pb = bytearray(a[:n]), bytearray(a[:n])
            assert py.mix_into_g711(pa, b, gain, alaw) == cy.mix_into_g711(pb, b, gain, alaw)
            assert pa == pb
