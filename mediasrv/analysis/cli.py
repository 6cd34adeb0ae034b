"""`mediasrv analyze FILE.wav [--json]`: the same pipeline as the workers, on one file."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .analyzer import AnalysisConfig, AnalysisResult, analyze_file
from .audio import AudioError
from .labels import DEFAULT_RULES, RuleError
from .manifest import Manifest, ModelError, default_models_dir
from .modelbuild import main as build_main


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


def _load_rules(path: object) -> dict[str, dict[str, Any]]:
    if not path:
        return {"default": DEFAULT_RULES}
    raw = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError('expected {"<business>": {"labels": [...]}}')
    return raw


def analyze_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mediasrv analyze",
                                 description="Transcribe, classify gender and label one call recording.")
    ap.add_argument("wav", type=Path, help="WAV file (stereo: channel 0 caller, 1 operator)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--language", default="ja", help="speech language (default ja; 'auto' detects)")
    ap.add_argument("--model", default="whisper-base", help="whisper-base or whisper-tiny.en")
    ap.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    ap.add_argument("--rules", type=Path, default=None,
                    help='outcome label rules, JSON: {"<business>": {"labels": [...]}, ...}')
    ap.add_argument("--business", default="default", help="whose label rules to apply")
    ap.add_argument("--models-dir", type=Path, default=None,
                    help="models directory (default $MEDIASRV_MODELS_DIR or ~/.cache/mediasrv/models)")
    return ap


def analyze_main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Entry point for `mediasrv analyze`; prints the result, returns the exit code.

    Takes either argv (its own parser, `analyze_parser()`) or a Namespace from the main CLI
    with at least ``file`` (or ``wav``) and ``json``; missing options take their defaults.
    """
    defaults = analyze_parser().parse_args(["x.wav"])
    if not isinstance(args, argparse.Namespace):
        args = analyze_parser().parse_args(args)
    opt = {**vars(defaults), **{k: v for k, v in vars(args).items() if v is not None}}
    wav = Path(opt.get("file") or opt["wav"])
    language = str(opt["language"])
    try:
        rules = _load_rules(opt["rules"])
    except (OSError, ValueError) as exc:
        print(f"error: rules file {opt['rules']}: {exc}", file=sys.stderr)
        return 2
    cfg = AnalysisConfig(label_rules=rules, models_dir=Path(opt["models_dir"]) if opt["models_dir"] else default_models_dir(),
                         whisper_model=str(opt["model"]),
                         language=None if language == "auto" else language,
                         beam_size=max(1, int(opt["beam"])), threads=max(1, int(opt["threads"])))
    try:
        result = analyze_file(wav, cfg, str(opt["business"]))
    except (AudioError, ModelError, RuleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, AudioError | RuleError) else 1
    if opt["json"]:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        _print_text(result)
    return 0


def models_main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Entry point for `mediasrv models build|list`.

    argv form: ``["build", "--force", ...]`` (options of modelbuild.main) or ``["list"]``.
    Namespace form: ``models_command`` plus optional ``force``, ``only``, ``dir``.
    """
    if isinstance(args, argparse.Namespace):
        command = str(getattr(args, "models_command", "build"))
        rest: list[str] = []
        if getattr(args, "force", False):
            rest.append("--force")
        if getattr(args, "only", None):
            rest += ["--only", str(args.only)]
        if getattr(args, "dir", None):
            rest += ["--dir", str(args.dir)]
    else:
        argv = list(args if args is not None else sys.argv[1:])
        command, rest = (argv[0], argv[1:]) if argv else ("build", [])
    if command == "build":
        return build_main(rest)
    if command == "list":
        return list_models(Path(rest[0]) if rest else default_models_dir())
    print(f"error: unknown models command {command!r} (build, list)", file=sys.stderr)
    return 2


def list_models(directory: Path) -> int:
    try:
        manifest = Manifest.load(directory)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not manifest.models:
        print(f"no models in {directory}; run `mediasrv models build`")
        return 1
    for name, e in sorted(manifest.models.items()):
        print(f"{name}: {e.source_package} {e.source_version} ({e.license})")
        for f, sha in e.files.items():
            print(f"    {f}  sha256 {sha}")
    return 0


if __name__ == "__main__":
    sys.exit(analyze_main())
