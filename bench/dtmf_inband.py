"""What in-band DTMF detection costs per RTP packet (issue 9 §4: the detector now runs on
every leg, telephone-event negotiated or not, so a key sent both ways is merged once).

Feeds 20 ms G.711 µ-law frames of real speech (Asterisk's English prompts, Debian
``asterisk-core-sounds-en-wav``; synthetic noise when absent) with a DTMF key every second,
through the Cython detector (``cext.dtmf``, what the relay runs per packet, in C) and the
pure-Python reference, and counts the keys found (the speech must give none: talk-off).

Last line::

    RESULT dtmf_inband frames=<n> cython_us_per_frame=<x> python_us_per_frame=<x>
        cpu_per_100_streams=<x> relay_share=<x> keys=<found>/<sent>

``cpu_per_100_streams`` is the detector's CPU, % of a core, for 100 streams of 50 packets/s;
``relay_share`` is that against the relay's own 1.91 % per 100 streams (bench/RESULTS.md,
"Media relay", 2,000 calls unrecorded: its cheapest figure, so the share is an upper bound).
The Cython time is measured through its Python method, so it includes a Python call per
frame that the relay (calling the C function) does not pay: an upper bound again.

Usage: python bench/dtmf_inband.py [--frames 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from pathlib import Path

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)

import numpy as np

SOUNDS = Path("/usr/share/asterisk/sounds/en")
RELAY_CPU_PER_100_STREAMS = 1.91  # bench/RESULTS.md, "Media relay", 2,000 calls, unrecorded
KEYS = {"5": (770, 1336), "9": (852, 1477), "#": (941, 1477)}


def speech(seconds: float) -> np.ndarray:
    """Real speech, prompt after prompt, 8 kHz 16-bit; noise if the prompts are absent."""
    out: list[np.ndarray] = []
    total = int(seconds * 8000)
    for path in sorted(SOUNDS.glob("*.wav")) if SOUNDS.is_dir() else []:
        with wave.open(str(path)) as w:
            if w.getframerate() != 8000 or w.getsampwidth() != 2 or w.getnchannels() != 1:
                continue
            out.append(np.frombuffer(w.readframes(w.getnframes()), "<i2"))
        if sum(len(x) for x in out) >= total:
            break
    if not out:
        print("bench: no Asterisk prompts; using noise", flush=True)
        return (np.random.default_rng(1).normal(0, 3000, total)).astype(np.int16)
    print(f"bench: {len(out)} Asterisk prompts as speech", flush=True)
    pcm = np.concatenate(out)
    return np.resize(pcm, total)


def with_keys(pcm: np.ndarray) -> tuple[np.ndarray, int]:
    """A 100 ms key (followed by 100 ms of silence) every second."""
    pcm = pcm.copy()
    t = np.arange(800) / 8000
    sent = 0
    keys = list(KEYS.values())
    for n, start in enumerate(range(4000, len(pcm) - 1600, 8000)):
        lo, hi = keys[n % len(keys)]
        pcm[start : start + 800] = (6000 * np.sin(2 * np.pi * lo * t)
                                    + 6000 * np.sin(2 * np.pi * hi * t)).astype(np.int16)
        pcm[start + 800 : start + 1600] = 0
        sent += 1
    return pcm, sent


def frames_of(pcm: np.ndarray) -> list[bytes]:
    from mediasrv.media.kernels import g711

    data = g711.ulaw_encode(pcm.astype("<i2").tobytes())
    return [data[i : i + 160] for i in range(0, len(data) - 159, 160)]


def time_detector(detector: object, frames: list[bytes]) -> tuple[float, int]:
    feed = detector.feed_ulaw  # type: ignore[attr-defined]
    found = 0
    start = time.process_time()
    for frame in frames:
        found += len(feed(frame))
    return (time.process_time() - start) / len(frames) * 1e6, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000)
    args = parser.parse_args()
    from mediasrv.media.kernels import load_kernel

    pcm, sent = with_keys(speech(args.frames / 50))
    frames = frames_of(pcm)
    cy = load_kernel("dtmf", python=False)
    py = load_kernel("dtmf", python=True)
    cy_us, cy_found = time_detector(cy.DtmfDetector(), frames)
    few = frames[: min(len(frames), 5_000)]
    py_us, _ = time_detector(py.DtmfDetector(), few)
    cpu = cy_us * 50 * 100 / 1e6 * 100  # % of a core for 100 streams at 50 packets/s
    print(f"bench: {len(frames)} frames, Cython {cy_us:.2f} us/frame, Python {py_us:.1f} us/frame")
    print(
        f"RESULT dtmf_inband frames={len(frames)} cython_us_per_frame={cy_us:.2f} "
        f"python_us_per_frame={py_us:.1f} cpu_per_100_streams={cpu:.3f} "
        f"relay_share={cpu / RELAY_CPU_PER_100_STREAMS:.2f} keys={cy_found}/{sent}"
    )


if __name__ == "__main__":
    main()
