"""Shared helpers for the analysis tests (real speech, models directory, call mixing)."""

from __future__ import annotations

import gzip
import json
import re
import wave
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
