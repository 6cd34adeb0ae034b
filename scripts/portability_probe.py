"""Run a Whisper model on fixed inputs and compare runs across CPUs (issue 7, part 2).

    python scripts/portability_probe.py run OUT.npz [--model whisper-base] [--steps 24]
                                               [--reference NATIVE.npz]
    python scripts/portability_probe.py compare NATIVE.npz EMULATED.npz

``run`` builds a fixed 30 s window (three Japanese clips from tests/analysis/data separated
by 1 s pauses, the input of the pause-split test), computes its log-mel, runs the encoder
once and then ``--steps`` greedy decoder steps with timestamps (the suppression and
timestamp rules of the real decoder), one onnxruntime thread. Everything it computed is
saved. With ``--reference`` (a native run's file) the encoder is fed the reference's
log-mel, and the decoder is run a second time on the reference's encoder outputs, forced
along the reference's tokens: so the encoder and the decoder are compared separately, on
identical inputs. ``scripts/check_portability.sh`` runs ``run`` natively and under
``qemu-x86_64 -cpu Haswell`` (an AVX2 CPU without AVX-512/VNNI), then ``compare``.

``compare`` prints the largest differences and whether the tokens agree; exit 0 when the
decoded tokens are the same, 1 when they differ.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mediasrv.analysis.whisper import WhisperOnnx

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "analysis" / "data"
CLIPS = ("ja_f1", "ja_m1", "jsut_basic5000_0001")


def fixed_window() -> np.ndarray:
    from mediasrv.analysis.audio import read_wav, resample

    clips = []
    for name in CLIPS:
        a = read_wav(DATA / f"{name}.wav")
        clips.append(resample(a.samples[0], a.rate, 16000))
    gap = np.zeros(16000, np.float32)
    return np.concatenate([clips[0], gap, clips[1], gap, clips[2]]).astype(np.float32)


def cpu_flags() -> str:
    # qemu-user passes the host's /proc/cpuinfo through: ask the CPU itself (cpuid) via numpy.
    from numpy._core._multiarray_umath import __cpu_features__ as feat

    have = [k for k in ("AVX2", "AVX512F", "AVX512VNNI") if feat.get(k)]
    return ",".join(have) or "none"


def _session_model(model_dir: Path) -> WhisperOnnx:
    from mediasrv.analysis.whisper import WhisperOnnx

    return WhisperOnnx(model_dir, threads=1)


def _greedy(m: WhisperOnnx, cross: dict[str, np.ndarray], prompt: list[int], steps: int,
            forced: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy timestamped decode: (tokens, raw logits [steps, V], top-2 margins).

    The margin is the gap between the best and second-best allowed token's log-probability
    at each step: where it is small, a tiny numeric difference can change the token.

    With ``forced``, the tokens fed back are the forced ones (teacher forcing), so the
    log-probabilities stay comparable with the run that produced them.
    """
    z = np.zeros((m._layers, 1, m._heads, 0, m._d_head), np.float32)
    logits, sk, sv = m._step(np.array([prompt], np.int64), z, z, cross)
    seq: list[int] = []
    toks, rows, margins = [], [], []
    eot = m.tokenizer.special.eot
    for i in range(steps):
        lp = m.masked_logprobs(logits[:, -1], [seq], True)[0]
        tok = int(np.argmax(lp))
        top2 = np.sort(lp[np.isfinite(lp)])[-2:]
        margins.append(float(top2[-1] - top2[0]) if top2.size == 2 else np.inf)
        toks.append(tok)
        rows.append(logits[0, -1].astype(np.float32))
        nxt = int(forced[i]) if forced is not None else tok
        if nxt == eot or (forced is not None and i + 1 >= forced.size):
            break
        seq.append(nxt)
        logits, sk, sv = m._step(np.array([[nxt]], np.int64), sk, sv, cross)
    return np.array(toks, np.int64), np.stack(rows), np.array(margins)


def cmd_run(args: argparse.Namespace) -> int:
    from mediasrv.analysis.manifest import default_models_dir
    from mediasrv.analysis.mel import log_mel_window

    models = args.models_dir or default_models_dir()
    m = _session_model(models / args.model)
    audio = fixed_window()
    mel = log_mel_window(audio, m.n_mels)
    out: dict[str, np.ndarray] = {"mel": mel}
    ref = dict(np.load(args.reference)) if args.reference else None
    enc_in = ref["mel"] if ref is not None else mel
    t0 = time.monotonic()
    if ref is not None and args.decoder_only:  # quick check: the reference's encoder outputs
        cross = {k.removeprefix("enc_"): v for k, v in ref.items() if k.startswith("enc_")}
    else:
        enc = m.encoder.run(None, {"mel": enc_in})
        names = [o.name for o in m.encoder.get_outputs()]
        cross = dict(zip(names, enc, strict=True))
    t_enc = time.monotonic() - t0
    out.update({f"enc_{k}": v for k, v in cross.items()})
    prompt = m.tokenizer.prompt("ja")[:-1]  # timestamps on: drop <|notimestamps|>
    t0 = time.monotonic()
    out["tokens"], out["logits"], out["margins"] = _greedy(m, cross, prompt, args.steps, None)
    if ref is not None and not args.decoder_only:
        ref_cross = {k.removeprefix("enc_"): v for k, v in ref.items() if k.startswith("enc_")}
        out["forced_tokens"], out["forced_logits"], _ = _greedy(m, ref_cross, prompt,
                                                                args.steps, ref["tokens"])
    t_dec = time.monotonic() - t0
    out["cpu"] = np.array(cpu_flags())
    np.savez(args.out, **out)  # type: ignore[arg-type]  # (numpy stubs: allow_pickle)
    text = m.tokenizer.decode([int(t) for t in out["tokens"]
                               if t < m.tokenizer.special.eot])
    print(f"probe: cpu features {out['cpu']}; encoder {t_enc:.1f} s, decoder "
          f"{len(out['tokens'])} steps {t_dec:.1f} s; text {text!r}")
    return 0


def _maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = dict(np.load(args.native)), dict(np.load(args.other))
    print(f"native cpu: {a['cpu']}  other cpu: {b['cpu']}")
    print(f"log-mel max |diff|: {_maxdiff(a['mel'], b['mel']):.3g}")
    enc = [k for k in a if k.startswith("enc_")]
    diffs = {k: _maxdiff(a[k], b[k]) for k in enc}
    worst = max(diffs, key=lambda k: diffs[k])
    scale = max(float(np.max(np.abs(a[k]))) for k in enc)
    mean_a = np.mean([np.mean(np.abs(a[k])) for k in enc])
    mean_b = np.mean([np.mean(np.abs(b[k])) for k in enc])
    identical = all(np.array_equal(a[k], b[k]) for k in enc)
    print(f"encoder outputs: max |diff| {diffs[worst]:.4g} ({worst}; max |value| {scale:.3g}); "
          f"mean |output| {mean_a:.5f} vs {mean_b:.5f}; bytes identical: {identical}")
    if "forced_logits" not in b and identical:
        print("(decoder-only run: encoder outputs taken from the native run)")
    if "forced_logits" in b:
        n = min(len(a["logits"]), len(b["forced_logits"]))
        d = _maxdiff(a["logits"][:n], b["forced_logits"][:n])
        same_top = bool(np.array_equal(a["tokens"][:n], b["forced_tokens"][:n]))
        print(f"decoder alone (same encoder outputs, same tokens fed, {n} steps): logits max "
              f"|diff| {d:.4g}; same token chosen every step: {same_top}")
    print(f"smallest top-2 log-prob margin of the native greedy decode: "
          f"{float(np.min(a['margins'])):.4g} (a difference above it can change a token)")
    n = min(len(a["logits"]), len(b["logits"]))
    agree = int(np.argmin(np.append(a["tokens"][:n] == b["tokens"][:n], False)))
    same = a["tokens"].shape == b["tokens"].shape and bool(np.all(a["tokens"] == b["tokens"]))
    d_all = _maxdiff(a["logits"][:agree], b["logits"][:agree]) if agree else float("nan")
    print(f"end to end (own encoder, greedy): tokens agree: {same} ({agree} of "
          f"{len(a['tokens'])} leading tokens equal); logits max |diff| over those {d_all:.4g}")
    print(f"RESULT portability tokens_agree={'yes' if same else 'no'} "
          f"encoder_max_diff={diffs[worst]:.4g} steps={len(a['tokens'])}")
    return 0 if same else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--model", default="whisper-base")
    r.add_argument("--models-dir", type=Path, default=None)
    r.add_argument("--steps", type=int, default=24)
    r.add_argument("--reference", type=Path, default=None)
    r.add_argument("--decoder-only", action="store_true",
                   help="with --reference: skip the encoder, decode from the reference's "
                        "encoder outputs (a quick check of the decoder alone)")
    c = sub.add_parser("compare")
    c.add_argument("native", type=Path)
    c.add_argument("other", type=Path)
    args = ap.parse_args()
    return cmd_run(args) if args.cmd == "run" else cmd_compare(args)


if __name__ == "__main__":
    sys.exit(main())
