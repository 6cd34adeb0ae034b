"""Shared helpers for the analysis tests (real speech, models directory, call mixing)."""

from __future__ import annotations

import gzip
import json
import re
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediasrv.analysis.audio import Audio, read_wav, resample

DATA = Path(__file__).parent / "data"
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")

# English prompts used in CI: clean read speech, 1-6 s each, transcripts without stage notes.
EN_PROMPTS = (
    "hello-world", "all-circuits-busy-now", "agent-newlocation", "agent-alreadyon",
    "conf-onlyperson", "pbx-invalid", "privacy-unident", "tt-weasels",
)


def asterisk_transcripts() -> dict[str, str]:
    out: dict[str, str] = {}
    with gzip.open(ASTERISK_TEXTS, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if sep and not line.startswith(";"):
                out[name.strip()] = re.sub(r"\([^)]*\)|\[[^\]]*\]", "", text).strip()
    return out


def ja_transcripts() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads((DATA / "transcripts.json").read_text("utf-8"))
    return data


def mono(path: Path, rate: int = 8000) -> np.ndarray:
    a = read_wav(path)
    return resample(a.samples[0], a.rate, rate)


def place(total_s: float, clips: list[tuple[float, np.ndarray]], rate: int = 8000) -> np.ndarray:
    """A channel of ``total_s`` seconds with each clip starting at its offset."""
    out = np.zeros(int(total_s * rate), np.float32)
    for start, clip in clips:
        i = int(start * rate)
        out[i : i + clip.size] += clip[: max(0, out.size - i)]
    return out


def write_wav(path: Path, audio: Audio, ulaw: bool = False) -> Path:
    """16-bit PCM WAV (or G.711 µ-law through sox's tables is not needed: PCM suffices)."""
    del ulaw
    pcm = np.clip(np.round(audio.samples.T * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(audio.channels)
        w.setsampwidth(2)
        w.setframerate(audio.rate)
        w.writeframes(pcm.tobytes())
    return path


def hold_music(seconds: float, rate: int = 8000, seed: int = 7) -> np.ndarray:
    """Hold-like music: a looping melody of harmonic notes over a chord pad, band-limited."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    scale = [261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3]
    note_s = 0.4
    for k in range(int(seconds / note_s)):
        f = scale[int(rng.integers(len(scale)))]
        seg = (t >= k * note_s) & (t < (k + 1) * note_s)
        tt = t[seg] - k * note_s
        env = np.exp(-3.0 * tt)
        out[seg] += env * sum(np.sin(2 * np.pi * f * h * tt) / h for h in (1, 2, 3, 4))
    for f in (130.8, 164.8, 196.0):  # C major pad
        out += 0.15 * np.sin(2 * np.pi * f * t)
    return (0.25 * out / np.abs(out).max()).astype(np.float32)


@dataclass(frozen=True)
class Turn:
    """What a test placed in a recording: who said which text, starting when (seconds)."""

    channel: object
    start: float
    text: str


def assign_to_turns(found: Sequence[tuple[object, float, str]], turns: Sequence[Turn],
                    tolerance: float) -> list[list[tuple[object, float, str]]]:
    """Give each decoded (channel, start, text) to the turn it belongs to.

    The turn is the latest one on the same channel that starts no later than ``tolerance``
    after the piece: a decoder may cut one utterance into several pieces (where a tie or a
    rounding difference between CPUs puts a timestamp), so tests compare the joined text of
    each turn, never the number of pieces. A piece that fits no turn (wrong channel, or
    before every turn of its channel) fails the calling test.
    """
    groups: list[list[tuple[object, float, str]]] = [[] for _ in turns]
    for piece in found:
        channel, start, _ = piece
        owners = [i for i, t in enumerate(turns)
                  if t.channel == channel and t.start <= start + tolerance]
        assert owners, f"{piece} belongs to no turn of {turns}"
        groups[max(owners, key=lambda i: turns[i].start)].append(piece)
    return groups


def check_turns(found: Sequence[tuple[object, float, str]], turns: Sequence[Turn],
                tolerance: float, max_cer: float, japanese: bool = True) -> None:
    """Every turn was heard on its channel, starting within ``tolerance`` s, its text with a
    character (or word) error rate under ``max_cer``; nothing was heard that was not said."""
    from mediasrv.analysis.scoring import cer, wer

    for turn, got in zip(turns, assign_to_turns(found, turns, tolerance), strict=True):
        assert got, f"nothing decoded for {turn}; found {found}"
        assert abs(got[0][1] - turn.start) < tolerance, (turn, got)
        text = ("" if japanese else " ").join(g[2] for g in got)
        rate = cer(turn.text, text) if japanese else wer(turn.text, text)
        assert rate < max_cer, (turn, got, rate)
