"""Voice activity detection with silero VAD (ONNX) and cutting speech into segments.

The model (silero-vad 6.x ``silero_vad.onnx``) takes 256-sample chunks at 8 kHz or 512 at
16 kHz, each prefixed by the previous chunk's last 32/64 samples, plus a recurrent state
(as silero_vad/utils_vad.py ``OnnxWrapper``). Regions follow ``get_speech_timestamps``:
hysteresis between ``threshold`` and ``threshold - 0.15``, minimum speech and silence
durations, padding.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .audio import resample


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.3
    pad_s: float = 0.3  # the VAD fires late on soft onsets ("w", "h"); Whisper needs them
    merge_gap_s: float = 0.8  # pauses shorter than this stay inside one segment
    max_segment_s: float = 30.0  # Whisper's window


@dataclass(frozen=True)
class Region:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


class SileroVad:
    def __init__(self, model: Path, threads: int = 1) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])

    def probabilities(self, x: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
        """Speech probability per chunk and the chunk length in seconds."""
        if rate not in (8000, 16000):
            x, rate = resample(x, rate, 16000), 16000
        chunk, ctx = (256, 32) if rate == 8000 else (512, 64)
        n = x.size // chunk
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, ctx), np.float32)
        sr = np.array(rate, dtype=np.int64)
        probs = np.empty(n, np.float32)
        for i in range(n):
            frame = x[None, i * chunk : (i + 1) * chunk].astype(np.float32)
            inp = np.concatenate([context, frame], axis=1)
            out, state = self._session.run(None, {"input": inp, "state": state, "sr": sr})
            probs[i] = out[0, 0]
            context = inp[:, -ctx:]
        return probs, chunk / rate


def speech_regions(probs: np.ndarray, step: float, p: VadParams, duration: float) -> list[Region]:
    """Hysteresis over chunk probabilities -> padded speech regions (seconds)."""
    regions: list[Region] = []
    neg = max(p.threshold - 0.15, 0.01)
    start: int | None = None
    silence_from: int | None = None
    min_sil = max(1, round(p.min_silence_s / step))
    for i, prob in enumerate(probs):
        if start is None:
            if prob >= p.threshold:
                start, silence_from = i, None
            continue
        if prob >= p.threshold:
            silence_from = None
        elif prob < neg:
            silence_from = i if silence_from is None else silence_from
            if i - silence_from + 1 >= min_sil:
                regions.append(Region(start * step, silence_from * step))
                start, silence_from = None, None
    if start is not None:
        regions.append(Region(start * step, len(probs) * step))
    kept = [r for r in regions if r.duration >= p.min_speech_s]
    return [Region(max(0.0, r.start - p.pad_s), min(duration, r.end + p.pad_s)) for r in kept]


def group_segments(regions: list[Region], p: VadParams) -> list[Region]:
    """Merge regions split by short pauses into segments of at most ``max_segment_s``.

    Cuts fall only at pauses; a single region longer than the window is split into equal
    parts (greedy Whisper decoding stops early past 30 s).
    """
    out: list[Region] = []
    for r in regions:
        if out and r.start - out[-1].end < p.merge_gap_s and r.end - out[-1].start <= p.max_segment_s:
            out[-1] = Region(out[-1].start, r.end)
        else:
            out.append(r)
    final: list[Region] = []
    for r in out:
        parts = int(np.ceil(r.duration / p.max_segment_s))
        edges = np.linspace(r.start, r.end, parts + 1)
        final.extend(Region(float(a), float(b)) for a, b in itertools.pairwise(edges))
    return final
