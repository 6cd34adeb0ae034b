"""End-to-end fixtures: real ``mediasrv run`` processes, stopped with SIGTERM: per test
(``start_server``), or shared by the tests of a module (``start_module_server``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mediasrv.demo.server import ServerProcess, ServerSpec

StartServer = Callable[..., ServerProcess]

# Short SIP timers so that every transaction is gone within seconds of a scenario's end
# (64*T1 = 3.2 s), which the leak checks wait for.
FAST_SIP = {"t1": 0.05, "t2": 0.4, "t4": 0.5}


def _servers(base: Path) -> Iterator[StartServer]:
    servers: list[ServerProcess] = []

    def start(**kwargs: Any) -> ServerProcess:
        kwargs.setdefault("sip", dict(FAST_SIP))
        # Analysis workers load Whisper: only the test about analysis turns them on.
        kwargs.setdefault("analysis", {"enabled": False})
        kwargs.setdefault("workdir", base / f"server{len(servers)}")
        spec = ServerSpec(**kwargs)
        server = ServerProcess(spec)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            killed = server.proc is not None and server.proc.returncode == -9
            code = server.stop()
            if not killed:
                assert code == 0, f"mediasrv exited {code} on SIGTERM:\n{server.log_tail()}"


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    yield from _servers(tmp_path)


@pytest.fixture(scope="module")
def start_module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Servers that live until the module's last test: one start for several scenarios
    (each on its own number; assertions read the calls of that number only)."""
    yield from _servers(tmp_path_factory.mktemp("module_server"))
