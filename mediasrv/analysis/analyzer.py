"""The whole post-call analysis of one recording: WAV in -> AnalysisResult out.

Pure: reads a file, runs ONNX models, returns a result; no database, no event loop.
Channel 0 of a stereo recording is the caller, channel 1 the operator (configurable);
a mono file is treated as the caller only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audio import Audio, read_wav
from .crosstalk import CrosstalkParams, frame_db, own_regions
from .gender import GenderClassifier, GenderParams, GenderResult
from .labels import DEFAULT_RULES, LabelSet, OutcomeResult, classify
from .manifest import Manifest, ModelError, default_models_dir
from .modelbuild import WHISPER_GRAPH_VERSION
from .stt import Channel, ChannelStats, SttParams, Transcriber, Utterance
from .vad import SileroVad, VadParams
from .whisper import WhisperOnnx

RESULT_VERSION = 1


@dataclass(frozen=True)
class AnalysisConfig:
    models_dir: Path = field(default_factory=default_models_dir)
    whisper_model: str = "whisper-base"
    language: str | None = "ja"
    beam_size: int = 5
    threads: int = 1
    caller_channel: int = 0
    # Outcome label rules per business (LabelSet config: {"labels": [...]}); a call of a
    # business without its own rules uses the "default" entry.
    label_rules: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"default": DEFAULT_RULES})
    verify_checksums: bool = True
    vad: VadParams = field(default_factory=VadParams)
    gender: GenderParams = field(default_factory=GenderParams)
    crosstalk: CrosstalkParams = field(default_factory=CrosstalkParams)


@dataclass(frozen=True)
class AnalysisResult:
    timeline: list[Utterance]
    gender: GenderResult
    outcome: OutcomeResult
    audio_seconds: float
    cpu_seconds: float
    model: str
    language: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "version": RESULT_VERSION,
            "model": self.model,
            "language": self.language,
            "timeline": [u.to_dict() for u in self.timeline],
            "gender": self.gender.to_dict(),
            "outcome": self.outcome.to_dict(),
            "audio_seconds": round(self.audio_seconds, 2),
            "cpu_seconds": round(self.cpu_seconds, 2),
        }


class Analyzer:
    """Models loaded once (per worker process); ``analyze`` may be called many times."""

    def __init__(self, config: AnalysisConfig) -> None:
        self.config = config
        d = config.models_dir
        manifest = Manifest.load(d)
        check = config.verify_checksums
        name = config.whisper_model
        for f in ("encoder.onnx", "decoder.onnx", "vocabulary.txt", "config.json"):
            manifest.verified_path(d, name, f"{name}/{f}", check)
        if manifest.models[name].extra.get("graph_version") != WHISPER_GRAPH_VERSION:
            raise ModelError(f"{d / name} was built by an older mediasrv; "
                             "run `mediasrv models build`")
        whisper = WhisperOnnx(d / name, threads=config.threads)
        vad = SileroVad(manifest.verified_path(d, "vad", "silero_vad.onnx", check))
        language = config.language if whisper.multilingual else "en"
        self.language = language
        self.transcriber = Transcriber(
            whisper, vad, SttParams(language=language, beam_size=config.beam_size), config.vad)
        self.gender = GenderClassifier(manifest.verified_path(d, "gender", "gender.onnx", check),
                                       config.gender)
        self.labels = {b: LabelSet.from_config(b, cfg) for b, cfg in config.label_rules.items()}

    def labels_for(self, business: str) -> LabelSet:
        found = self.labels.get(business) or self.labels.get("default")
        return found if found is not None else LabelSet(business, ())

    def analyze(self, path: Path, business: str = "default") -> AnalysisResult:
        t0 = time.process_time()
        audio = read_wav(path)
        return self.analyze_audio(audio, t0, business)

    def analyze_audio(self, audio: Audio, t0: float | None = None,
                      business: str = "default") -> AnalysisResult:
        t0 = time.process_time() if t0 is None else t0
        caller_idx = min(self.config.caller_channel, audio.channels - 1)
        channels = [(caller_idx, Channel.CALLER)]
        if audio.channels > 1:
            channels.append((1 if caller_idx == 0 else 0, Channel.OPERATOR))
        timeline: list[Utterance] = []
        gender: GenderResult | None = None
        levels = [frame_db(audio.samples[i], audio.rate, self.config.crosstalk.frame_s)
                  for i, _ in channels]
        for n, (idx, ch) in enumerate(channels):
            x = audio.samples[idx]
            regions = self.transcriber.speech(x, audio.rate)
            if len(channels) == 2:
                regions = own_regions(regions, levels[n], levels[1 - n], self.config.crosstalk)
            if ch is Channel.CALLER:
                speech = [x[int(r.start * audio.rate) : int(r.end * audio.rate)] for r in regions]
                gender = self.gender.classify(speech, audio.rate)
            timeline += self.transcriber.transcribe_channel(x, audio.rate, ch, regions, ChannelStats())
        timeline.sort(key=lambda u: (u.start, u.channel.value))
        assert gender is not None  # the caller channel always exists
        outcome = classify(self.labels_for(business), [u.to_dict() for u in timeline])
        return AnalysisResult(timeline, gender, outcome, audio.duration,
                              time.process_time() - t0, self.config.whisper_model, self.language)


def analyze_file(path: Path, config: AnalysisConfig | None = None,
                 business: str = "default") -> AnalysisResult:
    """One-shot analysis (loads the models, analyses one file)."""
    return Analyzer(config or AnalysisConfig()).analyze(path, business)
