"""Prompts: WAV files (8 kHz mono 16-bit) played to one leg as 20 ms RTP frames.

Pacing is by sample count on the loop clock: frame *i* is due at ``t0 + i * 20 ms``; a late
timer sends every frame that is due (a few at most) instead of drifting, as wall-clock sleeps
would.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mediasrv.media import codec as g711
from mediasrv.media.api import MediaError
from mediasrv.media.codec import Codec

RATE = 8000
FRAME = 160  # samples per 20 ms packet (RFC 3551 §4.5: G.711 default ptime 20 ms)
FRAME_S = FRAME / RATE
MAX_CATCH_UP = 5  # frames sent at once when the loop was late; beyond that we skip ahead
CACHE_SIZE = 64


class PromptError(MediaError):
    """A prompt file is missing, unreadable or not 8 kHz mono 16-bit PCM WAV."""


class Prompt:
    __slots__ = ("_encoded", "_pcm_frames", "name", "pcm")

    def __init__(self, name: str, pcm: np.ndarray) -> None:
        self.name = name
        self.pcm = pcm
        self._encoded: dict[Codec, list[bytes]] = {}
        self._pcm_frames: list[bytes] | None = None

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


class PromptPlayer:
    """Calls ``send(frame index, marker)`` at 50 frames/s for ``frames`` frames; then ``done``."""

    __slots__ = ("_done", "_frames", "_handle", "_loop", "_repeat", "_send", "_sent", "_t0")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        frames: int,
        repeat: bool,
        send: Callable[[int, bool], object],
        done: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._frames = frames
        self._repeat = repeat
        self._send = send
        self._done = done
        self._sent = 0
        self._t0 = loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self._step()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _step(self) -> None:
        self._handle = None
        due = int((self._loop.time() - self._t0) / FRAME_S) + 1
        if due - self._sent > MAX_CATCH_UP:
            # The loop stalled: skip what is hopelessly late rather than burst it.
            self._t0 += (due - self._sent - MAX_CATCH_UP) * FRAME_S
            due = self._sent + MAX_CATCH_UP
        total = self._frames
        while self._sent < due:
            if self._sent >= total and not self._repeat:
                self._done()
                return
            self._send(self._sent % total, self._sent == 0)
            self._sent += 1
        if self._sent >= total and not self._repeat:
            # Finish when the last frame's 20 ms have played out, not when it left.
            self._handle = self._loop.call_at(self._t0 + self._sent * FRAME_S, self._done)
            return
        self._handle = self._loop.call_at(self._t0 + self._sent * FRAME_S, self._step)
