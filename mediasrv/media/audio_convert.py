"""Any WAV file -> an 8 kHz mono 16-bit PCM prompt, resampled, loudness-normalised, cached.

Input: RIFF/WAVE with ``WAVE_FORMAT_PCM`` (8-bit unsigned, 16/24/32-bit signed),
``WAVE_FORMAT_IEEE_FLOAT`` (32/64-bit), G.711 A-law / µ-law (8-bit), or
``WAVE_FORMAT_EXTENSIBLE`` wrapping one of those; any rate from 4 to 384 kHz, any number of
channels (averaged to mono). The standard ``wave`` module of Python 3.11 reads only integer
PCM and ``audioop`` is gone in 3.13, so the chunks are parsed here.

Resampling: :func:`scipy.signal.resample_poly` with a Kaiser-windowed FIR (beta 8.6, about
-85 dB in the stop band) whose cut-off is the output's Nyquist frequency, so a 6 kHz tone
in a 48 kHz file is removed, not folded to 2 kHz as sample dropping would do.

Loudness target (:data:`TARGET_DBOV`): the *active* level (ITU-T P.56 idea: the RMS over
the parts that carry sound, not over pauses) is set to -20 dBov, and peaks are limited to
-1 dBov (:data:`PEAK_DBOV`). dBov is relative to the digital overload point (ITU-T G.100.1:
0 dBov = RMS of a full-scale square wave, so a full-scale sine is -3 dBov). Why -20: the
nominal speech level on a digital telephone path is about -26 dBov (P.56 test level);
prompts a few dB above it are heard clearly over a handset's noise and match the loudness of
common IVR prompt sets, while speech's 12-18 dB crest factor still fits under the limiter,
so it only touches rare peaks, and G.711's companding keeps a good SNR at that level.
A LUFS target (EBU R128 / BS.1770) is defined for full-band programme loudness with a
K-weighting designed at 48 kHz; for a 300-3400 Hz telephone band the plain active RMS is
the measure the telephony standards use.

Errors: a file that is not a WAV, is truncated, holds no samples, is longer than the limit
or uses an unsupported encoding raises :class:`PromptError` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tempfile
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mediasrv.media import codec as g711
from mediasrv.media.codec import Codec
from mediasrv.media.prompt import PromptError

__all__ = [
    "MAX_SECONDS",
    "PEAK_DBOV",
    "RATE",
    "TARGET_DBOV",
    "CachedPrompt",
    "ConvertCache",
    "Converted",
    "PromptError",
    "active_level_dbov",
    "convert",
    "convert_file",
    "read_wav",
    "write_wav",
]

RATE = 8000  # G.711 sampling rate (ITU-T G.711 §1; RFC 3551 §4.5.14)
TARGET_DBOV = -20.0  # active level of every converted prompt (see the module doc)
PEAK_DBOV = -1.0  # peak ceiling after normalisation (sample peak; G.711 overload is 0 dBov)
MAX_SECONDS = 900.0  # a prompt or a piece of hold music longer than 15 min is a mistake
MAX_SAMPLES = 64_000_000  # frames x channels (11 min of 48 kHz stereo): bounds the memory
MIN_RATE, MAX_RATE = 4000, 384000
KAISER_BETA = 8.6  # about -85 dB stop band (Kaiser's formula: A = beta / 0.1102 + 8.7)
CONVERTER_VERSION = 1  # part of the cache key: bump when the output of convert() changes

_PCM, _FLOAT, _ALAW, _ULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
# The GUID tail shared by every KSDATAFORMAT_SUBTYPE_* (the format tag is its first 2 bytes).
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_FULL_SCALE = 32768.0

_ACTIVE_FRAME_S = 0.010  # level measured on 10 ms frames
_ACTIVE_RANGE_DB = 30.0  # frames within 30 dB of the loudest one count as active
_SILENCE_DBOV = -70.0  # and they must be above this absolute floor
_LIMIT_HOLD_S = 0.002  # the limiter's gain holds its minimum over 2 ms around a peak
_LIMIT_SMOOTH_S = 0.005  # and is smoothed over 5 ms (no click)


@dataclass(frozen=True, slots=True)
class WavInfo:
    rate: int
    channels: int
    fmt: int  # effective format tag (the sub-format for WAVE_FORMAT_EXTENSIBLE)
    bits: int
    frames: int


@dataclass(frozen=True, slots=True)
class Converted:
    """A converted prompt: 8 kHz mono int16 samples and what was done to them."""

    pcm: np.ndarray  # int16, 8 kHz mono
    source_rate: int
    source_channels: int
    source_bits: int
    gain_db: float  # applied to reach TARGET_DBOV (0 for silence)
    level_dbov: float  # active level after conversion

    @property
    def seconds(self) -> float:
        return len(self.pcm) / RATE


# --------------------------------------------------------------------------- reading


def read_wav(path: Path, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, WavInfo]:
    """Samples as float32 in [-1, 1], shape ``[frames, channels]``, and the header facts."""
    try:
        with path.open("rb") as f:
            return _read_riff(f, str(path), max_seconds)
    except OSError as exc:
        raise PromptError(f"prompt {path}: cannot read: {exc.strerror or exc}") from None


def _read_riff(f: BinaryIO, name: str, max_seconds: float) -> tuple[np.ndarray, WavInfo]:
    head = f.read(12)
    if len(head) == 0:
        raise PromptError(f"prompt {name}: empty file (0 bytes)")
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise PromptError(f"prompt {name}: not a WAV file (no RIFF/WAVE header)")
    if head[:4] == b"RIFX":
        raise PromptError(f"prompt {name}: big-endian WAV (RIFX) is not supported")
    info: WavInfo | None = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            what = "no 'data' chunk" if info else "no 'fmt ' chunk"
            raise PromptError(f"prompt {name}: truncated WAV: {what}")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            info = _parse_fmt(f.read(size), name)
            f.read(size & 1)  # chunks are word-aligned (RIFF pad byte)
        elif cid == b"data":
            if info is None:
                raise PromptError(f"prompt {name}: 'data' chunk before 'fmt ' chunk")
            return _read_data(f, size, info, name, max_seconds)
        else:
            f.seek(size + (size & 1), io.SEEK_CUR)


def _parse_fmt(body: bytes, name: str) -> WavInfo:
    if len(body) < 16:
        raise PromptError(f"prompt {name}: truncated 'fmt ' chunk ({len(body)} bytes)")
    fmt, channels, rate, _byte_rate, block, bits = struct.unpack("<HHIIHH", body[:16])
    if fmt == _EXTENSIBLE:
        if len(body) < 40 or body[26:40] != _GUID_TAIL:
            raise PromptError(f"prompt {name}: WAVE_FORMAT_EXTENSIBLE with an unknown sub-format")
        fmt = struct.unpack("<H", body[24:26])[0]
        valid_bits = struct.unpack("<H", body[18:20])[0]
        if valid_bits and valid_bits > bits:
            raise PromptError(f"prompt {name}: {valid_bits} valid bits in {bits}-bit samples")
    if channels < 1:
        raise PromptError(f"prompt {name}: 0 channels")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise PromptError(f"prompt {name}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE}")
    supported = {_PCM: (8, 16, 24, 32), _FLOAT: (32, 64), _ALAW: (8,), _ULAW: (8,)}
    if bits not in supported.get(fmt, ()):
        raise PromptError(
            f"prompt {name}: unsupported encoding (format tag {fmt:#06x}, {bits}-bit); "
            "use PCM 8/16/24/32-bit, float 32/64-bit or G.711"
        )
    if block != channels * bits // 8:
        raise PromptError(f"prompt {name}: block align {block} does not match {channels}x{bits}-bit")
    return WavInfo(rate=rate, channels=channels, fmt=fmt, bits=bits, frames=0)


def _read_data(
    f: BinaryIO, size: int, info: WavInfo, name: str, max_seconds: float
) -> tuple[np.ndarray, WavInfo]:
    block = info.channels * info.bits // 8
    if size == 0xFFFFFFFF:  # a streaming writer could not seek back: read to the end
        size = _remaining(f)
    frames = size // block
    if frames == 0:
        raise PromptError(f"prompt {name}: no audio samples (empty 'data' chunk)")
    seconds = frames / info.rate
    if seconds > max_seconds:
        raise PromptError(
            f"prompt {name}: {seconds:.0f} s of audio is longer than the {max_seconds:.0f} s limit"
        )
    if frames * info.channels > MAX_SAMPLES:
        raise PromptError(
            f"prompt {name}: {frames * info.channels} samples ({info.channels} channels at "
            f"{info.rate} Hz) is over the {MAX_SAMPLES} limit; downmix or shorten it"
        )
    data = f.read(frames * block)
    if len(data) < frames * block:
        got = len(data) // block
        raise PromptError(
            f"prompt {name}: truncated WAV: header says {frames} frames, file holds {got}"
        )
    samples = _decode(data, info).reshape(frames, info.channels)
    if not np.all(np.isfinite(samples)):
        raise PromptError(f"prompt {name}: float samples that are NaN or infinite")
    return samples, WavInfo(info.rate, info.channels, info.fmt, info.bits, frames)


def _remaining(f: BinaryIO) -> int:
    here = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(here)
    return end - here


def _decode(data: bytes, info: WavInfo) -> np.ndarray:
    if info.fmt == _FLOAT:
        x = np.frombuffer(data, "<f4" if info.bits == 32 else "<f8").astype(np.float32)
        return np.clip(x, -1.0, 1.0)
    if info.fmt in (_ULAW, _ALAW):
        law = Codec.PCMU if info.fmt == _ULAW else Codec.PCMA
        return g711.decode(law, data).astype(np.float32) / np.float32(_FULL_SCALE)
    if info.bits == 8:  # 8-bit WAV PCM is unsigned, 128 = 0
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / np.float32(128.0)
    if info.bits == 24:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v & 0x800000, v - 0x1000000, v)
        return v.astype(np.float32) / np.float32(8388608.0)
    dtype, scale = ("<i2", _FULL_SCALE) if info.bits == 16 else ("<i4", 2147483648.0)
    return np.frombuffer(data, dtype).astype(np.float32) / np.float32(scale)


# --------------------------------------------------------------------------- converting


def resample_to_8k(x: np.ndarray, rate: int) -> np.ndarray:
    """Band-limit and resample a mono signal to 8 kHz (polyphase FIR, see module doc)."""
    if rate == RATE:
        return x
    from scipy.signal import resample_poly  # imported when needed: a 1-2 s import

    g = gcd(RATE, rate)
    up, down = RATE // g, rate // g
    return np.asarray(resample_poly(x, up, down, window=("kaiser", KAISER_BETA)))


def active_level_dbov(x: np.ndarray, rate: int = RATE) -> float | None:
    """RMS level (dBov) over the 10 ms frames that carry sound; None for silence.

    x is float in [-1, 1] (1.0 = full scale, 0 dBov = RMS 1.0)."""
    n = max(1, int(rate * _ACTIVE_FRAME_S))
    usable = len(x) - len(x) % n
    if usable == 0:
        usable, n = len(x), len(x)
    frames = x[:usable].reshape(-1, n)
    power = np.mean(frames * frames, axis=1)
    loudest = float(power.max()) if power.size else 0.0
    if loudest <= 10 ** (_SILENCE_DBOV / 10):
        return None
    floor = max(loudest * 10 ** (-_ACTIVE_RANGE_DB / 10), 10 ** (_SILENCE_DBOV / 10))
    active = power[power >= floor]
    return 10 * float(np.log10(float(np.mean(active))))


def limit_peaks(x: np.ndarray, ceiling: float, rate: int = RATE) -> np.ndarray:
    """A look-ahead peak limiter: the gain dips smoothly around each sample over the
    ceiling, instead of clipping it (which would add harmonics above the band)."""
    mag = np.abs(x)
    if float(mag.max(initial=0.0)) <= ceiling:
        return x
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    need = np.minimum(1.0, ceiling / np.maximum(mag, 1e-12))
    hold = max(1, int(rate * _LIMIT_HOLD_S)) * 2 + 1
    smooth = max(1, int(rate * _LIMIT_SMOOTH_S))
    gain = minimum_filter1d(need, size=hold + smooth, mode="nearest")
    gain = uniform_filter1d(gain, size=smooth, mode="nearest")
    return np.clip(x * gain, -ceiling, ceiling)  # the clip only catches rounding


def normalise(x: np.ndarray, rate: int = RATE) -> tuple[np.ndarray, float]:
    """Gain to :data:`TARGET_DBOV` active level, then peaks limited to :data:`PEAK_DBOV`."""
    level = active_level_dbov(x, rate)
    if level is None:
        return x, 0.0
    gain_db = TARGET_DBOV - level
    y = x * 10 ** (gain_db / 20)
    return limit_peaks(y, 10 ** (PEAK_DBOV / 20), rate), gain_db


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * _FULL_SCALE), -32768, 32767).astype(np.int16)


def convert(samples: np.ndarray, rate: int) -> tuple[np.ndarray, float, float]:
    """``[frames, channels]`` float at ``rate`` -> (int16 8 kHz mono, gain dB, level dBov)."""
    if samples.ndim == 2:
        mono = samples.mean(axis=1, dtype=np.float64)
    else:
        mono = np.asarray(samples, dtype=np.float64)
    mono = mono - float(np.mean(mono))  # DC would waste headroom and bias the level
    y, gain_db = normalise(resample_to_8k(mono, rate))
    pcm = to_int16(y)
    level = active_level_dbov(pcm.astype(np.float64) / _FULL_SCALE)
    return pcm, gain_db, level if level is not None else float("-inf")


def convert_file(path: Path, max_seconds: float = MAX_SECONDS) -> Converted:
    """Read any supported WAV and convert it (raises :class:`PromptError`)."""
    samples, info = read_wav(path, max_seconds)
    pcm, gain_db, level = convert(samples, info.rate)
    if len(pcm) == 0:
        raise PromptError(f"prompt {path}: too short to hold one 8 kHz sample")
    return Converted(pcm, info.rate, info.channels, info.bits, gain_db, level)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    """Write 8 kHz mono 16-bit PCM atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(pcm.astype("<i2").tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- cache


def content_key(path: Path) -> str:
    """sha256 of the source bytes and the converter's version (the cache key)."""
    h = hashlib.sha256(f"mediasrv-prompt-v{CONVERTER_VERSION}:{TARGET_DBOV}:{PEAK_DBOV}\n".encode())
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise PromptError(f"prompt {path}: cannot read: {exc.strerror or exc}") from None
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class CachedPrompt:
    """A converted file in the cache and the facts of its conversion (kept in a sidecar)."""

    key: str
    path: Path
    seconds: float
    gain_db: float
    level_dbov: float
    source_rate: int
    source_channels: int
    source_bits: int


class ConvertCache:
    """Converted prompts by content hash under one directory: each source converted once.

    ``cached(src)`` returns the 8 kHz file for ``src``'s bytes, converting only on a miss
    (``conversions`` counts the misses). Blocking: call it from a CLI or a worker thread,
    never on the event loop."""

    def __init__(self, directory: Path, max_seconds: float = MAX_SECONDS) -> None:
        self.directory = directory
        self.max_seconds = max_seconds
        self.conversions = 0

    def path_for(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.wav"

    def cached(self, src: Path) -> CachedPrompt:
        key = content_key(src)
        out = self.path_for(key)
        meta = out.with_suffix(".json")
        if out.is_file() and meta.is_file():
            try:
                facts = json.loads(meta.read_text(encoding="utf-8"))
                return CachedPrompt(key=key, path=out, **facts)
            except (OSError, ValueError, TypeError):
                pass  # a damaged sidecar: convert again
        converted = convert_file(src, self.max_seconds)
        write_wav(out, converted.pcm)
        facts = {
            "seconds": round(converted.seconds, 3),
            "gain_db": round(converted.gain_db, 2),
            "level_dbov": round(converted.level_dbov, 2),
            "source_rate": converted.source_rate,
            "source_channels": converted.source_channels,
            "source_bits": converted.source_bits,
        }
        _write_text(meta, json.dumps(facts) + "\n")
        self.conversions += 1
        return CachedPrompt(key=key, path=out, **facts)


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
