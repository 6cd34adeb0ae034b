"""Prompt playout: the frames a leg hears while a playlist plays; reference twin of
``cext.playout``.

:class:`PromptFrames` is one prompt prepared once (16-bit PCM, and its G.711 µ-law and A-law
encodings, ITU-T G.711) and shared by every leg that plays it. A :class:`Player` walks a
playlist sample by sample, so the prompts of a playlist follow each other without a gap (only
the very end is padded to a whole frame, with silence), and a looping play wraps around the
same way. With ``mix`` the player keeps a short FIFO of what the bridged partner says (the
packet path feeds it) and each frame is ``encode(saturate(partner + prompt))``: a whisper
(issue 9 §3). When the partner is silent the frame is the prompt alone.

Both twins agree bit for bit (tests/kernels/test_kernels_playout.py); the Cython packet paths
use ``cext.playout``'s C functions (``cimport``), the reference packet path this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import g711_py

FRAME = 160  # samples per 20 ms frame (RFC 3551 §4.5: G.711 default ptime)
MIX_CAP = 480  # partner samples kept for a whisper (60 ms; the oldest go first)
MIX_PRIME = 2 * FRAME  # partner samples buffered before the first take (jitter margin)
PCMU = 0  # codec numbers = static payload types (RFC 3551 §6)
PCMA = 8
SILENCE = {PCMU: 0xFF, PCMA: 0xD5}  # G.711 encodings of 0


def _clamp(value: int) -> int:
    return -32768 if value < -32768 else 32767 if value > 32767 else value


class PromptFrames:
    """One prompt, 8 kHz 16-bit little-endian PCM, prepared for every codec once."""

    __slots__ = ("alaw", "length", "pcm", "ulaw")

    def __init__(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
        if not pcm:
            raise ValueError("a prompt needs at least one sample")
        self.pcm = bytes(pcm)
        self.length = len(pcm) // 2
        self.ulaw = g711_py.ulaw_encode(self.pcm)
        self.alaw = g711_py.alaw_encode(self.pcm)

    def encoded(self, codec: int) -> bytes:
        return self.alaw if codec == PCMA else self.ulaw


def _samples(pcm: bytes) -> list[int]:
    return [v - 65536 if v & 0x8000 else v for v in memoryview(pcm).cast("H")]


class Player:
    """One play of a playlist on one leg: :meth:`next_frame` yields its 20 ms frames."""

    __slots__ = (
        "_fifo",
        "_prompts",
        "index",
        "last_index",
        "loop",
        "mix",
        "offset",
        "primed",
        "sent",
    )

    def __init__(self, playlist: Sequence[PromptFrames], loop: bool, mix: bool) -> None:
        if not playlist:
            raise ValueError("a playlist needs at least one prompt")
        self._prompts = list(playlist)
        self.loop = loop
        self.mix = mix
        self.index = 0  # prompt being played
        self.offset = 0  # next sample in it
        self.last_index = 0  # the prompt the last frame began in
        self.sent = 0  # frames produced
        self._fifo: list[int] = []
        self.primed = False

    @property
    def done(self) -> bool:
        return self.index >= len(self._prompts)

    def next_frame(self, codec: int) -> bytes | None:
        """The next 20 ms in ``codec`` (0 PCMU, 8 PCMA); None once the playlist has ended."""
        if self.done:
            return None
        self.last_index = self.index
        self.sent += 1
        if not self.mix:
            return self._take_encoded(codec)
        partner = self._take_partner()
        prompt = _samples(self._take_pcm())
        mixed = bytearray(2 * FRAME)
        for i in range(FRAME):
            v = _clamp(partner[i] + (prompt[i] if i < len(prompt) else 0)) & 0xFFFF
            mixed[2 * i] = v & 0xFF
            mixed[2 * i + 1] = v >> 8
        data = bytes(mixed)
        return g711_py.alaw_encode(data) if codec == PCMA else g711_py.ulaw_encode(data)

    def feed(self, payload: bytes, codec: int) -> None:
        """What the bridged partner says (G.711), kept for the next frames of a mix."""
        pcm = g711_py.alaw_decode(payload) if codec == PCMA else g711_py.ulaw_decode(payload)
        self._fifo.extend(_samples(pcm))
        if len(self._fifo) > MIX_CAP:
            del self._fifo[: len(self._fifo) - MIX_CAP]

    # ---- internals ------------------------------------------------------------------------

    def _advance(self, n: int) -> list[tuple[PromptFrames, int, int]]:
        """Up to ``n`` samples from the current position: (prompt, start, stop) spans."""
        spans = []
        prompts = self._prompts
        while n and self.index < len(prompts):
            prompt = prompts[self.index]
            take = min(n, prompt.length - self.offset)
            spans.append((prompt, self.offset, self.offset + take))
            self.offset += take
            n -= take
            if self.offset == prompt.length:
                self.index, self.offset = self.index + 1, 0
                if self.index == len(prompts) and self.loop:
                    self.index = 0
        return spans

    def _take_encoded(self, codec: int) -> bytes:
        out = b"".join(p.encoded(codec)[a:b] for p, a, b in self._advance(FRAME))
        return out + bytes([SILENCE[PCMA if codec == PCMA else PCMU]]) * (FRAME - len(out))

    def _take_pcm(self) -> bytes:
        return b"".join(p.pcm[2 * a : 2 * b] for p, a, b in self._advance(FRAME))

    def _take_partner(self) -> list[int]:
        fifo = self._fifo
        if not self.primed:
            if len(fifo) < MIX_PRIME:
                return [0] * FRAME
            self.primed = True
        out = fifo[:FRAME]
        del fifo[:FRAME]
        if not fifo:
            self.primed = False
        return out + [0] * (FRAME - len(out))
