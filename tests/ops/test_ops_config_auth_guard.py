"""[sip.auth_guard]: defaults, a full section, and one clear error per bad value (file, line,
key), as for every other section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mediasrv.config import AuthGuardConfig, BlockedPolicy, Config, ConfigError, load_config


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "x.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_defaults() -> None:
    guard = load_config(None).sip.auth_guard
    assert guard == AuthGuardConfig()
    assert guard.enabled and guard.max_failures == 5 and guard.backoff == 0.25
    assert guard.blocked_policy is BlockedPolicy.REJECT


def test_full_section(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        "[sip]\nt1 = 0.5\n[sip.auth_guard]\nenabled = false\nmax_failures = 3\n"
        "max_user_failures = 0\nwindow = 30\nbackoff = 0\nbase_block = 10\nmax_block = 10\n"
        'blocked_policy = "DROP"\nexempt = ["10.0.0.0/8", "2001:db8::/32"]\n'
        "max_entries = 100\nnonce_max_failures = 1\nnonce_table_size = 100\n",
    )
    g = cfg.sip.auth_guard
    assert (g.enabled, g.max_failures, g.max_user_failures, g.window) == (False, 3, 0, 30.0)
    assert (g.backoff, g.base_block, g.max_block) == (0.0, 10.0, 10.0)
    assert g.blocked_policy is BlockedPolicy.DROP
    assert g.exempt == ("10.0.0.0/8", "2001:db8::/32")
    assert (g.max_entries, g.nonce_max_failures, g.nonce_table_size) == (100, 1, 100)


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ("max_failures = 0", "sip.auth_guard.max_failures", "from 1 to 1000"),
        ("backoff = -1", "sip.auth_guard.backoff", "greater than 0"),
        ("backoff = true", "sip.auth_guard.backoff", "number of seconds"),
        ("window = 0", "sip.auth_guard.window", "greater than 0"),
        ("base_block = 60\nmax_block = 30", "sip.auth_guard.max_block", "at least base_block"),
        ('blocked_policy = "silent"', "sip.auth_guard.blocked_policy", "reject, drop"),
        ('exempt = ["10.0.0.0/33"]', "sip.auth_guard.exempt[0]", "CIDR"),
        ("nonce_table_size = 5", "sip.auth_guard.nonce_table_size", "from 100"),
        ("max_failure = 5", "sip.auth_guard.max_failure", "did you mean 'max_failures'"),
    ],
)
def test_bad_values_name_the_key_and_line(tmp_path: Path, body: str, key: str, words: str):
    text = "[sip.auth_guard]\n" + body + "\n"
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    err = exc.value
    assert err.key == key, str(err)
    assert words in err.message, str(err)
    name = key.rsplit(".", 1)[1].split("[")[0]
    lines = text.splitlines()
    assert err.line == 1 + next(i for i, x in enumerate(lines) if x.startswith(name + " ")), err


def test_a_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[sip.auth_guard]\nmax_failures = 0\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "mediasrv", "run", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}:2" in lines[0] and "max_failures" in lines[0], lines
