"""Bounded SIPp runs for tests and benchmarks (asyncio).

SIPp (Debian ``sip-tester``) is the standard SIP load generator. Every run here is bounded
three ways: ``-m`` calls, SIPp's own ``-timeout``, and an outer ``timeout`` command, because
SIPp's ``-timeout`` does not stop a UAC with unfinished calls (TOOLS.md). Results come from
``-trace_stat`` CSV (cumulative counters of the last row), not from screen scraping.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import random
import re
import resource
import shutil
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

BUILTIN_SCENARIOS = frozenset({"uac", "uas", "uac_pcap", "regexp", "branchc", "branchs"})
KILL_GRACE_S = 5


class SippError(Exception):
    """SIPp is missing, or a run could not be started or read."""


def sipp_path() -> str:
    exe = shutil.which("sipp")
    if exe is None:
        raise SippError("sipp is not installed (apt-get install -y sip-tester)")
    return exe


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(kind: socket.SocketKind = socket.SOCK_DGRAM, both: bool = True) -> int:
    """A port on 127.0.0.1 that is free now (UDP and, with ``both``, TCP too)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        if not both or _bindable(port, other):
            return port
    raise SippError("no free port on 127.0.0.1")


def free_port_block(count: int = 4, low: int = 20000, high: int = 40000) -> int:
    """An even base port with ``count`` consecutive free UDP ports (SIPp media uses 4)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high - count) & ~1
        if all(_bindable(base + i, socket.SOCK_DGRAM) for i in range(count)):
            return base
    raise SippError(f"no block of {count} free UDP ports in {low}-{high}")


def is_listening_udp(port: int) -> bool:
    """True when something holds UDP ``port`` on 127.0.0.1 (bind probe)."""
    return not _bindable(port, socket.SOCK_DGRAM)


def is_listening_tcp(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class SippStats:
    """Cumulative counters from the last row of a ``-trace_stat`` CSV file."""

    successful: int
    failed: int
    retransmissions: int
    created: int
    current: int
    fields: Mapping[str, str]

    @classmethod
    def from_csv(cls, path: Path) -> SippStats:
        try:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter=";"))
        except OSError as exc:
            raise SippError(f"no SIPp statistics at {path}: {exc}") from exc
        if not rows:
            raise SippError(f"SIPp statistics file {path} has no rows")
        last = {k: (v or "") for k, v in rows[-1].items() if k}

        def num(name: str) -> int:
            try:
                return int(float(last.get(name, "0") or 0))
            except ValueError:
                return 0

        return cls(successful=num("SuccessfulCall(C)"), failed=num("FailedCall(C)"),
                   retransmissions=num("Retransmissions(C)"), created=num("TotalCallCreated"),
                   current=num("CurrentCall"), fields=last)

    def count(self, name: str) -> int:
        """Any other cumulative counter by its CSV name, e.g. ``FailedMaxUDPRetrans(C)``."""
        try:
            return int(float(self.fields.get(name, "0") or 0))
        except ValueError:
            return 0


@dataclass(frozen=True)
class SippOptions:
    """One SIPp invocation. ``scenario`` is a built-in name (``uac``) or an XML path."""

    scenario: str | Path
    name: str = "sipp"
    remote: str | None = None
    local_port: int = 0
    media_port: int = 0
    service: str | None = None
    calls: int = 1
    rate: float | None = None
    rate_period_ms: int | None = None
    limit: int | None = None
    hold_ms: int | None = None
    timeout_s: float = 30.0
    transport: str = "u1"
    cpu: int | None = None
    keys: Mapping[str, str] = field(default_factory=dict)
    trace_msg: bool = False
    trace_logs: bool = False
    extra: Sequence[str] = ()

    def scenario_args(self) -> list[str]:
        if isinstance(self.scenario, str) and self.scenario in BUILTIN_SCENARIOS:
            return ["-sn", self.scenario]
        path = Path(self.scenario)
        if not path.is_file():
            raise SippError(f"SIPp scenario not found: {path}")
        return ["-sf", str(path)]


@dataclass(frozen=True)
class SippFiles:
    """Where one run writes its output."""

    stats: Path
    errors: Path
    messages: Path
    logs: Path
    screen: Path

    @classmethod
    def in_dir(cls, workdir: Path, name: str) -> SippFiles:
        return cls(stats=workdir / f"{name}_stat.csv", errors=workdir / f"{name}_errors.log",
                   messages=workdir / f"{name}_messages.log", logs=workdir / f"{name}_logs.log",
                   screen=workdir / f"{name}.out")


@dataclass(frozen=True)
class SippResult:
    """What a finished run reported. ``returncode`` 124 means the outer timeout fired."""

    returncode: int
    stats: SippStats
    files: SippFiles

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.stats.failed == 0

    def log_lines(self) -> list[str]:
        """Lines written by ``<log>`` actions (needs ``trace_logs``)."""
        if not self.files.logs.exists():
            return []
        return self.files.logs.read_text(errors="replace").splitlines()

    def final_codes(self) -> list[int]:
        """Codes logged as ``FINAL <code>`` by uac_expect_failure.xml, one per call."""
        return [int(m.group(1)) for line in self.log_lines()
                if (m := re.search(r"FINAL (\d{3})", line))]

    def errors_tail(self, chars: int = 2000) -> str:
        texts = []
        for path in (self.files.errors, self.files.screen):
            if path.exists():
                texts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(texts)

    def describe(self) -> str:
        s = self.stats
        return (f"rc={self.returncode} ok={s.successful} failed={s.failed} "
                f"retrans={s.retransmissions} created={s.created}")


def build_command(opts: SippOptions, files: SippFiles) -> list[str]:
    """The full argv: ``[taskset -c N] timeout -k 5 T sipp ...``."""
    args = [sipp_path(), *opts.scenario_args()]
    if opts.remote:
        args.append(opts.remote)
    args += ["-i", "127.0.0.1", "-p", str(opts.local_port), "-mi", "127.0.0.1",
             "-mp", str(opts.media_port), "-t", opts.transport, "-m", str(opts.calls),
             "-nostdin", "-timeout", f"{opts.timeout_s:g}s",
             "-trace_stat", "-stf", str(files.stats), "-fd", "1",
             "-trace_err", "-error_file", str(files.errors)]
    if opts.service is not None:
        args += ["-s", opts.service]
    if opts.rate is not None:
        args += ["-r", f"{opts.rate:g}"]
    if opts.rate_period_ms is not None:
        args += ["-rp", str(opts.rate_period_ms)]
    if opts.limit is not None:
        args += ["-l", str(opts.limit)]
    if opts.hold_ms is not None:
        args += ["-d", str(opts.hold_ms)]
    for key, value in opts.keys.items():
        args += ["-key", key, value]
    if opts.trace_msg:
        args += ["-trace_msg", "-message_file", str(files.messages)]
    if opts.trace_logs:
        args += ["-trace_logs", "-log_file", str(files.logs)]
    args += list(opts.extra)
    outer = ["timeout", "-k", str(KILL_GRACE_S), f"{opts.timeout_s + 10:g}"]
    pin = ["taskset", "-c", str(opts.cpu)] if opts.cpu is not None else []
    return pin + outer + args


def _raise_nofile() -> None:
    """Allow as many files as the hard limit; children inherit it (10,000 held calls)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class SippRun:
    """A SIPp process started in the background; ``wait()`` or ``stop()`` reaps it."""

    def __init__(self, opts: SippOptions, files: SippFiles,
                 proc: asyncio.subprocess.Process) -> None:
        self.opts = opts
        self.files = files
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, opts: SippOptions, workdir: Path) -> SippRun:
        """Start SIPp; free ports are chosen for ``local_port``/``media_port`` left at 0.

        A UAS (no ``remote``) is only returned once it holds its UDP port, so a UAC started
        next never races it.
        """
        if opts.local_port == 0 or opts.media_port == 0:
            opts = _with_ports(opts)
        workdir.mkdir(parents=True, exist_ok=True)
        files = SippFiles.in_dir(workdir, opts.name)
        for stale in (files.stats, files.errors, files.logs, files.messages):
            stale.unlink(missing_ok=True)
        argv = build_command(opts, files)
        _raise_nofile()
        with files.screen.open("wb") as screen:
            # A session of its own: stop() kills taskset/timeout/sipp as one process group.
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=workdir, stdin=asyncio.subprocess.DEVNULL, stdout=screen,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        run = cls(opts, files, proc)
        if opts.remote is None:
            await run._wait_listening()
        return run

    def _listening(self) -> bool:
        if self.opts.transport.startswith("t"):
            return is_listening_tcp(self.opts.local_port)
        return is_listening_udp(self.opts.local_port)

    async def _wait_listening(self, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await asyncio.to_thread(self._listening):
            if self.proc.returncode is not None or loop.time() > deadline:
                await self.stop()
                raise SippError(f"SIPp {self.opts.name} did not start listening on "
                                f"{self.opts.local_port}:\n{self._screen_tail()}")
            await asyncio.sleep(0.02)

    def _screen_tail(self) -> str:
        if self.files.screen.exists():
            return self.files.screen.read_text(errors="replace")[-1500:]
        return ""

    async def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish (it is bounded anyway); kill it if ``timeout`` passes."""
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            return await self.stop()
        return self._result()

    async def stop(self) -> SippResult:
        """Kill SIPp if still running, reap it, and read what it wrote."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()
        return self._result()

    def _result(self) -> SippResult:
        rc = self.proc.returncode if self.proc.returncode is not None else -1
        try:
            stats = SippStats.from_csv(self.files.stats)
        except SippError:
            stats = SippStats(0, 0, 0, 0, 0, {})
        return SippResult(returncode=rc, stats=stats, files=self.files)


def _with_ports(opts: SippOptions) -> SippOptions:
    return replace(opts, local_port=opts.local_port or free_port(),
                   media_port=opts.media_port or free_port_block())


async def run_sipp(opts: SippOptions, workdir: Path) -> SippResult:
    """Run SIPp to completion (bounded by ``opts.timeout_s``) and return its result."""
    run = await SippRun.start(opts, workdir)
    return await run.wait(opts.timeout_s + 20)
