"""Whisper's log-mel front end in numpy (no torch, no librosa).

Matches openai/whisper audio.py: 16 kHz, 25 ms Hann window (n_fft 400, periodic), 10 ms hop,
centred STFT with reflect padding, power spectrum, Slaney-style mel filters (as librosa's
default ``htk=False, norm="slaney"``), log10 floored at 1e-10, dynamic range clamped to
8 (i.e. 80 dB) below the maximum, then scaled to roughly [-1, 1].
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
WINDOW_SECONDS = 30
N_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
N_FRAMES = N_SAMPLES // HOP


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney: linear below 1 kHz, logarithmic above.
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    mels = f / f_sp
    log_region = f >= min_log_hz
    mels[log_region] = min_log_hz / f_sp + np.log(f[log_region] / min_log_hz) / logstep
    return mels


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    freqs = f_sp * m
    log_region = m >= min_log_mel
    freqs[log_region] = min_log_hz * np.exp(logstep * (m[log_region] - min_log_mel))
    return freqs


@lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> np.ndarray:
    """[n_mels, n_fft//2+1] triangular filters with Slaney area normalisation."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(np.array([0.0]))[0],
                          _hz_to_mel(np.array([SAMPLE_RATE / 2.0]))[0], n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels])
    return (weights * enorm[:, None]).astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)


def log_mel_window(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Log-mel [1, n_mels, 3000] of one <= 30 s window of 16 kHz mono float audio.

    The window is zero-padded to 30 s, as Whisper was trained on.
    """
    x = np.zeros(N_SAMPLES, dtype=np.float32)
    n = min(audio.size, N_SAMPLES)
    x[:n] = audio[:n]
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:N_FRAMES]
    spec = np.fft.rfft(frames * _window(), axis=-1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    mel = mel_filters(n_mels) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0)[None].astype(np.float32)
