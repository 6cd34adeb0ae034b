import asyncio
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop

from mediasrv.media import engine
from mediasrv.media.packet_path_py import PyPacketPath

sys.path.insert(0, str(Path(__file__).parent))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async media test runs on stock asyncio and on uvloop (production)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def _packet_paths() -> dict[str, engine.PacketPathFactory]:
    """The reference, plus the Cython packet path once ``mediasrv.media.packet_path_cy``
    provides ``CyPacketPath``: the same behaviour tests then run over both."""
    found: dict[str, engine.PacketPathFactory] = {"python": PyPacketPath}
    try:
        module = importlib.import_module("mediasrv.media.packet_path_cy")
    except ImportError:
        return found
    found["cython"] = module.CyPacketPath
    found["cython-thread"] = module.CyThreadPacketPath  # the default engine
    return found


@pytest.fixture(autouse=True, params=sorted(_packet_paths()))
def packet_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    factory = _packet_paths()[request.param]
    monkeypatch.setattr(engine, "default_packet_path", lambda: factory)
    yield request.param
