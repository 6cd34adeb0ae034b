"""Test WAV files written byte by byte (independently of the reader under test), and spectrum
measurements."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

PCM, FLOAT, ALAW, ULAW, EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

# name -> (format tag, bits, extensible?)
ENCODINGS: dict[str, tuple[int, int, bool]] = {
    "pcm8": (PCM, 8, False),
    "pcm16": (PCM, 16, False),
    "pcm24": (PCM, 24, False),
    "pcm32": (PCM, 32, False),
    "float32": (FLOAT, 32, False),
    "float64": (FLOAT, 64, False),
    "ulaw": (ULAW, 8, False),
    "alaw": (ALAW, 8, False),
    "ext-pcm16": (PCM, 16, True),
    "ext-pcm24": (PCM, 24, True),
    "ext-pcm32": (PCM, 32, True),
    "ext-float32": (FLOAT, 32, True),
}


def tone(freq: float, seconds: float, rate: int, dbov: float = -10.0) -> np.ndarray:
    """A sine whose RMS is ``dbov`` (0 dBov = RMS of a full-scale square wave)."""
    t = np.arange(int(seconds * rate)) / rate
    return np.sqrt(2) * 10 ** (dbov / 20) * np.sin(2 * np.pi * freq * t)


def _g711_ulaw(x: np.ndarray) -> bytes:
    """µ-law by the G.711 segment rule (bias 0x84), independent of mediasrv's tables."""
    s = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int32) >> 2  # 14-bit
    sign = np.where(s < 0, 0x80, 0x00)
    mag = np.minimum(np.abs(s), 8158) + 33
    seg = np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 5
    seg = np.clip(seg, 0, 7)
    mant = (mag >> (seg + 1)) & 0x0F
    return (~(sign | (seg << 4) | mant) & 0xFF).astype(np.uint8).tobytes()


def _g711_alaw(x: np.ndarray) -> bytes:
    s = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int32) >> 3  # 13-bit
    sign = np.where(s >= 0, 0x80, 0x00)
    mag = np.minimum(np.where(s >= 0, s, -s - 1), 4095)
    seg = np.clip(np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4, 0, 7)
    mant = np.where(seg == 0, mag >> 1, mag >> seg) & 0x0F
    return ((sign | (seg << 4) | mant) ^ 0x55).astype(np.uint8).tobytes()


def encode(x: np.ndarray, fmt: int, bits: int) -> bytes:
    """x: float in [-1, 1], interleaved already."""
    if fmt == FLOAT:
        return x.astype("<f4" if bits == 32 else "<f8").tobytes()
    if fmt == ULAW:
        return _g711_ulaw(x)
    if fmt == ALAW:
        return _g711_alaw(x)
    if bits == 8:
        return np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    if bits == 24:
        v = np.clip(np.round(x * 8388608), -8388608, 8388607).astype(np.int32)
        b = v.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        return b.tobytes()
    dtype, scale = ("<i2", 32768) if bits == 16 else ("<i4", 2147483648)
    hi = scale - 1
    return np.clip(np.round(x * scale), -scale, hi).astype(dtype).tobytes()


def wav_bytes(
    samples: np.ndarray, rate: int, encoding: str = "pcm16", *, data_size: int | None = None
) -> bytes:
    """A RIFF/WAVE file; samples float [-1, 1], shape [n] or [n, channels]."""
    fmt, bits, ext = ENCODINGS[encoding]
    x = samples if samples.ndim == 2 else samples[:, None]
    channels = x.shape[1]
    data = encode(x.reshape(-1), fmt, bits)
    block = channels * bits // 8
    if ext:
        body = struct.pack(
            "<HHIIHHHHI", EXTENSIBLE, channels, rate, rate * block, block, bits, 22, bits, 0
        ) + struct.pack("<H", fmt) + GUID_TAIL
    else:
        body = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
        if fmt != PCM:
            body += struct.pack("<H", 0)  # cbSize
    fmt_chunk = b"fmt " + struct.pack("<I", len(body)) + body
    # an unknown chunk before "data", as many editors write (LIST/INFO): must be skipped
    extra = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"
    size = len(data) if data_size is None else data_size
    data_chunk = b"data" + struct.pack("<I", size) + data + (b"\x00" if len(data) & 1 else b"")
    riff = b"WAVE" + fmt_chunk + extra + data_chunk
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def write(path: Path, samples: np.ndarray, rate: int, encoding: str = "pcm16") -> Path:
    path.write_bytes(wav_bytes(samples, rate, encoding))
    return path


def band_db(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    """Energy (dB, arbitrary reference) of x between lo and hi Hz (Hann window)."""
    w = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * w)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    e = float(spec[(f >= lo) & (f <= hi)].sum())
    return 10 * np.log10(max(e, 1e-30))


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])
