"""Pytest fixtures for real SIP peers: pjsua2 phones and SIPp.

Used by tests/peers/ through its conftest; other test folders can load it with
``pytest_plugins = ["peers_plugin"]`` in the root conftest (tests/peers on ``pythonpath``).
Every fixture reaps what it started, whatever the test did.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mediasrv.demo.audio import speech_like, write_wav
from mediasrv.demo.phones import PhoneProcess
from mediasrv.demo.sipp import SippOptions, SippRun

SIPP_DIR = Path(__file__).resolve().parents[1] / "data" / "sipp"

StartPhone = Callable[..., Awaitable[PhoneProcess]]
StartSipp = Callable[..., Awaitable[SippRun]]

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")


def sipp_scenario(name: str) -> Path:
    """Path of a scenario in tests/data/sipp (``"uas_lc"`` or ``"uas_lc.xml"``)."""
    path = SIPP_DIR / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


@pytest.fixture
def sipp_dir() -> Path:
    return SIPP_DIR


@pytest.fixture
def speech_wavs(tmp_path: Path) -> dict[str, Path]:
    """Two different 4 s speech-like WAVs (8 kHz mono): ``caller`` and ``operator``."""
    return {
        "caller": write_wav(tmp_path / "caller_says.wav", speech_like(4.0, seed=11, f0=120.0)),
        "operator": write_wav(tmp_path / "operator_says.wav",
                              speech_like(4.0, seed=22, f0=210.0)),
    }


@pytest.fixture
async def start_phone(tmp_path: Path) -> AsyncIterator[StartPhone]:
    """``await start_phone(name, **PhoneConfig options)``; all phones are stopped at teardown.

    Each phone logs SIP messages to ``tmp_path/<name>.log`` for post-mortems.
    """
    phones: list[PhoneProcess] = []

    async def start(name: str, **opts: Any) -> PhoneProcess:
        opts.setdefault("log_file", tmp_path / f"{name}.log")
        phone = await PhoneProcess.start(name, **opts)
        phones.append(phone)
        return phone

    try:
        yield start
    finally:
        # In parallel: each pjsua2 shutdown takes about a second.
        codes = await asyncio.gather(*(phone.stop() for phone in phones))
        # A clean quit exits 0; pjsua2 aborts (e.g. a Call outliving libDestroy) do not.
        bad = {p.name: (code, p.stderr_tail()) for p, code in zip(phones, codes, strict=True)
               if code != 0}
        assert not bad, f"phones did not exit cleanly: {bad}"


@pytest.fixture
async def start_sipp(tmp_path: Path) -> AsyncIterator[StartSipp]:
    """``await start_sipp(scenario, **SippOptions fields)``; every run is reaped at teardown."""
    runs: list[SippRun] = []

    async def start(scenario: str | Path, **opts: Any) -> SippRun:
        if isinstance(scenario, str) and scenario.endswith(".xml"):
            scenario = sipp_scenario(scenario)
        run = await SippRun.start(SippOptions(scenario=scenario, **opts), tmp_path / "sipp")
        runs.append(run)
        return run

    try:
        yield start
    finally:
        for run in runs:
            await run.stop()
