"""``mediasrv prompts build|say|import|list``: the prompt store from the command line.

Exit codes (as ``mediasrv``): 0 success, 1 runtime failure (no synthesiser), 2 bad input
(a file that is not audio, an unknown voice, a bad name, a config error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mediasrv.media.audio_convert import convert_file, write_wav
from mediasrv.media.prompt import PromptError
from mediasrv.outputs import tts
from mediasrv.outputs.prompt_set import Built, build_default_set
from mediasrv.outputs.prompts import PromptStore, default_prompts_dir


def _settings(args: argparse.Namespace) -> tuple[Path, float, str] | None:
    from mediasrv.config import ConfigError, load_config

    try:
        cfg = load_config(getattr(args, "config", None)).prompts
    except ConfigError as exc:
        print(f"mediasrv: config error: {exc}", file=sys.stderr)
        return None
    directory = getattr(args, "dir", None) or cfg.dir
    path = Path(directory).expanduser() if directory else default_prompts_dir()
    return path, cfg.max_seconds, getattr(args, "voice", None) or cfg.voice


def _print_built(b: Built) -> None:
    how = "kept" if b.reused else f"made in {b.work_s:.1f} s CPU"
    print(f"  {b.name:<28} {b.seconds:7.2f} s  {how:<22} {b.origin}", flush=True)


def _build(args: argparse.Namespace, directory: Path, max_seconds: float, voice: str) -> int:
    store = PromptStore(directory, max_seconds)
    print(f"prompt store: {directory}", flush=True)
    report = build_default_set(
        store, voice=voice, speech=not args.no_speech, force=args.force, progress=_print_built
    )
    hold = store.entry("hold_music")
    made = sum(1 for b in report if not b.reused)
    print(f"{len(store)} prompts ({made} made now); hold music: {hold.origin} ({hold.text})")
    return 0


def _say(args: argparse.Namespace, directory: Path, max_seconds: float, voice: str) -> int:
    out = Path(args.output)
    if args.business and not args.name:
        raise PromptError("--business needs --name (the name to file the prompt under)")
    with tts.spoken_wav(args.text, voice) as wav:
        converted = convert_file(wav, max_seconds)
    write_wav(out, converted.pcm)
    print(f"{out}: {converted.seconds:.2f} s, 8000 Hz mono 16-bit, {converted.level_dbov:.1f} dBov")
    if args.name:
        store = PromptStore(directory, max_seconds)
        entry = store.import_wav(
            out, args.name, business=args.business, origin=f"{tts.engine_version()} {voice}",
            text=args.text,
        )
        print(f"{entry.name}: filed in {directory}")
    return 0


def _import(args: argparse.Namespace, directory: Path, max_seconds: float) -> int:
    store = PromptStore(directory, max_seconds)
    entry = store.import_wav(Path(args.file), args.name, business=args.business)
    print(f"{entry.name}: {entry.seconds:.2f} s -> {directory / entry.file}")
    return 0


def _list(args: argparse.Namespace, directory: Path, max_seconds: float) -> int:
    store = PromptStore(directory, max_seconds)
    entries = [store.entry(n) for n in store.names()]
    if args.json:
        print(json.dumps({e.name: {"file": str(directory / e.file), "seconds": e.seconds,
                                    "origin": e.origin, "text": e.text} for e in entries},
                         ensure_ascii=False, indent=1))
        return 0
    if not entries:
        print(f"no prompts in {directory} (run `mediasrv prompts build`)")
    for e in entries:
        print(f"{e.name:<28} {e.seconds:7.2f} s  {e.origin:<36} {e.text}")
    missing = store.missing_files()
    if missing:
        print(f"mediasrv: files missing for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def prompts_main(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 2
    directory, max_seconds, voice = settings
    try:
        tts.check_voice(voice)
        if args.prompts_command == "build":
            return _build(args, directory, max_seconds, voice)
        if args.prompts_command == "say":
            return _say(args, directory, max_seconds, voice)
        if args.prompts_command == "import":
            return _import(args, directory, max_seconds)
        return _list(args, directory, max_seconds)
    except tts.TtsUnavailable as exc:
        print(f"mediasrv: {exc}", file=sys.stderr)
        return 1
    except PromptError as exc:
        print(f"mediasrv: {exc}", file=sys.stderr)
        return 2
