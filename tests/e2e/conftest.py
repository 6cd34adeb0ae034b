"""End-to-end fixtures: a real ``mediasrv run`` process per test, stopped with SIGTERM."""

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


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    servers: list[ServerProcess] = []

    def start(**kwargs: Any) -> ServerProcess:
        kwargs.setdefault("sip", dict(FAST_SIP))
        # Analysis workers load Whisper: only the test about analysis turns them on.
        kwargs.setdefault("analysis", {"enabled": False})
        kwargs.setdefault("workdir", tmp_path / f"server{len(servers)}")
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
