"""G.711 codecs as the media layer sees them: payload type, name, and conversions.

The conversions themselves are the media kernels (``mediasrv.media.kernels.g711``: Cython,
or the pure-Python reference with ``MEDIASRV_NO_EXTENSIONS=1``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import numpy as np

from mediasrv.media.kernels import g711


class Codec(enum.IntEnum):
    """The audio codecs we negotiate; the value is the static payload type (RFC 3551 §6)."""

    PCMU = 0
    PCMA = 8

    @classmethod
    def by_name(cls, name: str) -> Codec | None:
        return _BY_NAME.get(name.upper())


_BY_NAME = {c.name: c for c in Codec}


def transcoder(src: Codec, dst: Codec) -> Callable[[bytes], bytes] | None:
    """PCMU<->PCMA payload conversion (G.711 Tables 3/4), None when the codecs match."""
    if src is dst:
        return None
    return g711.ulaw_to_alaw if src is Codec.PCMU else g711.alaw_to_ulaw


def decode(codec: Codec, payload: bytes) -> np.ndarray:
    """G.711 payload -> int16 samples."""
    pcm = g711.ulaw_decode(payload) if codec is Codec.PCMU else g711.alaw_decode(payload)
    return np.frombuffer(pcm, dtype="<i2")


def decode_pcm(codec: Codec, payload: bytes) -> bytes:
    """G.711 payload -> 16-bit little-endian PCM bytes."""
    return g711.ulaw_decode(payload) if codec is Codec.PCMU else g711.alaw_decode(payload)


def encode(codec: Codec, pcm: np.ndarray) -> bytes:
    """int16 samples -> G.711 payload."""
    data = pcm.astype("<i2").tobytes()
    return g711.ulaw_encode(data) if codec is Codec.PCMU else g711.alaw_encode(data)


def encode_pcm(codec: Codec, pcm: bytes) -> bytes:
    """16-bit little-endian PCM bytes -> G.711 payload."""
    return g711.ulaw_encode(pcm) if codec is Codec.PCMU else g711.alaw_encode(pcm)
