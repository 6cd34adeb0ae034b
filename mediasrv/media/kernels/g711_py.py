"""ITU-T G.711 µ-law and A-law: pure-Python reference twin of ``cext.g711``.

Encoding follows the ITU-T G.191 reference (``ulaw_compress`` / ``alaw_compress``): negative
samples are folded with the one's complement (``~x``), which makes both laws exactly
symmetric around -0.5. Decoding yields the G.711 reconstruction values scaled to 16 bits
(µ-law: ((2q+33) << (s+2)) - 132, A-law: 8·(2q+1) or 8·((2q+33) << (s-1))).
The PCMU<->PCMA tables are the direct code conversions of G.711 Tables 3 and 4 (as carried by
the Sun reference implementation, with its two published corrections), not decode+encode.

All PCM is 16-bit signed little-endian, mono.
"""

from __future__ import annotations

import sys
from array import array
from functools import cache

ULAW_CLIP = 0x1FFF  # 14-bit magnitude after adding the bias (G.711 µ-law overload)
ULAW_BIAS = 33  # 0x84 >> 2: the µ-law bias on the 14-bit scale
ALAW_AMI_MASK = 0x55  # A-law inverts the even bits (G.711 §3.3, Table 1a note)


def linear_to_ulaw(sample: int) -> int:
    """Encode one 16-bit sample to a µ-law code (G.711 Table 2a; G.191 ulaw_compress)."""
    magnitude = ((~sample if sample < 0 else sample) >> 2) + ULAW_BIAS
    if magnitude > ULAW_CLIP:
        magnitude = ULAW_CLIP
    segment = 1
    rest = magnitude >> 6
    while rest:
        segment += 1
        rest >>= 1
    code = ((8 - segment) << 4) | (15 - ((magnitude >> segment) & 0x0F))
    return code | 0x80 if sample >= 0 else code


def ulaw_to_linear(code: int) -> int:
    """Decode one µ-law code to its 16-bit reconstruction value (G.711 Table 2a)."""
    inverted = ~code & 0xFF
    segment = (inverted >> 4) & 0x07
    step = inverted & 0x0F
    magnitude = ((2 * step + 33) << (segment + 2)) - 132
    return -magnitude if inverted & 0x80 else magnitude


def linear_to_alaw(sample: int) -> int:
    """Encode one 16-bit sample to an A-law code (G.711 Table 1a; G.191 alaw_compress)."""
    magnitude = (~sample if sample < 0 else sample) >> 4
    if magnitude > 15:
        exponent = 1
        while magnitude > 31:
            magnitude >>= 1
            exponent += 1
        magnitude = (magnitude - 16) + (exponent << 4)
    if sample >= 0:
        magnitude |= 0x80
    return magnitude ^ ALAW_AMI_MASK


def alaw_to_linear(code: int) -> int:
    """Decode one A-law code to its 16-bit reconstruction value (G.711 Table 1a)."""
    folded = code ^ ALAW_AMI_MASK
    segment = (folded >> 4) & 0x07
    step = folded & 0x0F
    if segment == 0:
        magnitude = (step << 4) + 8
    else:
        magnitude = ((step << 4) + 0x108) << (segment - 1)
    return magnitude if folded & 0x80 else -magnitude


# G.711 Tables 3 and 4, indexed by the magnitude part of the code (1-based values), as in the
# Sun reference with its corrections (µ 80 -> A 80 and A 79 -> µ 80).
_U2A = (
    1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8,
    9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
    25, 27, 29, 31, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96,
    97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112,
    113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128,
)  # fmt: skip
_A2U = (
    1, 3, 5, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23,
    24, 25, 26, 27, 28, 29, 30, 31, 32, 32, 33, 33, 34, 34, 35, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 48, 49, 49,
    50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 64,
    65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
)  # fmt: skip


def ulaw_code_to_alaw(code: int) -> int:
    """Convert one µ-law code to A-law directly (G.711 Table 3)."""
    if code & 0x80:
        return 0xD5 ^ (_U2A[0xFF ^ code] - 1)
    return 0x55 ^ (_U2A[0x7F ^ code] - 1)


def alaw_code_to_ulaw(code: int) -> int:
    """Convert one A-law code to µ-law directly (G.711 Table 4)."""
    if code & 0x80:
        return 0xFF ^ _A2U[code ^ 0xD5]
    return 0x7F ^ _A2U[code ^ 0x55]


ULAW_TO_ALAW = bytes(ulaw_code_to_alaw(c) for c in range(256))
ALAW_TO_ULAW = bytes(alaw_code_to_ulaw(c) for c in range(256))
ULAW_DECODE = tuple(ulaw_to_linear(c) for c in range(256))
ALAW_DECODE = tuple(alaw_to_linear(c) for c in range(256))


@cache
def _encode_table(law: str) -> bytes:
    """A 65536-entry table indexed by the sample's unsigned 16-bit pattern."""
    encode = linear_to_ulaw if law == "ulaw" else linear_to_alaw
    return bytes(encode(i - 65536 if i >= 32768 else i) for i in range(65536))


def _pcm_samples(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
    samples = array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _pcm_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def _encode(pcm: bytes, law: str) -> bytes:
    table = _encode_table(law)
    return bytes(table[s & 0xFFFF] for s in _pcm_samples(bytes(pcm)))


def ulaw_decode(data: bytes) -> bytes:
    """µ-law bytes -> 16-bit little-endian PCM."""
    return _pcm_bytes(array("h", [ULAW_DECODE[c] for c in bytes(data)]))


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes -> 16-bit little-endian PCM."""
    return _pcm_bytes(array("h", [ALAW_DECODE[c] for c in bytes(data)]))


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian PCM -> µ-law bytes."""
    return _encode(pcm, "ulaw")


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian PCM -> A-law bytes."""
    return _encode(pcm, "alaw")


def ulaw_to_alaw(data: bytes) -> bytes:
    """Transcode PCMU payload to PCMA (G.711 Table 3)."""
    return bytes(data).translate(ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    """Transcode PCMA payload to PCMU (G.711 Table 4)."""
    return bytes(data).translate(ALAW_TO_ULAW)
