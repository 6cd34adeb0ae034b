"""Caller gender from voiced frames: YIN F0 -> log mean F0 -> ONNX logistic regression.

The classifier (models/train_gender.py) gives P(male); the answer is ``unknown`` when there
is too little voiced speech, when the mean F0 falls in the ambiguous band where male and
female VoxCeleb speakers overlap (~150-180 Hz), or when confidence is below a floor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .pitch import PitchParams, robust_mean_f0, yin


class Gender(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class GenderParams:
    min_voiced_s: float = 1.0
    ambiguous_hz: tuple[float, float] = (150.0, 180.0)
    min_confidence: float = 0.8


@dataclass(frozen=True)
class GenderResult:
    gender: Gender
    confidence: float
    mean_f0_hz: float
    voiced_s: float
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"gender": self.gender.value, "confidence": round(self.confidence, 3),
                "mean_f0_hz": round(self.mean_f0_hz, 1), "voiced_s": round(self.voiced_s, 2),
                "reason": self.reason}


class GenderClassifier:
    def __init__(self, model: Path, params: GenderParams | None = None) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        self.params = params or GenderParams()

    def p_male(self, mean_f0_hz: float) -> float:
        x = np.array([[np.log(mean_f0_hz)]], dtype=np.float32)
        _, probs = self._session.run(None, {"f0_log": x})
        return float(probs[0, 1])

    def classify(self, speech: list[np.ndarray], rate: int) -> GenderResult:
        """``speech``: the caller channel's speech regions (VAD output) as sample arrays."""
        pp = PitchParams()
        f0 = np.concatenate([yin(s, rate, pp) for s in speech]) if speech else np.zeros(0)
        mean_f0, frames = robust_mean_f0(f0)
        voiced_s = frames * pp.hop_s
        p = self.params
        if voiced_s < p.min_voiced_s:
            return GenderResult(Gender.UNKNOWN, 0.0, mean_f0, voiced_s, "too little voiced speech")
        pm = self.p_male(mean_f0)
        label, conf = (Gender.MALE, pm) if pm >= 0.5 else (Gender.FEMALE, 1.0 - pm)
        lo, hi = p.ambiguous_hz
        if lo <= mean_f0 <= hi:
            return GenderResult(Gender.UNKNOWN, conf, mean_f0, voiced_s, "pitch in ambiguous band")
        if conf < p.min_confidence:
            return GenderResult(Gender.UNKNOWN, conf, mean_f0, voiced_s, "low confidence")
        return GenderResult(label, conf, mean_f0, voiced_s, "pitch")
