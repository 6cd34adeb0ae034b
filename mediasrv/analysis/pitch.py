"""F0 tracking for 8 kHz telephone speech: YIN (de Cheveigné & Kawahara, JASA 2002).

The telephone band removes most energy below 300 Hz, often the fundamental itself; YIN's
cumulative-mean-normalised difference function finds the period from the harmonic
structure, which survives. Steps 1-5 of the paper: difference function, CMND, absolute
threshold, parabolic interpolation (step 5 "best local estimate" is approximated by taking
the first dip below threshold, then its local minimum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PitchParams:
    fmin: float = 60.0
    fmax: float = 400.0
    frame_s: float = 0.040
    hop_s: float = 0.010
    # CMND dip below which a frame is voiced. The paper uses 0.1-0.15 on wideband speech;
    # G.711 quantisation noise lifts the dips, 0.2 keeps more voiced phone frames.
    threshold: float = 0.2
    min_rms_db: float = -45.0  # quieter frames are not judged


def _difference(frames: np.ndarray, max_tau: int) -> np.ndarray:
    """d(tau) for tau in [0, max_tau) per frame, via FFT autocorrelation (paper eq. 7)."""
    n = frames.shape[1]
    w = n - max_tau
    size = 1 << int(np.ceil(np.log2(n + w)))
    fx = np.fft.rfft(frames, size)
    fy = np.fft.rfft(frames[:, :w][:, ::-1], size)
    corr = np.fft.irfft(fx * fy, size)[:, w - 1 : w - 1 + max_tau]
    sq = np.cumsum(frames**2, axis=1)
    sq = np.concatenate([np.zeros((frames.shape[0], 1)), sq], axis=1)
    energy0 = sq[:, w][:, None]
    energy_tau = sq[:, w : w + max_tau] - sq[:, :max_tau]
    out: np.ndarray = energy0 + energy_tau - 2 * corr
    return out


def yin(x: np.ndarray, rate: int, p: PitchParams | None = None) -> np.ndarray:
    """F0 in Hz per hop (0 where unvoiced)."""
    p = p or PitchParams()
    n = int(p.frame_s * rate)
    hop = int(p.hop_s * rate)
    if x.size < n:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), n)[::hop]
    max_tau = min(int(rate / p.fmin) + 2, n - 1)
    min_tau = max(2, int(rate / p.fmax))
    d = _difference(frames, max_tau)
    cum = np.cumsum(d[:, 1:], axis=1)
    taus = np.arange(1, max_tau)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus / np.maximum(cum, 1e-12)
    rms_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    f0 = np.zeros(frames.shape[0])
    for i in range(frames.shape[0]):
        if rms_db[i] < p.min_rms_db:
            continue
        f0[i] = _frame_f0(cmnd[i], min_tau, max_tau, p.threshold, rate)
    return f0


def _frame_f0(c: np.ndarray, min_tau: int, max_tau: int, threshold: float, rate: int) -> float:
    below = np.nonzero(c[min_tau:max_tau - 1] < threshold)[0]
    if below.size == 0:
        return 0.0
    tau = int(below[0]) + min_tau
    while tau + 1 < max_tau - 1 and c[tau + 1] < c[tau]:
        tau += 1
    a, b, cc = c[tau - 1], c[tau], c[tau + 1]
    denom = a - 2 * b + cc
    shift = 0.5 * (a - cc) / denom if denom > 1e-12 else 0.0
    return float(rate / (tau + float(np.clip(shift, -1, 1))))


def robust_mean_f0(f0: np.ndarray) -> tuple[float, int]:
    """Mean F0 of voiced frames after removing octave errors; (Hz, frames used)."""
    voiced = f0[f0 > 0]
    if voiced.size == 0:
        return 0.0, 0
    med = float(np.median(voiced))
    keep = voiced[(voiced > med / 1.5) & (voiced < med * 1.5)]
    return float(np.exp(np.mean(np.log(keep)))), int(keep.size)
