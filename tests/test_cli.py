"""The ``mediasrv`` command as a user runs it: --version, and a bad config file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mediasrv


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediasrv", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_version(tmp_path: Path) -> None:
    proc = run("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"mediasrv {mediasrv.__version__}"


def test_bad_config_names_file_line_and_key_and_exits_2(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[server]\nhttp_listen = "127.0.0.1:8080"\n\n[media]\nrtp_port_min = 20001\n')
    proc = run("run", "-c", str(conf), "--data-dir", str(tmp_path / "var"), cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"{conf}:5: media.rtp_port_min:" in lines[0], lines[0]


def test_unknown_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    conf = tmp_path / "typo.toml"
    conf.write_text("[sip]\nring_timout = 10\n")
    proc = run("run", "-c", str(conf), cwd=tmp_path)
    assert proc.returncode == 2
    assert f"{conf}:2:" in proc.stderr and "ring_timeout" in proc.stderr, proc.stderr


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = run("run", "-c", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope.toml" in proc.stderr
