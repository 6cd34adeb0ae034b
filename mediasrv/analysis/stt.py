"""Speech-to-text per channel: VAD -> segments cut at pauses -> Whisper -> timeline.

Hallucination guards (Whisper invents text on silence, noise and music):
1. VAD gating: only what silero marks as speech reaches Whisper; quiet segments are skipped.
2. No-speech: a segment is dropped when ``no_speech_prob`` is high and the text unlikely
   (openai/whisper transcribe.py: no_speech_threshold 0.6 with logprob_threshold -1.0), or
   when the average log-probability is very low on its own.
3. Repetition: gzip compression ratio above 2.4, or a phrase repeated three times in a row,
   means a looping decode; dropped.
4. Known phantom phrases (subtitle credits, "thanks for watching") are dropped when they
   are the whole segment.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from .audio import resample
from .mel import SAMPLE_RATE
from .vad import Region, SileroVad, VadParams, group_segments, speech_regions
from .whisper import MAX_NEW_TOKENS, DecodeResult, WhisperOnnx


class Channel(enum.StrEnum):
    CALLER = "caller"
    OPERATOR = "operator"


@dataclass(frozen=True)
class SttParams:
    language: str | None = "ja"  # None: detect per channel
    beam_size: int = 5
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    min_avg_logprob: float = -1.2
    max_compression_ratio: float = 2.4
    min_rms_db: float = -50.0


@dataclass(frozen=True)
class Utterance:
    channel: Channel
    start: float
    end: float
    text: str
    avg_logprob: float

    def to_dict(self) -> dict[str, object]:
        return {"channel": self.channel.value, "start": round(self.start, 2),
                "end": round(self.end, 2), "text": self.text,
                "avg_logprob": round(self.avg_logprob, 3)}


# Phrases Whisper emits on non-speech (learned from subtitled video); compared after NFKC
# and stripping punctuation/spaces.
_PHANTOMS = frozenset({
    "ご視聴ありがとうございました", "ご視聴ありがとうございましたチャンネル登録よろしくお願いします",
    "チャンネル登録よろしくお願いします", "おやすみなさい", "字幕視聴ありがとうございました",
    "thankyouforwatching", "thanksforwatching", "pleasesubscribe",
    "subtitlesbytheamaraorgcommunity",
})
# Also real words, so only dropped when the decode itself is doubtful.
_WEAK_PHANTOMS = frozenset({"you", "thankyou", "bye", "ありがとうございました", "はい"})


# A unit of 3+ characters said three times in a row ("もう一回もう一回もう一回"): a
# decoding loop; short back-channel repeats like はいはいはい are left alone.
_LOOP = re.compile(r"(.{3,}?)\1\1")
# One letter six or more times in a row ("んんんんんんん", seen on hold music forced past
# the VAD on an AVX-512 VNNI CPU, issue 7): a stuck decode, not a word. Digits are left
# alone ("1000000").
_CHAR_RUN = re.compile(r"([^\W\d_])\1{5,}")


def _squash(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in t if unicodedata.category(ch)[0] in "LN")


def rejected(r: DecodeResult, p: SttParams) -> str | None:
    """Why a decoded segment is a hallucination, or None to keep it."""
    if not r.text.strip():
        return "empty"
    if r.no_speech_prob > p.no_speech_threshold and r.avg_logprob < p.logprob_threshold:
        return "no speech"
    if r.avg_logprob < p.min_avg_logprob:
        return "low confidence"
    squashed = _squash(r.text)
    if (r.compression_ratio > p.max_compression_ratio or _LOOP.search(squashed)
            or _CHAR_RUN.search(squashed)):
        return "repetition"
    if squashed in _PHANTOMS:
        return "phantom phrase"
    if squashed in _WEAK_PHANTOMS and (r.no_speech_prob > 0.2 or r.avg_logprob < -0.6):
        return "doubtful phantom phrase"
    return None


@dataclass
class ChannelStats:
    speech_s: float = 0.0
    segments: int = 0
    dropped: int = 0


class Transcriber:
    def __init__(self, whisper: WhisperOnnx, vad: SileroVad, stt: SttParams | None = None,
                 vad_params: VadParams | None = None) -> None:
        self.whisper = whisper
        self.vad = vad
        self.params = stt or SttParams()
        self.vad_params = vad_params or VadParams()

    def speech(self, x: np.ndarray, rate: int) -> list[Region]:
        probs, step = self.vad.probabilities(x, rate)
        return speech_regions(probs, step, self.vad_params, x.size / rate)

    def transcribe_channel(self, x: np.ndarray, rate: int, channel: Channel,
                           regions: list[Region] | None = None,
                           stats: ChannelStats | None = None) -> list[Utterance]:
        regions = self.speech(x, rate) if regions is None else regions
        stats = stats if stats is not None else ChannelStats()
        segments = group_segments(regions, self.vad_params)
        if not segments:
            return []
        x16 = resample(x, rate, SAMPLE_RATE)
        language = self.params.language
        if language is None and self.whisper.multilingual:
            first = segments[0]
            language = self.whisper.detect_language(_cut(x16, first))
        out: list[Utterance] = []
        for seg in segments:
            piece = _cut(x16, seg)
            stats.speech_s += seg.duration
            if 20 * np.log10(np.sqrt(np.mean(piece**2)) + 1e-9) < self.params.min_rms_db:
                stats.dropped += 1
                continue
            # Token budget from the duration (fast Japanese is ~16 tokens/s): a decoding
            # loop stops early instead of running to 224 tokens, and is then dropped.
            budget = min(MAX_NEW_TOKENS, 10 + int(30 * seg.duration))
            r = self.whisper.transcribe(piece, language, self.params.beam_size, budget)
            stats.segments += 1
            if rejected(r, self.params) is not None:
                stats.dropped += 1
                continue
            out.append(Utterance(channel, seg.start, seg.end, r.text, r.avg_logprob))
        return out


def _cut(x16: np.ndarray, r: Region) -> np.ndarray:
    return x16[int(r.start * SAMPLE_RATE) : int(r.end * SAMPLE_RATE)]
