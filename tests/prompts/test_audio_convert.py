"""Any WAV -> 8 kHz mono 16-bit prompt: frequency kept, aliasing removed, level normalised,
every input format read, bad files refused with a clear PromptError, each source converted
once."""

from __future__ import annotations

import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from wavgen import ENCODINGS, band_db, peak_hz, tone, wav_bytes, write

from mediasrv.media.audio_convert import (
    PEAK_DBOV,
    TARGET_DBOV,
    ConvertCache,
    PromptError,
    active_level_dbov,
    convert_file,
)

RATES = (8000, 11025, 16000, 22050, 44100, 48000)
LEVEL_TOL_DB = 0.5


def _float(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float64) / 32768.0


def _steady(pcm: np.ndarray) -> np.ndarray:
    """The middle of the output (filter start-up and end cut off)."""
    x = _float(pcm)
    return x[len(x) // 8 : -len(x) // 8]


def test_1khz_tone_at_44100_stays_1khz(tmp_path: Path) -> None:
    src = write(tmp_path / "t.wav", tone(1000, 2.0, 44100), 44100)
    out = convert_file(src)
    x = _steady(out.pcm)
    assert abs(peak_hz(x, 8000) - 1000) <= 4
    # everything but the tone is far below it (no images, no distortion)
    assert band_db(x, 8000, 20, 900) - band_db(x, 8000, 950, 1050) < -50
    assert band_db(x, 8000, 1100, 4000) - band_db(x, 8000, 950, 1050) < -50


def _alias_ratio_db(y: np.ndarray) -> float:
    """Energy at 2 kHz (where 6 kHz folds at 8 kHz) relative to the 1 kHz reference tone."""
    return band_db(y, 8000, 1950, 2050) - band_db(y, 8000, 950, 1050)


def test_6khz_tone_at_48k_is_removed_not_aliased(tmp_path: Path) -> None:
    """6 kHz is above the 4 kHz Nyquist frequency of 8 kHz audio: sample dropping folds it to
    2 kHz; a proper filter removes it. A 1 kHz tone 14 dB weaker is the reference."""
    rate = 48000
    x = tone(1000, 2.0, rate, dbov=-20) + tone(6000, 2.0, rate, dbov=-6)
    naive = x[::6]  # what sample dropping would play
    assert _alias_ratio_db(naive[len(naive) // 8 : -len(naive) // 8]) > 10  # the measure sees it
    out = convert_file(write(tmp_path / "t.wav", x, rate))
    y = _steady(out.pcm)
    assert _alias_ratio_db(y) < -60
    assert abs(peak_hz(y, 8000) - 1000) <= 4


@pytest.mark.parametrize("dbov", [-45.0, -30.0, -12.0, -4.0])
def test_level_is_normalised_to_target(tmp_path: Path, dbov: float) -> None:
    """Speech-like bursts (tone syllables and pauses) at any input level come out at the
    target active level; pauses do not count (P.56 idea), peaks stay under the ceiling."""
    rate = 16000
    bursts = np.concatenate(
        [np.concatenate([tone(f, 0.25, rate, dbov), np.zeros(int(0.15 * rate))])
         for f in (300, 500, 800, 1200, 700, 400)]
    )
    out = convert_file(write(tmp_path / "b.wav", bursts, rate))
    assert abs(out.level_dbov - TARGET_DBOV) <= LEVEL_TOL_DB
    measured = active_level_dbov(_float(out.pcm))
    assert measured is not None and abs(measured - TARGET_DBOV) <= LEVEL_TOL_DB
    assert 20 * np.log10(np.abs(_float(out.pcm)).max()) <= PEAK_DBOV + 0.05


def test_peaks_are_limited_without_clipping_the_rest(tmp_path: Path) -> None:
    """A quiet tone with loud clicks: the gain that normalises the whole would push the
    clicks past full scale; the limiter holds them at the ceiling and leaves the tone away
    from the clicks at exactly the gain applied (it acts only around a peak)."""
    rate = 8000
    x = tone(440, 2.0, rate, dbov=-40)
    clicks = range(2000, len(x), 4000)
    for i in clicks:
        x[i] = 0.9
    out = convert_file(write(tmp_path / "c.wav", x, rate))
    y = _float(out.pcm)
    assert 20 * np.log10(np.abs(y).max()) <= PEAK_DBOV + 0.05
    assert out.gain_db > 10  # so without a limiter the clicks would be at +10 dBov and over
    quiet = y[2500:3500]  # 62-187 ms from the nearest click
    rms_db = 10 * np.log10(np.mean(quiet * quiet))
    assert abs(rms_db - (-40 + out.gain_db)) <= 0.2


def _tone_for(channels: int, rate: int) -> np.ndarray:
    left = tone(1000, 0.6, rate, dbov=-12)
    if channels == 1:
        return left
    right = tone(1000, 0.6, rate, dbov=-12)
    return np.stack([left, right], axis=1)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", RATES)
def test_every_format_converts(tmp_path: Path, rate: int, channels: int, encoding: str) -> None:
    src = write(tmp_path / "in.wav", _tone_for(channels, rate), rate, encoding)
    out = convert_file(src)
    assert out.source_rate == rate and out.source_channels == channels
    assert out.pcm.dtype == np.int16
    assert abs(out.seconds - 0.6) < 0.01
    x = _steady(out.pcm)
    assert abs(peak_hz(x, 8000) - 1000) <= 10
    assert abs(out.level_dbov - TARGET_DBOV) <= LEVEL_TOL_DB


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left, right = tone(500, 1.0, 8000), tone(1500, 1.0, 8000)
    out = convert_file(write(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000))
    x = _steady(out.pcm)
    both = band_db(x, 8000, 450, 550), band_db(x, 8000, 1450, 1550)
    assert abs(both[0] - both[1]) < 1.0  # both channels are heard, equally


SOX = shutil.which("sox")


@pytest.mark.skipif(SOX is None, reason="sox (Debian) is installed by scripts/bootstrap.sh")
@pytest.mark.parametrize(
    "args",
    [
        ["-r", "44100", "-c", "2", "-b", "16", "-e", "signed-integer"],
        ["-r", "48000", "-c", "2", "-b", "24", "-e", "signed-integer"],  # sox: EXTENSIBLE
        ["-r", "22050", "-c", "1", "-b", "32", "-e", "floating-point"],
        ["-r", "11025", "-c", "1", "-b", "8", "-e", "unsigned-integer"],
        ["-r", "8000", "-c", "1", "-b", "8", "-e", "mu-law"],
        ["-r", "16000", "-c", "6", "-b", "16", "-e", "signed-integer"],  # 5.1: EXTENSIBLE
    ],
    ids=["44k-stereo-16", "48k-stereo-24", "22k-float", "11k-u8", "8k-ulaw", "16k-6ch"],
)
def test_files_written_by_sox(tmp_path: Path, args: list[str]) -> None:
    """Files from another writer than ours: sox's own headers and sub-formats."""
    src = tmp_path / "sox.wav"
    subprocess.run(
        [SOX or "sox", "-n", *args, str(src), "synth", "1", "sine", "1000", "vol", "0.3"],
        check=True, capture_output=True,
    )
    out = convert_file(src)
    assert abs(peak_hz(_steady(out.pcm), 8000) - 1000) <= 10
    assert abs(out.level_dbov - TARGET_DBOV) <= LEVEL_TOL_DB


# --------------------------------------------------------------------------- bad input


def _raises(path: Path, *words: str) -> None:
    with pytest.raises(PromptError) as info:
        convert_file(path, max_seconds=60)
    msg = str(info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg


def test_not_audio(tmp_path: Path) -> None:
    p = tmp_path / "notes.wav"
    p.write_text("this is a text file, not audio\n")
    _raises(p, "not a WAV")


def test_zero_length_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    _raises(p, "empty")


def test_header_only(tmp_path: Path) -> None:
    p = tmp_path / "head.wav"
    p.write_bytes(wav_bytes(tone(1000, 0.1, 8000), 8000)[:36])
    _raises(p, "truncated")


def test_truncated_data(tmp_path: Path) -> None:
    p = tmp_path / "cut.wav"
    data = wav_bytes(tone(1000, 1.0, 8000), 8000)
    p.write_bytes(data[: len(data) // 2])
    _raises(p, "truncated")


def test_empty_data_chunk(tmp_path: Path) -> None:
    p = tmp_path / "nodata.wav"
    p.write_bytes(wav_bytes(np.zeros(0), 8000))
    _raises(p, "no audio")


def test_absurdly_long(tmp_path: Path) -> None:
    """A header claiming 2 hours is refused before anything is read or allocated."""
    p = tmp_path / "long.wav"
    p.write_bytes(wav_bytes(tone(1000, 0.1, 8000), 8000, data_size=2 * 3600 * 8000 * 2))
    _raises(p, "longer than")


def test_too_many_samples(tmp_path: Path) -> None:
    """8 channels of 48 kHz for 200 s: within the time limit, over the memory bound."""
    p = tmp_path / "wide.wav"
    x = np.zeros((480, 8))
    p.write_bytes(wav_bytes(x, 48000, data_size=200 * 48000 * 8 * 2))
    with pytest.raises(PromptError, match=r"samples .* is over the .* limit"):
        convert_file(p, max_seconds=900)


def test_unsupported_encoding(tmp_path: Path) -> None:
    """IMA ADPCM (format tag 0x11) is a real WAV encoding we do not decode: say so."""
    p = tmp_path / "adpcm.wav"
    raw = bytearray(wav_bytes(tone(1000, 0.1, 8000), 8000))
    i = raw.index(b"fmt ") + 8
    raw[i : i + 2] = struct.pack("<H", 0x11)
    p.write_bytes(bytes(raw))
    _raises(p, "unsupported encoding")


def test_nan_floats(tmp_path: Path) -> None:
    x = tone(1000, 0.1, 8000)
    x[10] = np.nan
    p = tmp_path / "nan.wav"
    p.write_bytes(wav_bytes(x, 8000, "float32"))
    _raises(p, "NaN")


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nowhere.wav", "cannot read")


def test_silence_is_kept_silent(tmp_path: Path) -> None:
    """Nothing to normalise: no gain (noise is not blown up to the target level)."""
    out = convert_file(write(tmp_path / "z.wav", np.zeros(8000), 8000))
    assert out.gain_db == 0.0 and not np.any(out.pcm)


# --------------------------------------------------------------------------- cache


def test_each_source_is_converted_once(tmp_path: Path) -> None:
    cache = ConvertCache(tmp_path / "cache")
    a = write(tmp_path / "a.wav", tone(1000, 1.0, 44100), 44100)
    first = cache.cached(a)
    again = cache.cached(a)
    copy = tmp_path / "copy-of-a.wav"
    shutil.copy(a, copy)
    same_bytes = cache.cached(copy)
    assert cache.conversions == 1
    assert first == again and same_bytes.path == first.path
    b = write(tmp_path / "b.wav", tone(500, 1.0, 44100), 44100)
    other = cache.cached(b)
    assert cache.conversions == 2 and other.path != first.path
    # a fresh cache object over the same directory (next process) converts nothing
    later = ConvertCache(tmp_path / "cache")
    assert later.cached(a) == first and later.conversions == 0
    with wave.open(str(first.path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
