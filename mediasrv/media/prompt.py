"""Prompts: WAV files (8 kHz mono 16-bit) played to one leg as 20 ms RTP frames.

This module reads and caches them; the packet path plays them (``PacketPath.play``): paced
by sample count, frame *i* due at ``t0 + i * 20 ms``, on the Cython engine thread in C.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from mediasrv.media import codec as g711
from mediasrv.media.api import MediaError
from mediasrv.media.codec import Codec

RATE = 8000
FRAME = 160  # samples per 20 ms packet (RFC 3551 §4.5: G.711 default ptime 20 ms)
FRAME_S = FRAME / RATE
CACHE_SIZE = 64


class PromptError(MediaError):
    """A prompt file is missing, unreadable or not 8 kHz mono 16-bit PCM WAV."""


class Prompt:
    __slots__ = ("_encoded", "_pcm_frames", "name", "pcm", "shared")

    def __init__(self, name: str, pcm: np.ndarray) -> None:
        self.name = name
        self.pcm = pcm
        self._encoded: dict[Codec, list[bytes]] = {}
        self._pcm_frames: list[bytes] | None = None
        # Prepared once by the engine's packet path (``PacketPath.prompt_frames``) and shared
        # by every leg that plays this prompt.
        self.shared: object | None = None

    def __len__(self) -> int:
        """Number of 20 ms frames."""
        return -(-len(self.pcm) // FRAME)

    def pcm_frames(self) -> list[bytes]:
        """16-bit little-endian PCM per 20 ms frame (for mixing into live audio)."""
        if self._pcm_frames is None:
            pad = (-len(self.pcm)) % FRAME
            data = np.concatenate([self.pcm, np.zeros(pad, dtype=np.int16)]).astype("<i2")
            raw = data.tobytes()
            self._pcm_frames = [raw[i : i + 2 * FRAME] for i in range(0, len(raw), 2 * FRAME)]
        return self._pcm_frames

    def frames(self, codec: Codec) -> list[bytes]:
        frames = self._encoded.get(codec)
        if frames is None:
            pad = (-len(self.pcm)) % FRAME  # the last frame is padded with silence
            pcm = np.concatenate([self.pcm, np.zeros(pad, dtype=np.int16)])
            data = g711.encode(codec, pcm)
            frames = [data[i : i + FRAME] for i in range(0, len(data), FRAME)]
            self._encoded[codec] = frames
        return frames


def read_prompt(path: Path) -> Prompt:
    """Read a prompt; raise :class:`PromptError` naming the file and what is wrong."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            if (rate, channels, width) != (RATE, 1, 2):
                raise PromptError(
                    f"prompt {path}: need 8000 Hz mono 16-bit PCM WAV, got {rate} Hz, "
                    f"{channels} channel(s), {8 * width}-bit"
                )
            data = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise PromptError(f"prompt {path}: cannot read WAV: {exc}") from None
    pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
    if len(pcm) == 0:
        raise PromptError(f"prompt {path}: no audio frames")
    return Prompt(path.name, pcm)


class PromptCache:
    """Prompts by path, read once (bounded; the oldest is dropped first)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[Path, Prompt] = {}

    def load(self, path: Path) -> Prompt:
        prompt = self._items.get(path)
        if prompt is None:
            prompt = read_prompt(path)
            if len(self._items) >= CACHE_SIZE:
                del self._items[next(iter(self._items))]
            self._items[path] = prompt
        return prompt
