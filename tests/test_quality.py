"""Guards of the architecture and the code base: layering, no import cycles, ruff, mypy, and
that the tests exercise the installed package with its compiled extensions."""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mediasrv

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "mediasrv"

# Who may not import whom (ARCHITECTURE.md "Layers").
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "mediasrv.sip": (
        "mediasrv.media",
        "mediasrv.analysis",
        "mediasrv.calls",
        "mediasrv.outputs",
        "mediasrv.api",
        "mediasrv.app",
        "mediasrv.config",
        "mediasrv.demo",
    ),
    "mediasrv.media": (
        "mediasrv.sip",
        "mediasrv.analysis",
        "mediasrv.calls",
        "mediasrv.outputs",
        "mediasrv.api",
        "mediasrv.app",
        "mediasrv.config",
        "mediasrv.demo",
    ),
    "mediasrv.analysis": (
        "mediasrv.sip",
        "mediasrv.media",
        "mediasrv.calls",
        "mediasrv.outputs",
        "mediasrv.api",
        "mediasrv.app",
        "mediasrv.config",
        "mediasrv.demo",
    ),
    "mediasrv.calls": (
        "mediasrv.outputs",
        "mediasrv.api",
        "mediasrv.app",
        "mediasrv.config",
        "mediasrv.demo",
    ),
    # issue 13: the console is static files; the API serves them, they import nothing
    "mediasrv.console": (
        "mediasrv.sip",
        "mediasrv.media",
        "mediasrv.analysis",
        "mediasrv.calls",
        "mediasrv.outputs",
        "mediasrv.api",
        "mediasrv.app",
        "mediasrv.config",
        "mediasrv.demo",
    ),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.add(name)
    return found


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layering(layer: str) -> None:
    folder = REPO / layer.replace(".", "/")
    bad = []
    for path in _sources(folder):
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_cext_imports_nothing_from_mediasrv() -> None:
    bad = []
    for path in sorted((REPO / "cext").glob("*.p*")):
        if path.suffix in (".pyx", ".pxd", ".py", ".pyi"):
            for line in path.read_text().splitlines():
                words = line.split()
                if (
                    len(words) >= 2
                    and words[0] in ("import", "from", "cimport")
                    and (words[1] == "mediasrv" or words[1].startswith("mediasrv."))
                ):
                    bad.append(f"{path.name}: {line.strip()}")
    assert not bad


def test_every_module_imports_on_its_own() -> None:
    """Each module imported in a fresh interpreter: catches import cycles (aiohttp's habit)."""
    names = [m.name for m in pkgutil.walk_packages(mediasrv.__path__, "mediasrv.")]
    names = [n for n in names if not n.endswith("__main__")]
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed)); sys.exit(1 if failed else 0)\n"
    )
    # One interpreter per module would be slow; instead import each in a fresh one in batches
    # whose first import is the module itself, which is what exposes a cycle.
    failures = []
    for name in names:
        proc = subprocess.run(
            [sys.executable, "-c", script, name], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            failures.append(proc.stdout + proc.stderr[-500:])
    assert not failures, "\n".join(failures)


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (it is part of the test extra)")
    return found


def test_ruff_clean() -> None:
    proc = subprocess.run(
        [_tool("ruff"), "check", "mediasrv", "tests", "bench", "models", "setup.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_mypy_clean() -> None:
    proc = subprocess.run(
        [_tool("mypy"), "--config-file", str(REPO / "pyproject.toml"), str(SOURCE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


@pytest.mark.skipif(
    os.environ.get("MEDIASRV_TEST_INSTALLED") != "1",
    reason="the installed-package check runs under scripts/bootstrap.sh (CI)",
)
def test_tests_run_against_the_installed_package_with_compiled_extensions() -> None:
    package_dir = Path(mediasrv.__file__).resolve().parent
    assert "site-packages" in package_dir.parts, package_dir
    assert package_dir != SOURCE.resolve()
    from mediasrv.media import kernels

    assert kernels.ENGINE == "cython"
    for module in pkgutil.iter_modules(importlib.import_module("cext").__path__):
        loaded = importlib.import_module(f"cext.{module.name}")
        assert loaded.__file__ is not None and loaded.__file__.endswith(".so"), loaded.__file__
