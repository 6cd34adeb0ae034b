"""The one place that chooses the media kernel implementation (ARCHITECTURE.md, "hot path").

By default the Cython kernels (``cext.*``) are used and a missing extension is an
:class:`ImportError` naming the fix: never a silent fallback. ``MEDIASRV_NO_EXTENSIONS=1``
selects the pure-Python reference twins (``*_py`` modules in this package), which the parity
tests hold bit-for-bit equal to the Cython kernels.

``ENGINE`` ("cython" or "python") is what the server logs and exports as a metric.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

ENV_SWITCH = "MEDIASRV_NO_EXTENSIONS"
KERNELS = ("dtmf", "g711", "mix", "playout", "recbuf", "rfc4733", "rtcp", "rtp")


def use_python_kernels() -> bool:
    """True when the environment asks for the pure-Python reference kernels."""
    return os.environ.get(ENV_SWITCH) == "1"


def load_kernel(name: str, *, python: bool) -> ModuleType:
    """Import one kernel module: ``cext.<name>`` or its ``<name>_py`` twin."""
    if python:
        return importlib.import_module(f"{__name__}.{name}_py")
    try:
        return importlib.import_module(f"cext.{name}")
    except ImportError as exc:
        raise ImportError(
            f"the Cython media kernel cext.{name} is not built ({exc}); build it with "
            f"'python setup.py build_ext --inplace' or 'pip install .', or set "
            f"{ENV_SWITCH}=1 to run the pure-Python reference kernels"
        ) from exc


ENGINE: str = "python" if use_python_kernels() else "cython"

if TYPE_CHECKING:
    # mypy checks callers against the reference twins; the cext .pyi stubs mirror them.
    from . import dtmf_py as dtmf
    from . import g711_py as g711
    from . import mix_py as mix
    from . import playout_py as playout
    from . import recbuf_py as recbuf
    from . import rfc4733_py as rfc4733
    from . import rtcp_py as rtcp
    from . import rtp_py as rtp
else:
    dtmf = load_kernel("dtmf", python=ENGINE == "python")
    g711 = load_kernel("g711", python=ENGINE == "python")
    mix = load_kernel("mix", python=ENGINE == "python")
    playout = load_kernel("playout", python=ENGINE == "python")
    recbuf = load_kernel("recbuf", python=ENGINE == "python")
    rfc4733 = load_kernel("rfc4733", python=ENGINE == "python")
    rtcp = load_kernel("rtcp", python=ENGINE == "python")
    rtp = load_kernel("rtp", python=ENGINE == "python")

__all__ = [
    "ENGINE",
    "ENV_SWITCH",
    "KERNELS",
    "dtmf",
    "g711",
    "load_kernel",
    "mix",
    "playout",
    "recbuf",
    "rfc4733",
    "rtcp",
    "rtp",
    "use_python_kernels",
]
