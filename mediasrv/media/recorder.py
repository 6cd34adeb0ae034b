"""Call recordings (F12): several per call, with handles, pauses (PCI) and crash safety.

Each call that records has one :class:`CallRecorder`: one stereo timeline in the ``recbuf``
kernel (caller left, operator right, 8 kHz) that the packet path feeds with what each leg's
peer *sent*, placed by RTP timestamp (gaps stay silent: F12), and any number of recordings
reading it at once, each from its own start: the whole call in stereo, a voicemail in mono
on the caller channel, a one-sided stereo file. A recording starts, pauses, resumes and
stops on its own; a paused span is silence in its file and listed in its result. Prompts and
whispers we play never reach a channel: only received audio is recorded.

No Python runs per packet or per call while recording: with the Cython kernels the engine
thread feeds the timeline from C, and the kernel's ``Writer`` thread commits every timeline
four times a second, encodes each recording (16-bit PCM or µ-law, WAVE format tag 7) and
writes the files with write()/pwrite() without the GIL. The header is rewritten about once
a second after the data it describes, so a file cut by ``kill -9`` is a valid WAV up to the
last update and :func:`repair_wav` recovers the rest.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from mediasrv.media import kernels
from mediasrv.media.api import PauseSpan, RecordingId, RecordingResult, RecordMode
from mediasrv.media.codec import Codec

log = logging.getLogger(__name__)

RATE = 8000
LEFT, RIGHT = 0, 1  # channels: caller, operator
_MASK = {RecordMode.BOTH: 3, RecordMode.CALLER: 1, RecordMode.OPERATOR: 2}  # kernel masks


class RecordingFormat(enum.Enum):
    PCM16 = "pcm16"
    ULAW = "ulaw"


def wav_header(fmt: RecordingFormat, data_bytes: int, channels: int = 2) -> bytes:
    """The header the writer puts on every file (``recbuf.wav_header``)."""
    return kernels.recbuf.wav_header(channels, fmt is RecordingFormat.ULAW, data_bytes)


class RecordingWriter:
    """The engine's one file writer: the kernel's writer thread, started with the first
    recording. :meth:`poll` (from the engine's periodic timer) forgets finished calls and
    returns the files that failed."""

    def __init__(self) -> None:
        self._writer = kernels.recbuf.Writer()

    def register(self, timeline: kernels.recbuf.StereoTimeline, clock_offset: float) -> None:
        if not self._writer.running:
            self._writer.start()
        self._writer.register(timeline, clock_offset)

    def poll(self) -> list[tuple[int, int]]:
        """(recording id, errno) of files that failed since the last poll."""
        self._writer.reap()
        return self._writer.failures()

    async def drain(self) -> None:
        """Wait until everything stopped so far is on disk (the wait blocks a thread)."""
        await asyncio.get_running_loop().run_in_executor(None, self._writer.sync)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._writer.stop)
        self._writer.reap()


@dataclass(slots=True)
class _Recording:
    path: Path
    index: int  # the kernel's output index
    mask: int
    block: int  # bytes per frame in the file
    channels: int
    ulaw: bool
    pause_from: int | None = None  # timeline sample of the pause in progress
    pauses: list[tuple[int, int]] = field(default_factory=list)  # timeline samples


class CallRecorder:
    """One call's timeline and every recording reading it.

    It is the packet path's record sink: the Cython paths feed ``timeline`` from C, the
    reference path calls :meth:`feed`. Times are the engine's ``loop.time()``.
    """

    __slots__ = ("_running", "timeline")

    def __init__(self, writer: RecordingWriter, clock_offset: float) -> None:
        self.timeline = kernels.recbuf.StereoTimeline()
        self._running: dict[RecordingId, _Recording] = {}
        writer.register(self.timeline, clock_offset)

    def feed(
        self, channel: int, ssrc: int, ts: int, codec: Codec, payload: bytes, now: float
    ) -> None:
        self.timeline.feed(channel, ssrc, ts, int(codec), payload, now)

    def start(
        self,
        ident: RecordingId,
        path: Path,
        mode: RecordMode,
        stereo: bool,
        fmt: RecordingFormat,
        now: float,
    ) -> None:
        """Stereo (caller left, operator right; a channel ``mode`` leaves out is silent) or
        mono of the channel ``mode`` names (both summed, saturating, for ``BOTH``)."""
        channels = 2 if stereo else 1
        ulaw = fmt is RecordingFormat.ULAW
        mask = _MASK[mode]
        index = self.timeline.add_output(ident, channels, mask, ulaw, now, os.fsencode(path))
        block = channels * (1 if ulaw else 2)
        self._running[ident] = _Recording(path, index, mask, block, channels, ulaw)

    def channels(self) -> frozenset[int]:
        """The channels running recordings need: which legs must feed the timeline."""
        mask = 0
        for rec in self._running.values():
            mask |= rec.mask
        return frozenset(ch for ch in (LEFT, RIGHT) if mask & (1 << ch))

    def running(self) -> int:
        return len(self._running)

    def pause(self, ident: RecordingId, now: float) -> None:
        rec = self._running[ident]
        start = self.timeline.pause_output(rec.index, now)
        if start >= 0:
            rec.pause_from = start

    def resume(self, ident: RecordingId, now: float) -> None:
        rec = self._running[ident]
        end = self.timeline.resume_output(rec.index, now)
        if end >= 0 and rec.pause_from is not None:
            rec.pauses.append((rec.pause_from, end))
            rec.pause_from = None

    def stop(self, ident: RecordingId, now: float) -> RecordingResult:
        """Stop one recording at ``now``; its file is closed by the writer's next pass."""
        rec = self._running.pop(ident)
        start, stop = self.timeline.stop_output(rec.index, now)
        return self._result(ident, rec, start, stop)

    def close(self) -> list[RecordingResult]:
        """The call ended: stop every running recording at its last audio."""
        self.timeline.close()
        results = []
        for ident, rec in self._running.items():
            start, stop = self.timeline.output_frames(rec.index)
            results.append(self._result(ident, rec, start, stop))
        self._running.clear()
        return results

    def _result(
        self, ident: RecordingId, rec: _Recording, start: int, stop: int
    ) -> RecordingResult:
        if rec.pause_from is not None:
            rec.pauses.append((rec.pause_from, stop))  # stopped while paused
            rec.pause_from = None
        frames = stop - start
        header = len(kernels.recbuf.wav_header(rec.channels, rec.ulaw, 0))
        pauses = tuple(
            PauseSpan((max(a, start) - start) / RATE, (min(b, stop) - start) / RATE)
            for a, b in rec.pauses
        )
        failed = self.timeline.output_state(rec.index)[1] != 0
        return RecordingResult(
            ident,
            None if failed else rec.path,
            0 if failed else header + frames * rec.block,
            frames / RATE,
            pauses,
        )


# --------------------------------------------------------------------------------------------
# Repair after a crash


def repair_wav(path: Path) -> bool:
    """Fix the RIFF/data/fact sizes of a WAV cut short by a crash (e.g. ``kill -9``).

    Returns True if the file was changed, False if it was already consistent or is not a
    RIFF/WAVE file with a data chunk (left untouched, and logged).
    """
    try:
        with open(path, "r+b") as f:
            head = f.read(4096)
            layout = _layout(head)
            if layout is None:
                log.warning("repair_wav: %s is not a RIFF/WAVE file with a data chunk", path)
                return False
            data_off, block, fact_off = layout
            size = f.seek(0, os.SEEK_END)
            data_len = max(0, size - data_off)
            data_len -= data_len % block  # drop a frame cut in half
            want = [(4, data_off + data_len - 8), (data_off - 4, data_len)]
            if fact_off is not None:
                want.append((fact_off + 8, data_len // block))
            changed = data_off + data_len != size
            for offset, value in want:
                f.seek(offset)
                if struct.unpack("<I", f.read(4))[0] != value:
                    f.seek(offset)
                    f.write(struct.pack("<I", value))
                    changed = True
            if data_off + data_len != size:
                f.truncate(data_off + data_len)
            return changed
    except OSError as exc:
        log.warning("repair_wav: cannot repair %s: %s", path, exc)
        return False


def _layout(head: bytes) -> tuple[int, int, int | None] | None:
    """(data offset, block align, fact chunk offset) from a WAV header, or None."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block, fact = 12, 0, None
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if cid == b"data":
            return (pos + 8, block, fact) if block > 0 else None
        if cid == b"fmt " and pos + 22 <= len(head):
            block = struct.unpack_from("<H", head, pos + 20)[0]
        elif cid == b"fact":
            fact = pos
        pos += 8 + size + (size & 1)
    return None


def repair_dir(directory: Path) -> list[Path]:
    """Run :func:`repair_wav` over every ``*.wav`` below ``directory``; return those fixed."""
    return [p for p in sorted(directory.rglob("*.wav")) if repair_wav(p)]
