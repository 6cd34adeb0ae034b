import asyncio
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import uvloop

sys.path.insert(0, str(Path(__file__).parent))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async media test runs on stock asyncio and on uvloop (production)."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
