"""`mediasrv analyze FILE.wav [--json]`: the same pipeline as the workers, on one file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .analyzer import AnalysisConfig, AnalysisResult, analyze_file
from .audio import AudioError
from .labels import RuleError
from .manifest import ModelError, default_models_dir


def _print_text(r: AnalysisResult) -> None:
    print(f"audio {r.audio_seconds:.1f} s, cpu {r.cpu_seconds:.1f} s, model {r.model}, "
          f"language {r.language}")
    for u in r.timeline:
        print(f"[{u.start:7.2f}-{u.end:7.2f}] {u.channel.value:8s} {u.text}")
    if not r.timeline:
        print("(no speech)")
    g = r.gender
    print(f"gender: {g.gender.value} (confidence {g.confidence:.2f}, mean F0 {g.mean_f0_hz:.0f} Hz,"
          f" {g.voiced_s:.1f} s voiced; {g.reason})")
    o = r.outcome
    ev = f' evidence: {o.evidence.get("channel")} "{o.evidence.get("text")}"' if o.evidence else ""
    print(f"outcome: {o.label}" + (f" (rule {o.rule})" if o.rule else "") + ev)


def analyze_main(argv: list[str] | None = None) -> int:
    """Entry point for `mediasrv analyze`; prints the result, returns the exit code."""
    ap = argparse.ArgumentParser(prog="mediasrv analyze",
                                 description="Transcribe, classify gender and label one call recording.")
    ap.add_argument("wav", type=Path, help="WAV file (stereo: channel 0 caller, 1 operator)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--language", default="ja", help="speech language (default ja; 'auto' detects)")
    ap.add_argument("--model", default="whisper-base", help="whisper-base or whisper-tiny.en")
    ap.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="models directory (default $MEDIASRV_MODELS_DIR or ~/.cache/mediasrv/models)")
    args = ap.parse_args(argv)
    cfg = AnalysisConfig(models_dir=args.models_dir or default_models_dir(),
                         whisper_model=args.model,
                         language=None if args.language == "auto" else args.language,
                         beam_size=max(1, args.beam), threads=max(1, args.threads))
    try:
        result = analyze_file(args.wav, cfg)
    except (AudioError, ModelError, RuleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, AudioError | RuleError) else 1
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print_text(result)
    return 0


if __name__ == "__main__":
    sys.exit(analyze_main())
