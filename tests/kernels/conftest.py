"""Both kernel implementations, for tests that run each kernel over both (parity habit)."""

from __future__ import annotations

from types import ModuleType

import pytest

from mediasrv.media.kernels import load_kernel

IMPLEMENTATIONS = ("python", "cython")


def kernel_pair(name: str) -> tuple[ModuleType, ModuleType]:
    """(reference, cython) modules of one kernel."""
    return load_kernel(name, python=True), load_kernel(name, python=False)


@pytest.fixture(params=IMPLEMENTATIONS)
def impl_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
