"""``mediasrv demo``: a whole call through the real server, and nothing left running."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from mediasrv.demo import runner

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _started_pids(output: str) -> list[int]:
    return [int(m) for m in re.findall(r"pid (\d+)", output)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait is missing.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_demo_command_shows_a_bridged_call() -> None:
    proc = subprocess.run([sys.executable, "-m", "mediasrv", "demo"], capture_output=True,
                          text=True, timeout=90, check=False)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert out.rstrip().endswith("RESULT demo ok")
    assert re.search(r"disposition\s+answered", out)
    assert re.search(r"dtmf\s+1234", out)
    assert re.search(r"recording_path\s+/\S+\.wav", out)
    assert re.search(r"media engine\s+\w+", out)
    pids = _started_pids(out)
    assert len(pids) == 3  # operator, server, caller
    assert not [pid for pid in pids if _alive(pid)]


async def test_demo_that_runs_out_of_time_fails_and_stops_everything() -> None:
    out = io.StringIO()
    code = await runner._demo(keep=False, out=out, timeout=2.0)
    text = out.getvalue()
    assert code == 1
    assert "RESULT demo FAILED" in text
    assert "TimeoutError" in text
    pids = _started_pids(text)
    assert pids
    assert not [pid for pid in pids if _alive(pid)]


def test_report_needs_every_condition() -> None:
    good = runner.DemoReport(answered=True, digits_heard="1234", corr_to_operator=0.99,
                             corr_to_caller=0.95)
    assert good.ok
    for change in ({"answered": False}, {"digits_heard": "123"},
                   {"corr_to_operator": 0.5}, {"corr_to_caller": 0.89},
                   {"problems": ["no call row"]}):
        report = runner.DemoReport(**{**good.__dict__, **change})
        assert not report.ok, change
    out = io.StringIO()
    runner.print_report(good, out)
    assert out.getvalue().rstrip().endswith("RESULT demo ok")


def test_demo_without_pjsua2_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pjsua2" else real(name, *a))
    assert runner.run_demo(argparse.Namespace(keep=False)) == 2
    assert "pip install 'mediasrv[demo]'" in capsys.readouterr().err
