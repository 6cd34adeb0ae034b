"""A running ``mediasrv run`` and the business store (issue 10): the ``[[numbers]]`` seed is in
the store at start, and ``mediasrv business apply`` from another process reaches the running
server without a restart (its refresh logs the reload)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mediasrv.business_file import load_business_text

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "conf" / "business.example.toml"


def mediasrv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediasrv", *args], capture_output=True, text=True, timeout=60
    )


def wait_for_log(server: object, needle: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log_path.read_text(errors="replace").splitlines():  # type: ignore[attr-defined]
            if needle in line:
                return dict(json.loads(line)) if line.startswith("{") else {"line": line}
        time.sleep(0.05)
    raise AssertionError(f"no {needle!r} in the log within {timeout} s:\n{server.log_tail()}")  # type: ignore[attr-defined]


def test_seed_at_start_and_apply_while_running(start_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = start_server(
        numbers=[
            {
                "number": "0311111111",
                "business": "acme",
                "medium": "web",
                "destinations": ["sip:op@127.0.0.1:26010"],
            }
        ],
        store={"business_refresh_interval": 0.2},
    )
    wait_for_log(server, "[[numbers]] seed imported", timeout=10)
    listed = mediasrv("business", "list", "--data-dir", str(server.data_dir))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("acme\tversion 1\t") and "+81311111111" in listed.stdout

    applied = mediasrv("business", "apply", str(EXAMPLE), "--data-dir", str(server.data_dir))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout == "sakura-dental: new version 2\n"
    wait_for_log(server, "business configuration changed: reloaded", timeout=10)

    exported = mediasrv("business", "export", "sakura-dental", "--data-dir", str(server.data_dir))
    assert exported.returncode == 0
    assert load_business_text(exported.stdout) == load_business_text(EXAMPLE.read_text("utf-8"))
