"""bench/benchenv.py: benchmarks run the installed package and keep their peers in the cache."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


@pytest.fixture(scope="module")
def benchenv() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchenv", BENCH / "benchenv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench_help(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    full.update(env)
    return subprocess.run([sys.executable, str(BENCH / script), "--help"], env=full,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_source_tree_on_pythonpath_is_escaped_by_a_re_exec() -> None:
    """With the checkout on PYTHONPATH, ``import mediasrv`` would load the unbuilt tree (no
    compiled kernels): the script re-runs itself without it, and then works."""
    out = run_bench_help("sip_parse.py", PYTHONPATH=str(REPO),
                         MEDIASRV_VENV=str(Path(sys.prefix)))
    assert out.returncode == 0, out.stderr
    assert "re-running under the project's python" in out.stderr
    assert "would import the source tree" in out.stderr
    assert out.stdout.startswith("usage: sip_parse.py")


def test_the_installed_package_runs_with_no_re_exec() -> None:
    out = run_bench_help("sip_parse.py")
    assert out.returncode == 0, out.stderr
    assert "re-running" not in out.stderr


def test_no_usable_venv_is_a_clear_error_not_a_loop(tmp_path: Path) -> None:
    out = run_bench_help("sip_parse.py", PYTHONPATH=str(REPO), MEDIASRV_VENV=str(tmp_path))
    assert out.returncode != 0
    assert "cannot import an installed mediasrv" in out.stderr
    assert "bootstrap.sh setup" in out.stderr


def test_child_env_drops_pythonpath(benchenv: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    env = benchenv.child_env(X="1")
    assert "PYTHONPATH" not in env and env["PYTHONSAFEPATH"] == "1" and env["X"] == "1"


def test_peers_live_in_the_users_cache(benchenv: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.delenv("SIPPY_VENV", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert benchenv.default_sippy_venv() == tmp_path / "mediasrv" / "bench" / "sippy-venv"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert benchenv.cache_dir() == Path.home() / ".cache" / "mediasrv" / "bench"


def test_a_users_own_sippy_venv_is_used_and_never_deleted(
        benchenv: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mine = tmp_path / "my-sippy"
    (mine / "bin").mkdir(parents=True)
    (mine / "bin" / "b2bua").write_text("#!/bin/sh\n")
    assert benchenv.ensure_sippy(mine) == mine / "bin" / "b2bua"
    other = tmp_path / "not-sippy"
    other.mkdir()
    (other / "keep.txt").write_text("the user's")
    with pytest.raises(RuntimeError, match="has no bin/b2bua"):
        benchenv.ensure_sippy(other)
    assert (other / "keep.txt").read_text() == "the user's"


def test_an_unfinished_sippy_venv_of_ours_is_rebuilt(
        benchenv: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No marker file: the last set-up was cut off. (The pip step is replaced: no network.)"""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ours = benchenv.default_sippy_venv()
    (ours / "bin").mkdir(parents=True)
    (ours / "bin" / "b2bua").write_text("half-installed")
    made: list[Path] = []

    class FakeBuilder:
        def __init__(self, **_kw: object) -> None:
            pass

        def create(self, path: Path) -> None:
            made.append(path)
            (path / "bin").mkdir(parents=True)

    def fake_pip(cmd: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        assert cmd[-1] == benchenv.SIPPY_REQUIREMENT
        (ours / "bin" / "b2bua").write_text("#!/bin/sh\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(benchenv.venv, "EnvBuilder", FakeBuilder)
    monkeypatch.setattr(benchenv.subprocess, "run", fake_pip)
    assert benchenv.ensure_sippy(ours) == ours / "bin" / "b2bua"
    assert made == [ours]
    assert (ours / "bin" / "b2bua").read_text() == "#!/bin/sh\n"
    assert (ours / ".mediasrv-bench-ready").exists()
    assert benchenv.ensure_sippy(ours) == ours / "bin" / "b2bua"  # now kept as it is
    assert made == [ours]
