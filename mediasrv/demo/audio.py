"""Test audio for the demo and the end-to-end tests: known signals, WAV I/O and checks.

numpy only (``audioop`` is gone in Python 3.13). Signals are 8 kHz 16-bit mono, the rate of
G.711 telephony, so what a phone plays is what the far end should hear, up to G.711
quantisation noise and a delay that :func:`correlate_aligned` finds.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 8000
Samples = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float64]


class AudioError(Exception):
    """A WAV file or signal that cannot be used (wrong format, empty, tool missing)."""


@dataclass(frozen=True)
class Wav:
    """PCM samples of a WAV file: shape (n,) for mono, (n, channels) for more."""

    samples: Samples
    rate: int

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_wav(path: str | Path) -> Wav:
    """Read a 16-bit PCM WAV file (mono or multi-channel)."""
    try:
        with wave.open(str(path), "rb") as wf:
            if wf.getsampwidth() != 2:
                raise AudioError(f"{path}: {8 * wf.getsampwidth()}-bit WAV, want 16-bit PCM")
            channels, rate = wf.getnchannels(), wf.getframerate()
            raw = wf.readframes(wf.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{path}: not a PCM WAV file ({exc})") from exc
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if channels > 1:
        samples = samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
    return Wav(samples=samples, rate=rate)


def write_wav(path: str | Path, samples: npt.ArrayLike, rate: int = RATE) -> Path:
    """Write int16 samples, shape (n,) or (n, channels), as a PCM WAV file."""
    data = np.asarray(samples)
    if data.dtype != np.int16:
        raise AudioError(f"write_wav wants int16 samples, got {data.dtype}")
    channels = 1 if data.ndim == 1 else int(data.shape[1])
    out = Path(path)
    with wave.open(str(out), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(data.astype("<i2").tobytes())
    return out


def split_stereo(path: str | Path) -> tuple[Samples, Samples]:
    """Left and right channels of a stereo WAV file (caller, operator in a recording)."""
    wav = read_wav(path)
    if wav.channels != 2:
        raise AudioError(f"{path}: {wav.channels} channel(s), want stereo")
    return wav.samples[:, 0].copy(), wav.samples[:, 1].copy()


def level_db(samples: npt.ArrayLike) -> float:
    """RMS level in dB relative to 16-bit full scale (-inf for digital silence)."""
    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(data))))
    return 20.0 * float(np.log10(rms / 32768.0)) if rms > 0 else float("-inf")


def _to_int16(signal: Floats, peak_dbfs: float) -> Samples:
    peak = float(np.max(np.abs(signal))) or 1.0
    scaled = signal / peak * (32767.0 * 10.0 ** (peak_dbfs / 20.0))
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


def _syllable(rng: np.random.Generator, f0: float, rate: int) -> Floats:
    """One voiced syllable: a gliding pitch with harmonics shaped by two random formants."""
    n = int(rate * rng.uniform(0.12, 0.30))
    t = np.arange(n) / rate
    glide = f0 * rng.uniform(0.8, 1.25) * (1.0 + rng.uniform(-0.25, 0.25) * t / t[-1])
    phase = 2.0 * np.pi * np.cumsum(glide) / rate
    formants = (rng.uniform(300.0, 900.0), rng.uniform(1000.0, 2600.0))
    out = np.zeros(n)
    for k in range(1, int(3400.0 / (f0 * 1.6)) + 1):
        freq = k * float(np.mean(glide))
        gain = sum(1.0 / (1.0 + ((freq - fm) / 150.0) ** 2) for fm in formants) + 0.05
        out += gain / k**0.5 * np.sin(k * phase)
    return out * np.hanning(n)


def _fricative(rng: np.random.Generator, rate: int) -> Floats:
    """A short band-limited noise burst, like /s/ or /f/."""
    n = int(rate * rng.uniform(0.04, 0.10))
    noise = rng.standard_normal(n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum[freqs < rng.uniform(1500.0, 2500.0)] = 0.0
    return np.fft.irfft(spectrum, n) * np.hanning(n) * 0.5


def speech_like(seconds: float, seed: int, f0: float = 140.0, rate: int = RATE,
                peak_dbfs: float = -6.0) -> Samples:
    """A deterministic speech-like signal: syllables, fricatives and pauses, never periodic.

    Different seeds give signals that do not correlate with each other, so a test can tell
    which phone's audio arrived where.
    """
    if seconds <= 0:
        raise AudioError("speech_like needs a positive duration")
    rng = np.random.default_rng(seed)
    total = int(seconds * rate)
    parts: list[Floats] = []
    length = 0
    while length < total:
        part = _fricative(rng, rate) if rng.random() < 0.2 else _syllable(rng, f0, rate)
        pause = np.zeros(int(rate * rng.uniform(0.02, 0.12)))
        parts.extend([part, pause])
        length += len(part) + len(pause)
    return _to_int16(np.concatenate(parts)[:total], peak_dbfs)


def resample(samples: npt.ArrayLike, src_rate: int, dst_rate: int) -> Floats:
    """Band-limited resampling by zero-padding or truncating the spectrum."""
    data = np.asarray(samples, dtype=np.float64)
    if src_rate == dst_rate or data.size == 0:
        return data
    n_out = round(len(data) * dst_rate / src_rate)
    spectrum = np.fft.rfft(data)
    bins = n_out // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - len(spectrum), complex)])
    return np.fft.irfft(spectrum, n_out) * (n_out / len(data))


def espeak_phrase(text: str, voice: str = "en", rate: int = RATE,
                  peak_dbfs: float = -6.0) -> Samples:
    """A spoken phrase from espeak-ng (Debian package), resampled to ``rate``."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AudioError("espeak-ng is not installed (apt-get install -y espeak-ng)")
    proc = subprocess.run([exe, "-v", voice, "--stdout", text], capture_output=True,
                          timeout=30, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise AudioError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(proc.stdout), "rb") as wf:
        src_rate = wf.getframerate()
        raw = np.frombuffer(wf.readframes(wf.getnframes()), dtype="<i2")
    return _to_int16(resample(raw, src_rate, rate), peak_dbfs)


def _as_float(samples: npt.ArrayLike) -> Floats:
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim != 1:
        raise AudioError("correlate_aligned wants mono signals")
    return data - float(np.mean(data)) if data.size else data


def correlate_aligned(ref: npt.ArrayLike, received: npt.ArrayLike, rate: int = RATE,
                      min_overlap_s: float = 1.0) -> tuple[float, float]:
    """Peak normalised cross-correlation of ``ref`` within ``received``, and its lag.

    For every alignment with at least ``min_overlap_s`` of overlap (or the shorter signal's
    length), the dot product of the overlapping parts is divided by the product of their
    norms, so 1.0 means the overlap is a scaled copy. Returns ``(peak, lag_seconds)`` where
    a positive lag means ``ref`` starts that late in ``received``.
    """
    r, x = _as_float(ref), _as_float(received)
    n, m = len(r), len(x)
    if n == 0 or m == 0:
        return 0.0, 0.0
    size = 1 << (n + m - 1).bit_length()
    xc = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(r, size)), size)
    lags = np.arange(-(n - 1), m)
    dots = xc[lags % size]
    lo = np.maximum(0, -lags)
    hi = np.minimum(n, m - lags)
    cr = np.concatenate([[0.0], np.cumsum(r * r)])
    cx = np.concatenate([[0.0], np.cumsum(x * x)])
    energy = (cr[hi] - cr[lo]) * (cx[hi + lags] - cx[lo + lags])
    need = min(n, m, max(1, int(min_overlap_s * rate)))
    valid = (hi - lo >= need) & (energy > 1e-9 * need * need)
    if not np.any(valid):
        return 0.0, 0.0
    scores = np.where(valid, dots / np.sqrt(np.where(valid, energy, 1.0)), -np.inf)
    best = int(np.argmax(scores))
    return float(scores[best]), float(lags[best]) / rate


@dataclass(frozen=True)
class PiecewiseMatch:
    """How well ``ref`` survived a trip through a real phone, window by window."""

    score: float  # energy-weighted mean of the windows' peak correlations
    lags: tuple[float, ...]  # seconds, per window that was compared
    windows: int

    @property
    def slips(self) -> int:
        """How often the delay changed by more than 1 ms (jitter-buffer adjustments)."""
        return sum(1 for a, b in zip(self.lags, self.lags[1:], strict=False)
                   if abs(a - b) > 0.001)


def correlate_piecewise(ref: npt.ArrayLike, received: npt.ArrayLike, rate: int = RATE,
                        window_s: float = 0.5, search_s: float = 0.3,
                        silence_db: float = -50.0) -> PiecewiseMatch:
    """Correlate ``ref`` with ``received`` in windows, each aligned on its own.

    A phone's adaptive jitter buffer may drop or insert a frame now and then (seen here on a
    loaded machine: one 10 ms slip in 4 s), which shifts everything after it and lowers a
    single whole-signal correlation although the audio arrived intact. Here the whole-signal
    lag is found first; then every ``window_s`` window of ``ref`` that is not silent is
    matched within ``search_s`` of it. Windows past the end of ``received`` are skipped.
    """
    r = np.asarray(ref, dtype=np.float64)
    x = np.asarray(received, dtype=np.float64)
    _, lag0 = correlate_aligned(r, x, rate)
    width, search = int(window_s * rate), int(search_s * rate)
    shift = round(lag0 * rate)
    scores: list[float] = []
    weights: list[float] = []
    lags: list[float] = []
    for start in range(0, len(r) - width + 1, width):
        window = r[start:start + width]
        if level_db(window) < silence_db:
            continue
        lo = max(0, start + shift - search)
        hi = min(len(x), start + shift + width + search)
        if hi - lo < width:
            continue
        corr, lag = correlate_aligned(window, x[lo:hi], rate, min_overlap_s=window_s)
        scores.append(corr)
        weights.append(float(np.sum(window * window)))
        lags.append(lo / rate + lag - start / rate)
    if not scores:
        return PiecewiseMatch(score=0.0, lags=(), windows=0)
    score = float(np.average(scores, weights=weights))
    return PiecewiseMatch(score=score, lags=tuple(lags), windows=len(scores))
