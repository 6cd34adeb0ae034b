"""In-band DTMF (Goertzel) against ITU-T Q.24 boundaries and the talk-off corpus; both
implementations, and parity between them."""

from __future__ import annotations

import math
import random
import struct
import wave
from pathlib import Path
from types import ModuleType

import pytest
from kernel_twins import kernel_pair

from mediasrv.media.kernels import load_kernel

FS = 8000
ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
DIGITS = [(KEYPAD[r][c], r, c) for r in range(4) for c in range(4)]
DBM0_AMPLITUDE = 22270.0  # peak of a 0 dBm0 sine in G.711 16-bit scale (µ-law: 3.17 dBm0 max)
CORPUS = Path("/usr/share/asterisk/sounds/en")  # Debian asterisk-core-sounds-en-wav
SILENCE = [0.0] * 800


@pytest.fixture
def dtmf(impl_kind: str) -> ModuleType:
    return load_kernel("dtmf", python=impl_kind == "python")


def amplitude(dbm0: float) -> float:
    return DBM0_AMPLITUDE * 10 ** (dbm0 / 20)


def tone_pair(
    f_row: float, f_col: float, ms: float, row_dbm0: float = -10.0, col_dbm0: float = -10.0,
    phase: float = 0.3,
) -> list[float]:  # fmt: skip
    a_r, a_c = amplitude(row_dbm0), amplitude(col_dbm0)
    n = round(ms * FS / 1000)
    return [
        a_r * math.sin(2 * math.pi * f_row * i / FS + phase)
        + a_c * math.sin(2 * math.pi * f_col * i / FS)
        for i in range(n)
    ]


def pcm(samples: list[float]) -> bytes:
    clipped = [max(-32768, min(32767, round(v))) for v in samples]
    return struct.pack(f"<{len(clipped)}h", *clipped)


def detect(dtmf: ModuleType, samples: list[float]) -> list[tuple[str, int, int]]:
    det = dtmf.DtmfDetector()
    events: list[tuple[str, int, int]] = det.feed_pcm(pcm(samples))
    return events + det.flush()


def digits(dtmf: ModuleType, samples: list[float]) -> str:
    return "".join(d for d, _, _ in detect(dtmf, samples))


# ---- Q.24 boundary table (generated) ----


@pytest.mark.parametrize(
    ("row_dev", "col_dev"),
    [(0.0, 0.0), (0.015, 0.015), (-0.015, -0.015), (0.015, -0.015), (-0.015, 0.015)],
)
def test_detects_within_1_5_percent(dtmf: ModuleType, row_dev: float, col_dev: float) -> None:
    for key, r, c in DIGITS:
        signal = SILENCE + tone_pair(ROWS[r] * (1 + row_dev), COLS[c] * (1 + col_dev), 50) + SILENCE
        assert digits(dtmf, signal) == key, (key, row_dev, col_dev)


@pytest.mark.parametrize(
    ("row_dev", "col_dev"),
    [(0.035, 0.0), (-0.035, 0.0), (0.0, 0.035), (0.0, -0.035), (0.035, 0.035), (-0.05, -0.05)],
)
def test_rejects_beyond_3_5_percent(dtmf: ModuleType, row_dev: float, col_dev: float) -> None:
    for _, r, c in DIGITS:
        signal = SILENCE + tone_pair(ROWS[r] * (1 + row_dev), COLS[c] * (1 + col_dev), 80) + SILENCE
        assert digits(dtmf, signal) == "", (r, c, row_dev, col_dev)


@pytest.mark.parametrize("phase", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("offset", [0, 17, 51, 101])
def test_detects_40_ms(dtmf: ModuleType, offset: int, phase: float) -> None:
    """A 40 ms tone is seen wherever it falls against the detector's blocks."""
    for key, r, c in DIGITS:
        signal = [0.0] * offset + SILENCE + tone_pair(ROWS[r], COLS[c], 40, phase=phase) + SILENCE
        assert digits(dtmf, signal) == key, (key, offset)


@pytest.mark.parametrize("ms", [10, 20])
def test_rejects_short_bursts(dtmf: ModuleType, ms: int) -> None:
    for offset in (0, 30, 60):
        for _, r, c in DIGITS:
            signal = [0.0] * offset + SILENCE + tone_pair(ROWS[r], COLS[c], ms) + SILENCE
            assert digits(dtmf, signal) == ""


@pytest.mark.parametrize(("row_dbm0", "col_dbm0"), [(-14.0, -10.0), (-6.0, -14.0), (-10.0, -10.0)])
@pytest.mark.parametrize("dev", [-0.015, 0.015])
def test_twist_4_db_forward_8_db_reverse(
    dtmf: ModuleType, row_dbm0: float, col_dbm0: float, dev: float
) -> None:
    for key, r, c in DIGITS:
        signal = (
            SILENCE
            + tone_pair(ROWS[r] * (1 + dev), COLS[c] * (1 - dev), 45, row_dbm0, col_dbm0)
            + SILENCE
        )
        assert digits(dtmf, signal) == key, (key, row_dbm0, col_dbm0, dev)


@pytest.mark.parametrize("level", [-25.0, -3.0])
def test_operating_levels(dtmf: ModuleType, level: float) -> None:
    for key, r, c in DIGITS:
        signal = SILENCE + tone_pair(ROWS[r], COLS[c], 50, level, level) + SILENCE
        assert digits(dtmf, signal) == key


def test_below_level_floor_is_ignored(dtmf: ModuleType) -> None:
    signal = SILENCE + tone_pair(ROWS[0], COLS[0], 100, -45.0, -45.0) + SILENCE
    assert digits(dtmf, signal) == ""


@pytest.mark.parametrize("snr_db", [20.0, 12.0])
def test_white_noise_snr(dtmf: ModuleType, snr_db: float) -> None:
    """SNR = both tones' power over the noise power in the 0..4 kHz band."""
    rng = random.Random(int(snr_db))
    tone_power = 2 * amplitude(-20.0) ** 2 / 2
    sigma = math.sqrt(tone_power / 10 ** (snr_db / 10))
    for key, r, c in DIGITS:
        clean = SILENCE + tone_pair(ROWS[r], COLS[c], 50, -20.0, -20.0) + SILENCE
        noisy = [v + rng.gauss(0.0, sigma) for v in clean]
        assert digits(dtmf, noisy) == key, (key, snr_db)


def test_pause_of_40_ms_separates_digits_and_dropout_does_not(dtmf: ModuleType) -> None:
    one = tone_pair(ROWS[0], COLS[0], 60)
    assert digits(dtmf, SILENCE + one + [0.0] * 320 + one + SILENCE) == "11"
    assert digits(dtmf, SILENCE + one + [0.0] * 80 + one + SILENCE) == "1"  # 10 ms break


def test_start_and_duration(dtmf: ModuleType) -> None:
    signal = [0.0] * 1000 + tone_pair(ROWS[2], COLS[1], 100) + [0.0] * 1000
    ((key, start, duration),) = detect(dtmf, signal)
    assert key == "8"
    assert abs(start - 1000) <= 102 and abs(duration - 800) <= 204


def test_digit_sequence_in_ulaw(dtmf: ModuleType) -> None:
    g711 = load_kernel("g711", python=True)
    signal: list[float] = []
    for _key, r, c in DIGITS:
        signal += tone_pair(ROWS[r], COLS[c], 70) + [0.0] * 480
    data = g711.ulaw_encode(pcm(signal))
    det = dtmf.DtmfDetector()
    got = det.feed_ulaw(data[:1000]) + det.feed_ulaw(data[1000:]) + det.flush()
    assert "".join(d for d, _, _ in got) == "".join(k for k, _, _ in DIGITS)


def test_odd_pcm_is_a_clear_error(dtmf: ModuleType) -> None:
    with pytest.raises(ValueError, match="even length"):
        dtmf.DtmfDetector().feed_pcm(b"\x00")


# ---- talk-off: speech must not produce digits ----


def corpus_files() -> list[Path]:
    files = sorted(CORPUS.rglob("*.wav"))
    assert files, f"talk-off corpus missing: apt-get install asterisk-core-sounds-en-wav ({CORPUS})"
    return files


def read_wav(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1), path
        return w.readframes(w.getnframes())


def talk_off(
    dtmf: ModuleType, files: list[Path]
) -> tuple[float, list[tuple[str, list[tuple[str, int, int]]]]]:
    seconds = 0.0
    false_digits = []
    for path in files:
        data = read_wav(path)
        seconds += len(data) / 2 / FS
        det = dtmf.DtmfDetector()
        events = det.feed_pcm(data) + det.flush()
        if events:
            false_digits.append((path.name, events))
    return seconds, false_digits


def speech_subset(minutes: float) -> list[Path]:
    """A fixed subset: files in name order until ``minutes`` of speech."""
    chosen, seconds = [], 0.0
    for path in corpus_files():
        with wave.open(str(path)) as w:
            seconds += w.getnframes() / FS
        chosen.append(path)
        if seconds >= minutes * 60:
            break
    return chosen


def test_talk_off_whole_corpus_cython() -> None:
    """All of Debian's asterisk-core-sounds-en-wav prompts (about 25 minutes of speech)."""
    seconds, false_digits = talk_off(load_kernel("dtmf", python=False), corpus_files())
    assert seconds > 20 * 60
    assert false_digits == []


def test_talk_off_subset_python_reference() -> None:
    """The reference twin on a fixed 4-minute subset (the whole corpus takes ~15 s here)."""
    seconds, false_digits = talk_off(load_kernel("dtmf", python=True), speech_subset(4.0))
    assert seconds >= 240
    assert false_digits == []


# ---- parity ----


def speech_with_tones() -> bytes:
    """Speech with 30 tone pairs spliced in: half clean digits, half random (16-bit PCM)."""
    rng = random.Random(24)
    speech = b"".join(read_wav(p) for p in speech_subset(0.5))
    samples = list(struct.unpack(f"<{len(speech) // 2}h", speech))
    for n in range(30):  # splice tone pairs into speech: half clean digits, half random
        at = 1200 + n * (len(samples) - 2400) // 30
        spread, shortest, low = (0.01, 50.0, -15.0) if n % 2 else (0.04, 15.0, -30.0)
        burst = tone_pair(
            rng.choice(ROWS) * (1 + rng.uniform(-spread, spread)),
            rng.choice(COLS) * (1 + rng.uniform(-spread, spread)),
            rng.uniform(shortest, 140), rng.uniform(low, -3), rng.uniform(low, -3),
        )  # fmt: skip
        for i, v in enumerate(burst):
            samples[at + i] = max(-32768, min(32767, round(v + samples[at + i] * 0.1)))
    return struct.pack(f"<{len(samples)}h", *samples)


def test_parity_on_speech_and_tones() -> None:
    py, cy = kernel_pair("dtmf")
    data = speech_with_tones()
    dp, dc = py.DtmfDetector(), cy.DtmfDetector()
    events_py, events_cy = [], []
    for i in range(0, len(data), 320):  # 20 ms frames, as the packet path feeds them
        events_py += dp.feed_pcm(data[i : i + 320])
        events_cy += dc.feed_pcm(data[i : i + 320])
    events_py += dp.flush()
    events_cy += dc.flush()
    assert events_py == events_cy
    assert len(events_py) >= 12  # the spliced digits were really exercised


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_parity_on_g711_frames_as_the_relay_feeds_them(law: str) -> None:
    """The relay feeds G.711 payloads (cext's block-wise feed_g711 path, not feed_pcm's):
    160-byte frames, and odd sizes that cut the 102-sample blocks anywhere."""
    py, cy = kernel_pair("dtmf")
    g711 = load_kernel("g711", python=False)
    data = getattr(g711, f"{law}_encode")(speech_with_tones())
    for sizes in ([160], [1, 101, 102, 103, 160, 37]):
        dp, dc = py.DtmfDetector(), cy.DtmfDetector()
        events_py, events_cy = [], []
        i = k = 0
        while i < len(data):
            n = sizes[k % len(sizes)]
            events_py += getattr(dp, f"feed_{law}")(data[i : i + n])
            events_cy += getattr(dc, f"feed_{law}")(data[i : i + n])
            i, k = i + n, k + 1
        events_py += dp.flush()
        events_cy += dc.flush()
        assert events_py == events_cy
        assert len(events_py) >= 12


def test_parity_on_noise() -> None:
    py, cy = kernel_pair("dtmf")
    rng = random.Random(7)
    noise = [rng.gauss(0, 3000) for _ in range(40000)]
    assert detect(py, noise) == detect(cy, noise) == []
