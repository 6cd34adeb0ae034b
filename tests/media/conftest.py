import asyncio
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import uvloop

from mediasrv.media import engine
from mediasrv.media.packet_path_cy import CyPacketPath, CyThreadPacketPath
from mediasrv.media.packet_path_py import PyPacketPath

sys.path.insert(0, str(Path(__file__).parent))

# Every media test runs over every engine (issue 9, Tests): the pure-Python reference, the
# Cython relay driven by event-loop callbacks, and the Cython engine thread that production
# runs. The Cython paths are imported unconditionally: a missing extension is a failure here,
# never a silently smaller matrix.
PACKET_PATHS: dict[str, engine.PacketPathFactory] = {
    "python": PyPacketPath,
    "cython": CyPacketPath,
    "cython-thread": CyThreadPacketPath,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async media test runs on stock asyncio and on uvloop (production)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True, params=sorted(PACKET_PATHS))
def packet_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The engine every ``MediaEngine`` built in the test uses (its default packet path)."""
    factory = PACKET_PATHS[request.param]
    monkeypatch.setattr(engine, "default_packet_path", lambda: factory)
    yield request.param
