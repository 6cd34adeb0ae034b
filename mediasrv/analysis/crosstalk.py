"""Echo and crosstalk between the two legs of a call recording.

Each channel holds one leg, but the caller's leg often carries an echo of the operator
(hybrid or acoustic echo on the phone side, typically 20-35 dB down) and the VAD happily
calls it speech: Whisper would then put the operator's words on the caller's channel, and
the caller's gender would be judged on the operator's voice. A speech region is kept only
if, in enough of its frames, its channel is not far below the other channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vad import Region


@dataclass(frozen=True)
class CrosstalkParams:
    frame_s: float = 0.02
    margin_db: float = 12.0  # a frame is the channel's own if within this of the other
    min_own_fraction: float = 0.25
    floor_db: float = -60.0  # frames quieter than this (pauses, padding) are not judged


def frame_db(x: np.ndarray, rate: int, frame_s: float) -> np.ndarray:
    n = max(1, int(frame_s * rate))
    frames = x[: x.size // n * n].reshape(-1, n).astype(np.float64)
    return np.asarray(10 * np.log10(np.mean(frames**2, axis=1) + 1e-12))


def own_regions(regions: list[Region], mine_db: np.ndarray, other_db: np.ndarray,
                p: CrosstalkParams) -> list[Region]:
    """Drop regions where this channel is only an echo of the other."""
    kept = []
    own = mine_db >= other_db - p.margin_db
    for r in regions:
        a = int(r.start / p.frame_s)
        b = max(a + 1, int(r.end / p.frame_s))
        window = own[a:b][mine_db[a:b] > p.floor_db]
        if window.size == 0 or float(np.mean(window)) >= p.min_own_fraction:
            kept.append(r)
    return kept
