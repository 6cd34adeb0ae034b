"""``mediasrv token new|hash|rotate`` as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mediasrv.api.auth import TOKEN_FILE_NAME, TOKEN_PREFIX, ensure_server_token, hash_token


def run(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediasrv", "token", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        input=stdin,
    )


def test_new_prints_a_token_and_its_sha256(tmp_path: Path) -> None:
    proc = run("new", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fields = dict(line.split(":", 1) for line in proc.stdout.splitlines())
    token, digest = fields["token"].strip(), fields["sha256"].strip()
    assert token.startswith(TOKEN_PREFIX) and digest == hash_token(token)
    assert list(tmp_path.iterdir()) == []  # stores nothing


def test_hash_reads_stdin(tmp_path: Path) -> None:
    proc = run("hash", cwd=tmp_path, stdin="msrv_abc\n")
    assert proc.returncode == 0 and proc.stdout.strip() == hash_token("msrv_abc")
    assert run("hash", cwd=tmp_path).returncode == 2


def test_rotate_replaces_the_generated_token(tmp_path: Path) -> None:
    data = tmp_path / "var"
    old_digest, _ = ensure_server_token(data)
    proc = run("rotate", "--data-dir", str(data), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert token.startswith(TOKEN_PREFIX)
    stored = (data / TOKEN_FILE_NAME).read_text().strip()
    assert stored == hash_token(token) != old_digest
    assert "restart" in proc.stderr


def test_rotate_refuses_when_the_config_sets_the_token(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text(f'[http]\napi_token_sha256 = "{"a" * 64}"\n')
    proc = run("rotate", "-c", str(conf), "--data-dir", str(tmp_path / "var"), cwd=tmp_path)
    assert proc.returncode == 2 and "api_token_sha256" in proc.stderr
    assert not (tmp_path / "var" / TOKEN_FILE_NAME).exists()
