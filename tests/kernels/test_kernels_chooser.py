"""The kernel chooser honours MEDIASRV_NO_EXTENSIONS and never falls back silently."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = (
    "from mediasrv.media import kernels as k; "
    "print(k.ENGINE, *(getattr(k, n).__name__ for n in k.KERNELS))"
)


def run_probe(env_value: str | None) -> list[str]:
    env = dict(os.environ)
    env.pop("MEDIASRV_NO_EXTENSIONS", None)
    if env_value is not None:
        env["MEDIASRV_NO_EXTENSIONS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_default_is_cython() -> None:
    engine, *modules = run_probe(None)
    assert engine == "cython"
    assert modules and all(m.startswith("cext.") for m in modules)


def test_switch_selects_python_reference() -> None:
    engine, *modules = run_probe("1")
    assert engine == "python"
    assert modules and all(m.endswith("_py") for m in modules)


@pytest.mark.parametrize("value", ["0", "", "yes"])
def test_only_exact_one_switches(value: str) -> None:
    assert run_probe(value)[0] == "cython"


def test_missing_extension_is_a_clear_import_error(tmp_path: os.PathLike[str]) -> None:
    """With cext.* unimportable, importing the chooser raises, naming the switch."""
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('cext.'):\n"
        "            raise ImportError('blocked for test: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import mediasrv.media.kernels\n"
    )
    env = dict(os.environ)
    env.pop("MEDIASRV_NO_EXTENSIONS", None)
    out = subprocess.run(
        [sys.executable, "-c", blocker], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode != 0
    assert "ImportError" in out.stderr
    assert "MEDIASRV_NO_EXTENSIONS=1" in out.stderr
