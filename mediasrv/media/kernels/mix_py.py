"""Mixing: a prompt or tone added into one leg's audio with gain and saturation; reference
twin of ``cext.mix``. Gains are Q12 fixed point (4096 = unity) so both twins agree bit for bit.

PCM is 16-bit signed little-endian. The G.711 variants mix into an RTP payload in place
(decode, add, re-encode with the same law), which is how a whisper reaches only one leg.
"""

from __future__ import annotations

import math

from . import g711_py

UNITY = 4096  # Q12
MAX_GAIN = 16 * UNITY  # +24 dB; keeps sample·gain inside 32 bits


def gain_from_db(db: float) -> int:
    """A Q12 gain for ``db`` decibels (0 dB -> 4096)."""
    return round(UNITY * math.pow(10.0, db / 20.0))


def _clamp(value: int) -> int:
    return -32768 if value < -32768 else 32767 if value > 32767 else value


def _sample(buf: bytes | bytearray, i: int) -> int:
    v = buf[2 * i] | (buf[2 * i + 1] << 8)
    return v - 65536 if v & 0x8000 else v


def _check_gain(gain: int) -> None:
    if not 0 <= gain <= MAX_GAIN:
        raise ValueError(f"gain must be 0..{MAX_GAIN} (Q12), got {gain}")


def _check(pcm: bytes | bytearray) -> None:
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")


def scale(pcm: bytes, gain: int) -> bytes:
    """Every sample times ``gain``/4096 (floor), saturated to 16 bits."""
    _check_gain(gain)
    _check(pcm)
    data = bytes(pcm)
    out = bytearray(len(data))
    for i in range(len(data) // 2):
        v = _clamp((_sample(data, i) * gain) >> 12) & 0xFFFF
        out[2 * i] = v & 0xFF
        out[2 * i + 1] = v >> 8
    return bytes(out)


def mix_into(dst: bytearray, src: bytes, gain: int = UNITY) -> int:
    """dst[i] = sat(dst[i] + src[i]·gain/4096) over the common length; returns samples mixed."""
    _check_gain(gain)
    _check(dst)
    _check(src)
    data = bytes(src)
    n = min(len(dst), len(data)) // 2
    for i in range(n):
        v = _clamp(_sample(dst, i) + ((_sample(data, i) * gain) >> 12)) & 0xFFFF
        dst[2 * i] = v & 0xFF
        dst[2 * i + 1] = v >> 8
    return n


def mix_into_g711(payload: bytearray, src: bytes, gain: int = UNITY, alaw: bool = False) -> int:
    """Mix 16-bit PCM into a G.711 payload in place; returns samples mixed."""
    _check_gain(gain)
    _check(src)
    data = bytes(src)
    decode = g711_py.ALAW_DECODE if alaw else g711_py.ULAW_DECODE
    encode = g711_py.linear_to_alaw if alaw else g711_py.linear_to_ulaw
    n = min(len(payload), len(data) // 2)
    for i in range(n):
        payload[i] = encode(_clamp(decode[payload[i]] + ((_sample(data, i) * gain) >> 12)))
    return n
