"""The audio helpers that judge end-to-end calls (generation, WAV I/O, alignment)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mediasrv.demo.audio import (
    AudioError,
    correlate_aligned,
    correlate_piecewise,
    espeak_phrase,
    level_db,
    read_wav,
    resample,
    speech_like,
    split_stereo,
    write_wav,
)


def _g711_like(signal: np.ndarray, seed: int) -> np.ndarray:
    """Roughly what a G.711 leg adds: noise about 35 dB under the signal."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(signal)) * np.std(signal.astype(float)) * 10 ** (-35 / 20)
    return np.clip(signal + noise, -32768, 32767).astype(np.int16)


def test_correlation_finds_the_delay_through_noise() -> None:
    ref = speech_like(3.0, seed=1)
    delay = 1234
    received = np.concatenate([np.zeros(delay, np.int16), _g711_like(ref, 5),
                               np.zeros(800, np.int16)])
    corr, lag = correlate_aligned(ref, received)
    assert corr > 0.99
    assert lag == pytest.approx(delay / 8000)


def test_correlation_of_different_signals_is_low() -> None:
    corr, _ = correlate_aligned(speech_like(3.0, seed=1), speech_like(3.0, seed=2, f0=220))
    assert corr < 0.3


def test_correlation_of_a_truncated_recording_uses_the_overlap() -> None:
    ref = speech_like(4.0, seed=3)
    received = np.concatenate([np.zeros(400, np.int16), ref[: 8000 * 2]])
    corr, lag = correlate_aligned(ref, received)
    assert corr > 0.99
    assert lag == pytest.approx(0.05)


def test_piecewise_correlation_survives_a_jitter_buffer_slip() -> None:
    ref = speech_like(4.0, seed=4)
    # 10 ms dropped after 1.3 s, as pjsua's jitter buffer did on a loaded machine.
    slipped = np.concatenate([np.zeros(200, np.int16), ref[:10400], ref[10480:]])
    whole, _ = correlate_aligned(ref, slipped)
    match = correlate_piecewise(ref, slipped)
    assert whole < 0.9
    assert match.score > 0.95
    assert match.slips == 1
    assert match.lags[0] == pytest.approx(0.025)
    assert match.lags[-1] == pytest.approx(0.015)
    assert correlate_piecewise(ref, speech_like(4.0, seed=5)).score < 0.4
    assert correlate_piecewise(ref, np.zeros(100, np.int16)).windows == 0


def test_correlation_of_silence_is_zero() -> None:
    assert correlate_aligned(speech_like(2.0, seed=1), np.zeros(16000, np.int16)) == (0.0, 0.0)
    assert correlate_aligned(np.zeros(0), np.zeros(10)) == (0.0, 0.0)


def test_speech_like_is_deterministic_and_not_clipped() -> None:
    a, b = speech_like(2.0, seed=7), speech_like(2.0, seed=7)
    assert np.array_equal(a, b)
    assert len(a) == 16000
    assert a.dtype == np.int16
    assert int(np.max(np.abs(a))) < 32767
    assert -35.0 < level_db(a) < -10.0
    with pytest.raises(AudioError):
        speech_like(0.0, seed=1)


def test_level_db_of_a_full_scale_sine() -> None:
    t = np.arange(8000) / 8000
    sine = (32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert level_db(sine) == pytest.approx(-3.01, abs=0.05)
    assert level_db(np.zeros(10)) == float("-inf")


def test_wav_round_trip_and_stereo_split(tmp_path: Path) -> None:
    left, right = speech_like(1.0, seed=1), speech_like(1.0, seed=2)
    path = write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1))
    wav = read_wav(path)
    assert (wav.channels, wav.rate, wav.seconds) == (2, 8000, 1.0)
    got_left, got_right = split_stereo(path)
    assert np.array_equal(got_left, left)
    assert np.array_equal(got_right, right)
    with pytest.raises(AudioError, match="want stereo"):
        split_stereo(write_wav(tmp_path / "mono.wav", left))


def test_bad_wav_files_give_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    with pytest.raises(AudioError, match="not a PCM WAV"):
        read_wav(junk)
    with pytest.raises(AudioError, match="int16"):
        write_wav(tmp_path / "f.wav", np.zeros(10, np.float32))


def test_resample_keeps_a_tone() -> None:
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 440 * t)
    out = resample(tone, 22050, 8000)
    assert len(out) == 8000
    spectrum = np.abs(np.fft.rfft(out))
    assert int(np.argmax(spectrum)) == 440  # 1 Hz bins over one second


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_phrase_is_8khz_speech() -> None:
    phrase = espeak_phrase("Thank you for calling")
    assert 0.5 < len(phrase) / 8000 < 5.0
    assert level_db(phrase) > -40.0
