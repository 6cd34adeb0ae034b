"""G.711 kernels: ITU reconstruction values for all 256 codes, encode parity over every
16-bit value, round trips, the PCMU<->PCMA tables; both implementations."""

from __future__ import annotations

import itertools
import random
import struct
from types import ModuleType

import pytest
from kernel_twins import kernel_pair

from mediasrv.media.kernels import load_kernel

ALL_CODES = bytes(range(256))
ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))


@pytest.fixture
def g711(impl_kind: str) -> ModuleType:
    return load_kernel("g711", python=impl_kind == "python")


def itu_ulaw_value(code: int) -> int:
    """G.711 Table 2a: code bits are inverted; P=1 positive; y = (2q+33)·2^s - 33 (14-bit)."""
    bits = code ^ 0xFF
    sign, segment, step = bits >> 7, (bits >> 4) & 7, bits & 15
    value = ((2 * step + 33) * 2**segment - 33) * 4  # 14-bit scale -> 16-bit
    return -value if sign else value


def itu_alaw_value(code: int) -> int:
    """G.711 Table 1a: even bits inverted; P=1 positive; y = 2q+1 (s=0), (2q+33)·2^(s-1)."""
    bits = code ^ 0x55
    sign, segment, step = bits >> 7, (bits >> 4) & 7, bits & 15
    value = (2 * step + 1) if segment == 0 else (2 * step + 33) * 2 ** (segment - 1)
    value *= 8  # 12-bit scale -> 16-bit
    return value if sign else -value


def decode_values(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


def test_ulaw_decode_all_codes_match_itu(g711: ModuleType) -> None:
    assert decode_values(g711.ulaw_decode(ALL_CODES)) == [itu_ulaw_value(c) for c in ALL_CODES]


def test_alaw_decode_all_codes_match_itu(g711: ModuleType) -> None:
    assert decode_values(g711.alaw_decode(ALL_CODES)) == [itu_alaw_value(c) for c in ALL_CODES]


def test_ulaw_known_codes(g711: ModuleType) -> None:
    # 0xFF is +0, 0x7F is -0, 0x80 is the positive peak 8031 (14-bit) = 32124.
    assert decode_values(g711.ulaw_decode(b"\xff\x7f\x80\x00")) == [0, 0, 32124, -32124]


def test_alaw_known_codes(g711: ModuleType) -> None:
    # 0xD5 is the smallest positive level, 0x55 the smallest negative, 0xAA the positive peak.
    assert decode_values(g711.alaw_decode(b"\xd5\x55\xaa\x2a")) == [8, -8, 32256, -32256]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_codes_round_trip(g711: ModuleType, law: str) -> None:
    """decode then encode returns every code, except µ-law's -0 (0x7F) which becomes +0."""
    pcm = getattr(g711, f"{law}_decode")(ALL_CODES)
    codes = getattr(g711, f"{law}_encode")(pcm)
    expected = bytearray(ALL_CODES)
    if law == "ulaw":
        expected[0x7F] = 0xFF
    assert codes == bytes(expected)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encode_every_sample_within_half_a_step(g711: ModuleType, law: str) -> None:
    """Each sample maps to a level no further than half its segment's step (or clips)."""
    codes = getattr(g711, f"{law}_encode")(ALL_SAMPLES)
    levels = decode_values(getattr(g711, f"{law}_decode")(codes))
    peak = 32124 if law == "ulaw" else 32256
    for sample, level in zip(range(-32768, 32768), levels, strict=True):
        if abs(sample) >= peak:
            assert abs(level) == peak
            continue
        magnitude = abs(level)
        step = max(16, 2 ** (magnitude.bit_length() - 5))  # coarse bound of the local step
        assert abs(sample - level) <= step, (sample, level)


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encode_is_monotonic_and_symmetric(g711: ModuleType, law: str) -> None:
    decode = getattr(g711, f"{law}_decode")
    codes = getattr(g711, f"{law}_encode")(ALL_SAMPLES)
    levels = decode_values(decode(codes))
    assert all(a <= b for a, b in itertools.pairwise(levels))
    # G.191 folds negatives with the one's complement: x and ~x differ only in the sign bit.
    for x in range(0, 32768, 7):
        assert codes[x + 32768] ^ codes[~x + 32768] == 0x80


def test_encode_parity_every_16_bit_value() -> None:
    py, cy = kernel_pair("g711")
    assert py.ulaw_encode(ALL_SAMPLES) == cy.ulaw_encode(ALL_SAMPLES)
    assert py.alaw_encode(ALL_SAMPLES) == cy.alaw_encode(ALL_SAMPLES)


def test_decode_and_transcode_parity_all_codes() -> None:
    py, cy = kernel_pair("g711")
    for name in ("ulaw_decode", "alaw_decode", "ulaw_to_alaw", "alaw_to_ulaw"):
        assert getattr(py, name)(ALL_CODES) == getattr(cy, name)(ALL_CODES), name


def test_random_payload_parity() -> None:
    py, cy = kernel_pair("g711")
    rng = random.Random(711)
    for size in (0, 1, 160, 240, 1500):
        payload = rng.randbytes(size)
        assert py.ulaw_to_alaw(payload) == cy.ulaw_to_alaw(payload)
        assert py.alaw_decode(payload) == cy.alaw_decode(payload)
        assert py.ulaw_encode(payload + payload) == cy.ulaw_encode(payload + payload)


def test_transcode_tables_preserve_sign_and_order(g711: ModuleType) -> None:
    u_levels = decode_values(g711.ulaw_decode(ALL_CODES))
    a_of_u = g711.ulaw_to_alaw(ALL_CODES)
    a_levels = decode_values(g711.alaw_decode(a_of_u))
    order = sorted(range(256), key=lambda c: u_levels[c])
    converted = [a_levels[c] for c in order]
    assert converted == sorted(converted)
    for code in range(256):
        assert (u_levels[code] >= 0) == (a_levels[code] > 0) or u_levels[code] == 0


def test_transcode_close_to_source_level(g711: ModuleType) -> None:
    """A converted code lies within one step of the source level (Tables 3 and 4)."""
    for src, dst, conv in (("ulaw", "alaw", "ulaw_to_alaw"), ("alaw", "ulaw", "alaw_to_ulaw")):
        src_levels = decode_values(getattr(g711, f"{src}_decode")(ALL_CODES))
        dst_levels = decode_values(getattr(g711, f"{dst}_decode")(getattr(g711, conv)(ALL_CODES)))
        for a, b in zip(src_levels, dst_levels, strict=True):
            step = max(16, 2 ** (max(abs(a), abs(b)).bit_length() - 4))
            assert abs(a - b) <= step, (src, a, b)


def test_alaw_ulaw_alaw_mostly_transparent(g711: ModuleType) -> None:
    back = g711.ulaw_to_alaw(g711.alaw_to_ulaw(ALL_CODES))
    # The tables merge 8 pairs of small A-law levels per sign into one µ-law code.
    assert sum(a == b for a, b in zip(back, ALL_CODES, strict=True)) == 240


def test_odd_pcm_length_is_a_clear_error(g711: ModuleType) -> None:
    with pytest.raises(ValueError, match="even length"):
        g711.ulaw_encode(b"\x00\x01\x02")


def test_accepts_bytearray_and_memoryview(g711: ModuleType) -> None:
    data = bytearray(b"\x00\x80\xff")
    assert g711.ulaw_decode(memoryview(data)) == g711.ulaw_decode(bytes(data))
    assert g711.alaw_encode(bytearray(b"\x10\x00")) == g711.alaw_encode(b"\x10\x00")
