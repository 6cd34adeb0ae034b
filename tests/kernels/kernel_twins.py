"""Both implementations of a kernel, for parity tests (a uniquely named helper module:
``from conftest import ...`` would find another directory's conftest first)."""

from __future__ import annotations

from types import ModuleType

from mediasrv.media.kernels import load_kernel


def kernel_pair(name: str) -> tuple[ModuleType, ModuleType]:
    """(reference, cython) modules of one kernel."""
    return load_kernel(name, python=True), load_kernel(name, python=False)
