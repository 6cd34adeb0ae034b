"""Run ``mediasrv run`` as a real child process (for the demo, end-to-end tests, benchmarks).

The server gets a generated TOML config, free ports on loopback and its own data directory;
:meth:`ServerProcess.stop` sends SIGTERM (the drain path) and always reaps the process.
Its HTTP API token is made here and configured by its sha256 (``[http] api_token_sha256``),
so :meth:`ServerProcess.get_json` can send it; ``ServerSpec(api_token=None)`` leaves the
server to generate its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mediasrv.api.auth import generate_token, hash_token


def free_sip_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for SIP")


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        return int(tcp.getsockname()[1])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def render_config(
    sections: dict[str, dict[str, object]], tables: dict[str, list[dict[str, object]]]
) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
        lines.append("")
        for sub, table in values.items():  # a nested table, e.g. [sip.auth_guard]
            if isinstance(table, dict):
                lines.append(f"[{name}.{sub}]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
                lines.append("")
    for name, entries in tables.items():
        for entry in entries:
            lines.append(f"[[{name}]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
            lines.append("")
    return "\n".join(lines)


@dataclass
class ServerSpec:
    """What to run: numbers and trunks as config tables, plus any [section] overrides."""

    workdir: Path
    numbers: list[dict[str, object]] = field(default_factory=list)
    trunks: list[dict[str, object]] = field(default_factory=list)
    sip: dict[str, object] = field(default_factory=dict)
    media: dict[str, object] = field(default_factory=dict)
    server: dict[str, object] = field(default_factory=dict)
    analysis: dict[str, object] = field(default_factory=dict)
    http: dict[str, object] = field(default_factory=dict)
    store: dict[str, object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    api_token: str | None = field(default_factory=generate_token, repr=False)
    nofile: int | None = None  # the server's RLIMIT_NOFILE (soft and hard), if set
    # Any other tables by their dotted name, e.g. {"sip.rate_limit": {"rate": 5.0}}.
    extra_sections: dict[str, dict[str, object]] = field(default_factory=dict)
    # Any other arrays of tables, e.g. {"registrar.users": [{"name": "alice", ...}]}.
    extra_tables: dict[str, list[dict[str, object]]] = field(default_factory=dict)


class ServerProcess:
    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.sip_port = free_sip_port()
        self.http_port = free_tcp_port()
        while self.http_port == self.sip_port:  # both probes released: the OS may repeat one
            self.http_port = free_tcp_port()
        self.data_dir = spec.workdir / "var"
        self.config_path = spec.workdir / "mediasrv.toml"
        self.log_path = spec.workdir / "mediasrv.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def sip_uri_host(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def write_config(self) -> None:
        server: dict[str, object] = {
            "log_format": "json",
            "log_level": "info",
            "drain_timeout": 10.0,
        }
        server.update(self.spec.server)
        media: dict[str, object] = {"rtp_port_min": 30000, "rtp_port_max": 39999}
        media.update(self.spec.media)
        sections: dict[str, dict[str, object]] = {"server": server, "media": media}
        if self.spec.sip:
            sections["sip"] = dict(self.spec.sip)
        if self.spec.analysis:
            sections["analysis"] = dict(self.spec.analysis)
        http = dict(self.spec.http)
        if self.spec.api_token is not None:
            http.setdefault("api_token_sha256", hash_token(self.spec.api_token))
        if http:
            sections["http"] = http
        for name, values in self.spec.extra_sections.items():
            sections[name] = dict(values)
        if self.spec.store:
            sections["store"] = dict(self.spec.store)
        tables = {"trunks": self.spec.trunks, "numbers": self.spec.numbers}
        tables.update(self.spec.extra_tables)
        self.spec.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(sections, tables))

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mediasrv",
            "run",
            "-c",
            str(self.config_path),
            "--sip-listen",
            self.sip_uri_host,
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--data-dir",
            str(self.data_dir),
        ]

    def start(self, timeout: float = 20.0) -> None:
        self.write_config()
        env = dict(os.environ)
        env.update(self.spec.env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.spec.workdir,
            preexec_fn=self._limit_files if self.spec.nofile else None,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mediasrv exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                self.get_json("/health")
                return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"mediasrv did not become healthy:\n{self.log_tail()}")

    def _limit_files(self) -> None:
        assert self.spec.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.spec.nofile, self.spec.nofile))

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def request(self, path: str) -> urllib.request.Request:
        """A GET of ``path`` on the server, with its API token when it has one."""
        headers = {}
        if self.spec.api_token is not None:
            headers["Authorization"] = f"Bearer {self.spec.api_token}"
        return urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", headers=headers)

    def get_json(self, path: str) -> object:
        with urllib.request.urlopen(self.request(path), timeout=5) as r:
            return json.loads(r.read())

    def metrics(self) -> dict[str, float]:
        """Unlabelled samples of /metrics plus labelled ones keyed by their full text."""
        with urllib.request.urlopen(self.request("/metrics"), timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                continue
        return out

    def leaks(self) -> dict[str, float]:
        """Transactions, dialogs, RTP ports and calls still held (all 0 when idle)."""
        m = self.metrics()
        keys = (
            "mediasrv_sip_transactions",
            "mediasrv_sip_dialogs",
            "mediasrv_rtp_ports_in_use",
            "mediasrv_active_calls",
        )
        return {k: m.get(k, -1.0) for k in keys}

    def wait_idle(self, timeout: float = 30.0) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        leaks = self.leaks()
        while any(leaks.values()) and time.monotonic() < deadline:
            time.sleep(0.2)
            leaks = self.leaks()
        return leaks

    def calls(self, limit: int = 100) -> list[dict[str, object]]:
        data = self.get_json(f"/api/v1/calls?limit={limit}")
        assert isinstance(data, dict)
        calls = data["calls"]
        assert isinstance(calls, list)
        return calls

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful drain); SIGKILL if it does not exit in time. Returns the code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode if self.proc.returncode is not None else -9)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    async def astop(self, timeout: float = 30.0) -> int:
        return await asyncio.to_thread(self.stop, timeout)
