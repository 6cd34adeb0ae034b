"""G.711 codecs as the media layer sees them: payload type, name, and conversions.

The conversions (ITU-T G.711 µ-law/A-law) come from ``mediasrv.media.kernels`` when that
package provides them; :mod:`mediasrv.media._g711_local` is the stand-in until then.
"""

from __future__ import annotations

import enum

import numpy as np

from mediasrv.media import _g711_local as _g711


class Codec(enum.IntEnum):
    """The audio codecs we negotiate; the value is the static payload type (RFC 3551 §6)."""

    PCMU = 0
    PCMA = 8

    @classmethod
    def by_name(cls, name: str) -> Codec | None:
        return _BY_NAME.get(name.upper())


_BY_NAME = {c.name: c for c in Codec}

# 256-entry tables: bytes.translate() transcodes a whole payload in C.
ULAW_TO_ALAW: bytes = _g711.ULAW_TO_ALAW
ALAW_TO_ULAW: bytes = _g711.ALAW_TO_ULAW


def transcode_table(src: Codec, dst: Codec) -> bytes | None:
    """The translate() table from ``src`` to ``dst`` payloads, None if they are the same."""
    if src is dst:
        return None
    return ULAW_TO_ALAW if src is Codec.PCMU else ALAW_TO_ULAW


def decode(codec: Codec, payload: bytes) -> np.ndarray:
    """G.711 payload -> int16 samples."""
    table = _g711.ULAW_DECODE if codec is Codec.PCMU else _g711.ALAW_DECODE
    return table[np.frombuffer(payload, dtype=np.uint8)]


def encode(codec: Codec, pcm: np.ndarray) -> bytes:
    """int16 samples -> G.711 payload."""
    table = _g711.ULAW_ENCODE if codec is Codec.PCMU else _g711.ALAW_ENCODE
    return bytes(table[pcm.astype(np.int16).view(np.uint16)])


def silence(codec: Codec) -> int:
    """The code of a zero sample (µ-law 0xFF, A-law 0xD5)."""
    return 0xFF if codec is Codec.PCMU else 0xD5
