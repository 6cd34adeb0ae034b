"""Kernel tests run over both implementations (parity habit): the ``impl_kind`` fixture."""

from __future__ import annotations

import pytest

IMPLEMENTATIONS = ("python", "cython")


@pytest.fixture(params=IMPLEMENTATIONS)
def impl_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
