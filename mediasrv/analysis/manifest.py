"""Model directory and manifest: where built models live and how they are verified.

The manifest (``manifest.json`` in the models directory) lists every model file with its
sha256, size, source registry package and version, licence and what it was validated on.
Run time refuses a file whose checksum differs from the manifest (never silently load a
model that is not the one that was built and validated).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"
ENV_MODELS_DIR = "MEDIASRV_MODELS_DIR"


class ModelError(RuntimeError):
    """A model is missing or does not match its manifest; the message says what to do."""


def default_models_dir() -> Path:
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mediasrv" / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelEntry:
    name: str
    files: dict[str, str]  # relative path -> sha256
    source_package: str
    source_version: str
    source_sha256: str
    license: str
    validated_on: str
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    models: dict[str, ModelEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls({k: ModelEntry(**v) for k, v in raw.get("models", {}).items()})
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{path}: unreadable manifest ({exc}); rerun `mediasrv models build --force`") from exc

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / (MANIFEST_NAME + ".tmp")
        body = {"models": {k: asdict(v) for k, v in sorted(self.models.items())}}
        tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(directory / MANIFEST_NAME)

    def verified_path(self, directory: Path, model: str, file: str, check: bool = True) -> Path:
        """Path of one model file, after checking it against the manifest."""
        entry = self.models.get(model)
        if entry is None or file not in entry.files:
            raise ModelError(
                f"model {model!r} ({file}) is not built in {directory}; run `mediasrv models build`"
            )
        path = directory / file
        if not path.exists():
            raise ModelError(f"{path} is missing; run `mediasrv models build --force`")
        if check and sha256_file(path) != entry.files[file]:
            raise ModelError(f"{path} does not match its manifest sha256; rebuild with --force")
        return path
