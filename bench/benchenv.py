"""What the benchmarks share: the project's python, and the peers they set up on first use.

Benchmarks, like tests, run the *installed* mediasrv (the wheel with its compiled Cython
kernels), never the source tree. ``python bench/X.py`` started with an interpreter that cannot
import an installed mediasrv re-executes itself with the project's virtualenv (``$MEDIASRV_VENV``
or ``.venv/`` of this checkout, made by ``bash scripts/bootstrap.sh setup``), with
``PYTHONSAFEPATH=1`` and without ``PYTHONPATH``.

Peers come from the registries on first use, and each step says in one line what it did:

* Sippy B2BUA: a virtualenv under the user's cache directory
  (``~/.cache/mediasrv/bench/sippy-venv``, ``pip install sippy``);
* rtpengine userspace: ``apt-get install rtpengine-daemon`` (as root, or with sudo, as
  ``scripts/bootstrap.sh`` does for its Debian packages).

This module imports nothing from mediasrv: it must work under any python 3.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIPPY_REQUIREMENT = "sippy==2.5.0"  # the version the reference figures in TOOLS.md were taken on
RTPENGINE_DEB = "rtpengine-daemon"
_REEXEC = "MEDIASRV_BENCH_REEXEC"  # set on the re-exec: never loop


def say(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


# ---- the project's python ------------------------------------------------------------------


def _installed_mediasrv() -> Path | None:
    """Where ``import mediasrv`` would load from, if not from this checkout's source tree."""
    spec = importlib.util.find_spec("mediasrv")
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin).resolve()
    if (REPO / "mediasrv") in origin.parents:
        return None  # the unbuilt source tree (PYTHONPATH or cwd): not what we measure
    return origin.parent


def project_venv() -> Path:
    return Path(os.environ.get("MEDIASRV_VENV") or REPO / ".venv").expanduser().absolute()


def use_project_python(script: str) -> None:
    """Re-exec ``script`` under the project's venv unless mediasrv is installed for this python
    (and not shadowed by the source tree, e.g. through ``PYTHONPATH``)."""
    if _installed_mediasrv() is not None:
        return
    venv_dir = project_venv()
    python = venv_dir / "bin" / "python"
    if os.environ.get(_REEXEC) or not python.exists():
        sys.exit(f"bench: {sys.executable} cannot import an installed mediasrv and {python} "
                 "is not one that can: run `bash scripts/bootstrap.sh setup` first (or set "
                 "MEDIASRV_VENV)")
    env = child_env(**{_REEXEC: "1"})
    why = ("would import the source tree" if importlib.util.find_spec("mediasrv") is not None
           else "has no installed mediasrv")
    say(f"re-running under the project's python {python}, PYTHONSAFEPATH=1, no PYTHONPATH "
        f"({sys.executable} {why})")
    os.execve(python, [str(python), str(Path(script).resolve()), *sys.argv[1:]], env)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child python that must import the installed package, not the tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONSAFEPATH"] = "1"
    env.update(extra)
    return env


# ---- where peers live ----------------------------------------------------------------------


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mediasrv/bench``, by default ``~/.cache/mediasrv/bench``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mediasrv" / "bench"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One set-up at a time (two benchmarks started together must not both build a venv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_sippy_venv() -> Path:
    return Path(os.environ.get("SIPPY_VENV") or cache_dir() / "sippy-venv")


def ensure_sippy(venv_dir: Path) -> Path:
    """The ``b2bua`` program of a Sippy virtualenv, created on first use.

    Our own venv (under :func:`cache_dir`) that was not finished (no marker file) is rebuilt.
    A venv elsewhere (``--sippy-venv`` / ``$SIPPY_VENV``) is the user's: used when it has
    ``b2bua``, created only where nothing is yet, never deleted.
    """
    b2bua = venv_dir / "bin" / "b2bua"
    marker = venv_dir / ".mediasrv-bench-ready"
    ours = cache_dir().resolve() in venv_dir.resolve().parents
    with _locked(venv_dir.with_name(venv_dir.name + ".lock")):
        if b2bua.exists() and (marker.exists() or not ours):
            say(f"Sippy B2BUA: using {b2bua} (already set up)")
            return b2bua
        if ours:
            shutil.rmtree(venv_dir, ignore_errors=True)
        elif venv_dir.exists() and any(venv_dir.iterdir()):
            raise RuntimeError(f"{venv_dir} has no bin/b2bua: pass a virtualenv with "
                               f"`pip install {SIPPY_REQUIREMENT}`, or leave --sippy-venv out")
        say(f"Sippy B2BUA: first use, creating {venv_dir} and `pip install {SIPPY_REQUIREMENT}`")
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        out = subprocess.run(
            [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", SIPPY_REQUIREMENT],
            capture_output=True, text=True, check=False, timeout=900,
        )  # fmt: skip
        if out.returncode or not b2bua.exists():
            raise RuntimeError(f"pip install {SIPPY_REQUIREMENT} into {venv_dir} failed:\n"
                               f"{(out.stdout + out.stderr)[-2000:]}")
        marker.write_text(SIPPY_REQUIREMENT + "\n")
        say(f"Sippy B2BUA: set up {b2bua} ({SIPPY_REQUIREMENT})")
        return b2bua


# ---- rtpengine -----------------------------------------------------------------------------


def ensure_rtpengine() -> str | None:
    """Path of ``rtpengine``; installs Debian's ``rtpengine-daemon`` when it is absent."""
    found = shutil.which("rtpengine") or _sbin("rtpengine")
    if found:
        say(f"rtpengine: using {found} (already installed)")
        return found
    if shutil.which("apt-get") is None:
        say(f"rtpengine: not found and no apt-get to install {RTPENGINE_DEB}: no comparison")
        return None
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            say(f"rtpengine: not found; install {RTPENGINE_DEB} as root: no comparison")
            return None
        sudo = ["sudo", "-n"]
    say(f"rtpengine: not found, installing Debian package {RTPENGINE_DEB} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _locked(cache_dir() / "apt.lock"):
        subprocess.run([*sudo, "apt-get", "update", "-qq"], env=env, check=False,
                       capture_output=True, timeout=600)
        out = subprocess.run(
            [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", RTPENGINE_DEB],
            env=env, check=False, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    found = shutil.which("rtpengine") or _sbin("rtpengine")
    if out.returncode or not found:
        say(f"rtpengine: apt-get install {RTPENGINE_DEB} failed ({out.returncode}): "
            f"{(out.stdout + out.stderr).strip()[-500:]}")
        return None
    say(f"rtpengine: installed {RTPENGINE_DEB}: {found}")
    return found


def _sbin(name: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/bin"):  # not on PATH for every user
        path = Path(folder) / name
        if path.exists():
            return str(path)
    return None
