"""In-band DTMF detection (Goertzel) to ITU-T Q.23/Q.24: reference twin of ``cext.dtmf``.

Two stages, so that the cheap one runs on every sample and the strict one rarely:

1. **Block stage** (every 102-sample block, 12.75 ms): Goertzel power at the 8 Q.23
   frequencies; a block is a *hit* for a digit when the strongest row and column tones are
   above the level floor, dominate their groups, hold most of the block's energy and have a
   plausible twist. Hits of one digit form a run (one missing block is bridged, so noise does
   not split a digit in two).
2. **Verification** (at the 3rd..5th hit of a run; 306 samples, Hann window): the row and
   column frequencies are measured on a 0.5% grid with parabolic interpolation and must lie
   within ±2.5% of nominal (Q.24: operate within ±1.5%, never beyond ±3.5%); the measured
   twist must lie within 6 dB forward / 10 dB reverse (Q.24 asks 4 / 8 dB); both tones
   together must hold >= 70% of the window's energy (talk-off guard).

A verified run is reported once when it ends, as (digit, start_sample, duration_samples).
Three hit blocks are needed, so a tone of 40 ms (320 samples) is always seen.

Floating-point work is ordered identically in both twins so that they agree bit for bit.
"""

from __future__ import annotations

import math
import sys
from array import array

SAMPLE_RATE = 8000
BLOCK = 102
VERIFY_BLOCKS = 3
WINDOW = BLOCK * VERIFY_BLOCKS
MAX_VERIFY_HIT = 5  # verification attempts at hits 3, 4 and 5 of a run
MISSES_TO_END = 2  # one missing block inside a tone is bridged
ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")

# Thresholds as literal doubles so both twins compare against identical values.
MIN_TONE_POWER = 3.1862025e8  # (A·N/2)² for a tone of amplitude A = 350 (about -36 dBm0)
GROUP_DOMINANCE = 2.0  # the chosen tone beats the others of its group by 3 dB (block stage)
BLOCK_TWIST_LIMIT = 15.848931924611133  # 12 dB either way in the block stage
BLOCK_FRACTION = 0.5  # tones hold half of the block energy (block stage)
VERIFY_STEP = 0.005  # frequency grid of the verification stage: 0.5% of nominal
VERIFY_SPAN = 8  # grid of ±8 steps (±4%)
MAX_DEVIATION = 0.025  # accept within ±2.5% (between Q.24's 1.5% and 3.5%)
TWIST_FORWARD = 3.9810717055349722  # 6 dB: column (high group) louder than row
TWIST_REVERSE = 10.0  # 10 dB: row (low group) louder than column
VERIFY_FRACTION = 0.7


def goertzel_coefficient(freq: float) -> float:
    return 2.0 * math.cos(2.0 * math.pi * freq / 8000.0)


ROW_COEFFS = tuple(goertzel_coefficient(f) for f in ROWS)
COL_COEFFS = tuple(goertzel_coefficient(f) for f in COLS)
HANN = tuple(0.5 - 0.5 * math.cos(2.0 * math.pi * n / (WINDOW - 1)) for n in range(WINDOW))


def _hann_gain() -> float:
    """2·Σw²/(Σw)²: scales a windowed DFT power to the windowed energy of the same tone."""
    sum_w = 0.0
    sum_w2 = 0.0
    for w in HANN:
        sum_w += w
        sum_w2 += w * w
    return 2.0 * sum_w2 / (sum_w * sum_w)


HANN_GAIN = _hann_gain()


def windowed_power(x: list[float], coeff: float) -> float:
    """Goertzel power of an already windowed block."""
    s1 = 0.0
    s2 = 0.0
    for v in x:
        s = v + coeff * s1 - s2
        s2 = s1
        s1 = s
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def measure_tone(x: list[float], nominal: float) -> tuple[float, float]:
    """(relative frequency deviation, peak power) of the tone near ``nominal``.

    Deviation 1.0 means "no peak inside the grid" (the tone is too far off).
    """
    powers = []
    for k in range(-VERIFY_SPAN, VERIFY_SPAN + 1):
        powers.append(windowed_power(x, goertzel_coefficient(nominal * (1.0 + k * VERIFY_STEP))))
    best = 0
    for i in range(1, len(powers)):
        if powers[i] > powers[best]:
            best = i
    if best == 0 or best == len(powers) - 1:
        return 1.0, powers[best]
    left, mid, right = powers[best - 1], powers[best], powers[best + 1]
    denom = left - 2.0 * mid + right
    shift = 0.5 * (left - right) / denom if denom != 0.0 else 0.0
    return abs((best - VERIFY_SPAN + shift) * VERIFY_STEP), mid


def verify_digit(samples: list[float], row: int, col: int) -> bool:
    """The strict stage: frequencies, twist and energy share over a Hann window."""
    x = [samples[n] * HANN[n] for n in range(WINDOW)]
    energy = 0.0
    for v in x:
        energy += v * v
    if energy <= 0.0:
        return False
    row_dev, row_power = measure_tone(x, ROWS[row])
    col_dev, col_power = measure_tone(x, COLS[col])
    if row_dev > MAX_DEVIATION or col_dev > MAX_DEVIATION:
        return False
    if col_power > row_power * TWIST_FORWARD or row_power > col_power * TWIST_REVERSE:
        return False
    return (row_power + col_power) * HANN_GAIN >= VERIFY_FRACTION * energy


class DtmfDetector:
    """Streaming in-band DTMF detector over 8 kHz 16-bit PCM.

    ``feed_pcm`` / ``feed_ulaw`` / ``feed_alaw`` return the digits that *ended* within the
    data, each as (digit, start_sample, duration_samples) counted from the stream start.
    """

    def __init__(self) -> None:
        self._s1 = [0.0] * 8
        self._s2 = [0.0] * 8
        self._energy = 0.0
        self._fill = 0
        self._position = 0  # samples consumed since the stream began
        self._history = [0.0] * WINDOW  # the last WINDOW samples (ring)
        self._ring = 0
        self._digit = -1  # row*4+col of the current run, -1 when none
        self._hits = 0
        self._misses = 0
        self._verified = False
        self._start = 0
        self._end = 0
        self._events: list[tuple[str, int, int]] = []

    def feed_pcm(self, pcm: bytes) -> list[tuple[str, int, int]]:
        if len(pcm) % 2:
            raise ValueError(f"16-bit PCM must have an even length, got {len(pcm)} bytes")
        samples = array("h")
        samples.frombytes(bytes(pcm))
        if sys.byteorder == "big":
            samples.byteswap()
        return self.feed_samples(samples)

    def feed_ulaw(self, data: bytes) -> list[tuple[str, int, int]]:
        from .g711_py import ULAW_DECODE

        return self.feed_samples([ULAW_DECODE[c] for c in bytes(data)])

    def feed_alaw(self, data: bytes) -> list[tuple[str, int, int]]:
        from .g711_py import ALAW_DECODE

        return self.feed_samples([ALAW_DECODE[c] for c in bytes(data)])

    def feed_samples(self, samples: array[int] | list[int]) -> list[tuple[str, int, int]]:
        for sample in samples:
            self._feed_one(float(sample))
        events, self._events = self._events, []
        return events

    def flush(self) -> list[tuple[str, int, int]]:
        """End of stream: report a verified digit still sounding."""
        self._end_run()
        events, self._events = self._events, []
        return events

    def _feed_one(self, x: float) -> None:
        self._history[self._ring] = x
        self._ring = (self._ring + 1) % WINDOW
        self._energy += x * x
        for i in range(4):
            s = x + ROW_COEFFS[i] * self._s1[i] - self._s2[i]
            self._s2[i] = self._s1[i]
            self._s1[i] = s
            s = x + COL_COEFFS[i] * self._s1[i + 4] - self._s2[i + 4]
            self._s2[i + 4] = self._s1[i + 4]
            self._s1[i + 4] = s
        self._fill += 1
        self._position += 1
        if self._fill == BLOCK:
            self._block_done()

    def _block_done(self) -> None:
        digit = self._block_digit()
        for i in range(8):
            self._s1[i] = 0.0
            self._s2[i] = 0.0
        self._energy = 0.0
        self._fill = 0
        self._track(digit)

    def _power(self, i: int, coeff: float) -> float:
        s1 = self._s1[i]
        s2 = self._s2[i]
        return s1 * s1 + s2 * s2 - coeff * s1 * s2

    def _block_digit(self) -> int:
        """The Q.23 digit (row*4+col) this block hits, or -1."""
        rows = [self._power(i, ROW_COEFFS[i]) for i in range(4)]
        cols = [self._power(i + 4, COL_COEFFS[i]) for i in range(4)]
        r = _strongest(rows)
        c = _strongest(cols)
        pr = rows[r]
        pc = cols[c]
        if pr < MIN_TONE_POWER or pc < MIN_TONE_POWER:
            return -1
        if pc > pr * BLOCK_TWIST_LIMIT or pr > pc * BLOCK_TWIST_LIMIT:
            return -1
        for i in range(4):
            if i != r and rows[i] * GROUP_DOMINANCE > pr:
                return -1
            if i != c and cols[i] * GROUP_DOMINANCE > pc:
                return -1
        # Goertzel power of a tone of amplitude A is (A·N/2)²; its block energy is N·A²/2.
        if (pr + pc) * 2.0 < BLOCK_FRACTION * self._energy * BLOCK:
            return -1
        return r * 4 + c

    def _track(self, digit: int) -> None:
        if digit >= 0 and digit == self._digit:
            self._hits += 1
            self._misses = 0
            self._end = self._position
        elif digit >= 0:
            self._end_run()
            self._digit = digit
            self._hits = 1
            self._misses = 0
            self._verified = False
            self._start = self._position - BLOCK
            self._end = self._position
        elif self._digit >= 0:
            self._misses += 1
            if self._misses >= MISSES_TO_END:
                self._end_run()
            return
        else:
            return
        if not self._verified and VERIFY_BLOCKS <= self._hits <= MAX_VERIFY_HIT:
            window = [self._history[(self._ring + n) % WINDOW] for n in range(WINDOW)]
            self._verified = verify_digit(window, self._digit // 4, self._digit % 4)

    def _end_run(self) -> None:
        if self._digit >= 0 and self._verified:
            key = KEYPAD[self._digit // 4][self._digit % 4]
            self._events.append((key, self._start, self._end - self._start))
        self._digit = -1
        self._hits = 0
        self._misses = 0
        self._verified = False


def _strongest(powers: list[float]) -> int:
    best = 0
    for i in range(1, 4):
        if powers[i] > powers[best]:
            best = i
    return best
