"""Fast unit tests of the analysis building blocks (no Whisper model needed)."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from mediasrv.analysis.audio import Audio, AudioError, read_wav, resample
from mediasrv.analysis.labels import (
    DEFAULT_RULES,
    UNDETERMINED,
    LabelSet,
    RuleError,
    classify,
    normalize,
)
from mediasrv.analysis.modelbuild import GENDER_SHA256
from mediasrv.analysis.pitch import robust_mean_f0, yin
from mediasrv.analysis.scoring import cer, wer
from mediasrv.analysis.vad import Region, VadParams, group_segments, speech_regions

REPO = Path(__file__).resolve().parents[2]


def _pcm16(path: Path, x: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


@pytest.mark.parametrize("encoding", ["mu-law", "a-law"])
def test_g711_wav_decodes_like_sox(tmp_path: Path, encoding: str) -> None:
    t = np.arange(8000) / 8000
    x = (0.5 * np.sin(2 * np.pi * 440 * t) * np.linspace(0.01, 1, t.size)).astype(np.float32)
    src = _pcm16(tmp_path / "src.wav", x, 8000)
    g711 = tmp_path / "g711.wav"
    back = tmp_path / "back.wav"
    subprocess.run(["sox", str(src), "-e", encoding, str(g711)], check=True)
    subprocess.run(["sox", str(g711), "-e", "signed", "-b", "16", str(back)], check=True)
    ours, sox = read_wav(g711), read_wav(back)
    assert ours.rate == 8000 and ours.channels == 1
    # sox's own expansion of the same G.711 bytes: identical up to 16-bit rounding.
    assert np.max(np.abs(ours.samples - sox.samples)) < 2 / 32768
    snr = 10 * np.log10(np.sum(x**2) / np.sum((ours.samples[0] - x) ** 2))
    assert snr > 30


def test_stereo_channels_are_split(tmp_path: Path) -> None:
    left = np.full(800, 0.25, np.float32)
    right = np.full(800, -0.5, np.float32)
    pcm = (np.stack([left, right], 1) * 32767).astype("<i2")
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())
    a = read_wav(tmp_path / "s.wav")
    assert a.channels == 2
    assert np.allclose(a.samples[0], 0.25, atol=1e-4)
    assert np.allclose(a.samples[1], -0.5, atol=1e-4)


def test_bad_audio_gives_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="not a RIFF"):
        read_wav(_write(tmp_path / "junk.wav", b"hello, not audio"))
    with pytest.raises(AudioError, match="No such file"):
        read_wav(tmp_path / "missing.wav")
    riff = b"RIFF" + (100).to_bytes(4, "little") + b"WAVE"
    with pytest.raises(AudioError, match="without fmt"):
        read_wav(_write(tmp_path / "nofmt.wav", riff))


def test_wav_with_unfinished_sizes_still_reads(tmp_path: Path) -> None:
    """A recorder killed mid-call leaves RIFF/data sizes of 0: take the samples present."""
    x = (0.1 * np.ones(1600)).astype(np.float32)
    path = _pcm16(tmp_path / "ok.wav", x, 8000)
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data")
    raw[4:8] = (0).to_bytes(4, "little")
    raw[data_at + 4 : data_at + 8] = (0).to_bytes(4, "little")
    a = read_wav(_write(tmp_path / "cut.wav", bytes(raw)))
    assert a.samples.shape == (1, 1600)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_resample_keeps_a_tone() -> None:
    t = np.arange(8000) / 8000
    y = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 8000, 16000)
    assert y.size == 16000
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) - 1000) <= 1  # 1 Hz bins


def _phone_band(x: np.ndarray, rate: int) -> np.ndarray:
    sos = butter(6, [300, 3400], btype="bandpass", fs=rate, output="sos")
    return np.asarray(sosfilt(sos, x), dtype=np.float32)


@pytest.mark.parametrize("f0", [95.0, 120.0, 210.0, 260.0])
def test_yin_finds_f0_with_the_fundamental_filtered_out(f0: float) -> None:
    rate = 8000
    t = np.arange(rate * 2) / rate
    vibrato = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(vibrato) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    x = _phone_band(x / np.max(np.abs(x)) * 0.5, rate)  # below 300 Hz is gone
    est, frames = robust_mean_f0(yin(x, rate))
    assert frames > 100
    assert est == pytest.approx(f0, rel=0.03)


def test_yin_calls_noise_unvoiced() -> None:
    x = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)
    f0 = yin(x, 8000)
    assert np.mean(f0 > 0) < 0.05


def test_vad_hysteresis_and_segmenting() -> None:
    p = VadParams(min_speech_s=0.2, min_silence_s=0.2, pad_s=0.0, merge_gap_s=0.5)
    step = 0.032
    probs = np.zeros(400)
    probs[10:60] = 0.9  # 1.6 s of speech
    probs[60:65] = 0.4  # between the thresholds: still speech (hysteresis)
    probs[65:80] = 0.9
    probs[90:92] = 0.9  # 64 ms blip: too short
    probs[120:200] = 0.9
    regions = speech_regions(probs, step, p, 400 * step)
    assert len(regions) == 2
    assert regions[0].start == pytest.approx(10 * step)
    assert regions[0].end == pytest.approx(80 * step)
    long = group_segments([Region(0.0, 70.0)], p)
    assert len(long) == 3 and all(r.duration <= 30.0 for r in long)
    merged = group_segments([Region(0.0, 2.0), Region(2.3, 4.0), Region(5.0, 6.0)], p)
    assert [(r.start, r.end) for r in merged] == [(0.0, 4.0), (5.0, 6.0)]


def test_japanese_normalisation() -> None:
    assert normalize("ﾖﾔｸ") == normalize("ヨヤク") == normalize("よやく")
    assert normalize("３時") == normalize("三時") == "3時"
    assert normalize("ＡＢＣ　ｄｅｆ、！") == "abcdef"
    assert normalize("二十一名") == "21名"


def _timeline(*rows: tuple[str, str]) -> list[dict[str, object]]:
    return [{"channel": ch, "start": float(i), "end": i + 1.0, "text": t}
            for i, (ch, t) in enumerate(rows)]


def test_outcome_rules_speaker_negation_and_evidence() -> None:
    labels = LabelSet.from_config("dental", DEFAULT_RULES)
    booked = classify(labels, _timeline(("caller", "もしもし"),
                                        ("operator", "明日の３時でご予約を承りました。")))
    assert booked.label == "booking_made"
    assert booked.rule == "operator_confirms_booking"
    assert booked.evidence["text"] == "明日の３時でご予約を承りました。"
    assert booked.evidence["channel"] == "operator"
    # The same words from the wrong speaker do not fire the operator rule.
    assert classify(labels, _timeline(("caller", "ご予約を承りました"))).label == UNDETERMINED
    # Negated right after the phrase.
    neg = classify(labels, _timeline(("caller", "予約したいわけではないです")))
    assert neg.label == UNDETERMINED
    assert classify(labels, _timeline(("caller", "予約したいです"))).label == "booking_made"
    # Katakana/half-width variants of the phrase still match.
    assert classify(labels, _timeline(("caller", "ｷｬﾝｾﾙでお願いします"))).label == "cancelled"
    assert classify(labels, _timeline(("caller", "天気の話"))).to_dict()["label"] == UNDETERMINED


def test_bad_rule_config_names_the_problem() -> None:
    with pytest.raises(RuleError, match="labels\\[0\\] needs a 'label'"):
        LabelSet.from_config("shop", {"labels": [{"rules": []}]})
    with pytest.raises(RuleError, match="speaker must be"):
        LabelSet.from_config("shop", {"labels": [{"label": "x", "rules": [
            {"any": ["a"], "speaker": "robot"}]}]})


def test_error_rates() -> None:
    assert cer("午後三時に予約", "午後3時に予約。") == 0.0
    assert cer("あいうえお", "あいうえか") == pytest.approx(0.2)
    assert wer("Hello world.", "hello, world") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(0.5)


@pytest.mark.skipif(importlib.util.find_spec("skl2onnx") is None
                    or importlib.util.find_spec("sgs") is None,
                    reason="build-time packages (scikit-learn, skl2onnx, speech-gender-statistics)")
def test_gender_training_reproduces_the_shipped_model(tmp_path: Path) -> None:
    out = tmp_path / "gender.onnx"
    subprocess.run([_python(), str(REPO / "models" / "train_gender.py"), "--out", str(out)],
                   check=True, capture_output=True)
    shipped = REPO / "mediasrv" / "analysis" / "data" / "gender.onnx"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == GENDER_SHA256
    assert shipped.read_bytes() == out.read_bytes()


def _python() -> str:
    import sys

    return sys.executable


def test_audio_duration() -> None:
    assert Audio(np.zeros((2, 16000), np.float32), 8000).duration == 2.0


def test_graph_version_is_the_same_in_builder_and_run_time() -> None:
    pytest.importorskip("onnx")
    from mediasrv.analysis.modelbuild import WHISPER_GRAPH_VERSION
    from mediasrv.analysis.whisper_graph import GRAPH_VERSION

    assert GRAPH_VERSION == WHISPER_GRAPH_VERSION


def test_a_stuck_single_letter_decode_is_a_repetition() -> None:
    """Hold music decoded as one kana over and over (seen on an AVX-512 VNNI CPU) is dropped;
    short real repeats and long numbers are kept."""
    from mediasrv.analysis.stt import SttParams, rejected
    from mediasrv.analysis.whisper import DecodeResult, compression_ratio

    def decoded(text: str) -> DecodeResult:
        return DecodeResult(text, [], -0.9, 0.01, compression_ratio(text))

    assert rejected(decoded("んんんんんんん"), SttParams()) == "repetition"
    assert rejected(decoded("ええ、はいはいはい"), SttParams()) is None
    assert rejected(decoded("お振込みは1000000円です"), SttParams()) is None
