"""WAV input: PCM 8/16/24/32-bit, float, G.711 µ-law and A-law; channel split; resampling.

The standard library ``wave`` module reads only integer PCM, and ``audioop`` is gone in
Python 3.13, so the RIFF chunks are parsed here and G.711 is expanded with numpy
(ITU-T G.711 tables as in the reference ``ulaw2linear``/``alaw2linear``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


class AudioError(ValueError):
    """The file is not audio this module can read; the message says why."""


@dataclass(frozen=True)
class Audio:
    """Float32 samples in [-1, 1], shape [channels, n]."""

    samples: np.ndarray
    rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return float(self.samples.shape[1]) / self.rate


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.float32) / 32768.0


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0)))
    return np.where(a & 0x80, t, -t).astype(np.float32) / 32768.0


def _decode(data: bytes, fmt: int, bits: int) -> np.ndarray:
    if fmt == _ULAW and bits == 8:
        return _ulaw_table()[np.frombuffer(data, np.uint8)]
    if fmt == _ALAW and bits == 8:
        return _alaw_table()[np.frombuffer(data, np.uint8)]
    if fmt == _FLOAT and bits in (32, 64):
        return np.frombuffer(data, np.float32 if bits == 32 else np.float64).astype(np.float32)
    if fmt == _PCM:
        if bits == 8:
            return (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
        if bits == 16:
            return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        if bits == 24:
            b = np.frombuffer(data[: len(data) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
            v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
            return v.astype(np.float32) / 8388608.0
        if bits == 32:
            return np.frombuffer(data, "<i4").astype(np.float32) / 2147483648.0
    raise AudioError(f"unsupported WAV encoding (format tag {fmt}, {bits} bits)")


def _chunks(raw: bytes) -> dict[bytes, bytes]:
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise AudioError("not a RIFF/WAVE file")
    chunks: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        # A recorder killed mid-call may leave a 0 or oversize length: take what is there.
        chunks.setdefault(cid, raw[pos + 8 : pos + 8 + size] if size else raw[pos + 8 :])
        pos += 8 + size + (size & 1)
        if size == 0:
            break
    return chunks


def read_wav(path: Path) -> Audio:
    """Read a WAV file; raises AudioError with a clear reason for anything unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AudioError(f"{path}: {exc.strerror or exc}") from exc
    chunks = _chunks(raw)
    if b"fmt " not in chunks or b"data" not in chunks:
        raise AudioError(f"{path}: WAV file without fmt or data chunk")
    fmt_chunk = chunks[b"fmt "]
    if len(fmt_chunk) < 16:
        raise AudioError(f"{path}: truncated fmt chunk")
    fmt, channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt_chunk[:16])
    if fmt == _EXTENSIBLE and len(fmt_chunk) >= 26:
        fmt = struct.unpack("<H", fmt_chunk[24:26])[0]
    if channels < 1 or rate < 1000 or block < 1:
        raise AudioError(f"{path}: bad WAV header ({channels} channels, {rate} Hz)")
    data = chunks[b"data"]
    data = data[: len(data) // block * block]
    samples = _decode(data, fmt, bits).reshape(-1, channels).T
    return Audio(np.ascontiguousarray(samples, dtype=np.float32), rate)


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Polyphase resampling (scipy ``resample_poly``, Kaiser-windowed FIR)."""
    if src == dst:
        return x.astype(np.float32, copy=False)
    g = gcd(src, dst)
    return resample_poly(x, dst // g, src // g).astype(np.float32)
