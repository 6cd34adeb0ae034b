"""Asyncio controller for :mod:`mediasrv.demo.phone` processes.

One :class:`PhoneProcess` per phone: it starts ``python -m mediasrv.demo.phone``, writes JSON
commands to its stdin, and collects the JSON events it prints. :meth:`PhoneProcess.stop`
always reaps the process (quit, then SIGTERM, then SIGKILL), so a test or the demo never
leaves a phone running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0


class PhoneError(Exception):
    """A phone did not do what it was told in time, or it died."""


@dataclass(frozen=True)
class PhoneConfig:
    """How to start one phone (see ``python -m mediasrv.demo.phone --help``)."""

    name: str
    port: int = 0
    auto_answer: str = "none"
    answer_delay: float = 0.0
    play: Path | None = None
    play_loop: bool = False
    record: Path | None = None
    codec: str = "PCMU,PCMA"
    tcp: bool = False
    log_file: Path | None = None
    log_level: int = 4
    max_lifetime: float = 600.0
    extra_args: Sequence[str] = field(default_factory=tuple)

    def argv(self) -> list[str]:
        args = ["--name", self.name, "--port", str(self.port), "--auto-answer",
                self.auto_answer, "--answer-delay", str(self.answer_delay), "--codec",
                self.codec, "--max-lifetime", str(self.max_lifetime)]
        if self.play is not None:
            args += ["--play", str(self.play)]
        if self.play_loop:
            args.append("--play-loop")
        if self.record is not None:
            args += ["--record", str(self.record)]
        if self.tcp:
            args.append("--tcp")
        if self.log_file is not None:
            args += ["--log-file", str(self.log_file), "--log-level", str(self.log_level)]
        return args + list(self.extra_args)


class PhoneProcess:
    """A running phone process and the events it has reported so far."""

    def __init__(self, config: PhoneConfig, proc: asyncio.subprocess.Process) -> None:
        self.config = config
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.port = 0
        self._taken: set[int] = set()
        self._changed = asyncio.Condition()
        self._stderr: deque[str] = deque(maxlen=200)
        self._eof = False
        self._readers = [asyncio.create_task(self._read_events()),
                         asyncio.create_task(self._read_stderr())]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def uri(self) -> str:
        """The phone's own SIP URI, for dialling it directly."""
        return f"sip:{self.config.name}@127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @classmethod
    async def start(cls, name: str, port: int = 0, *, python: str = sys.executable,
                    cwd: Path | None = None, **opts: Any) -> PhoneProcess:
        """Start a phone and wait for its ``ready`` event (which carries the bound port)."""
        config = PhoneConfig(name=name, port=port, **opts)
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "mediasrv.demo.phone", *config.argv(), cwd=cwd,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        phone = cls(config, proc)
        try:
            ready = await phone.wait_event("ready", timeout=START_TIMEOUT)
        except BaseException:
            await phone.stop()
            raise
        phone.port = int(ready["port"])
        return phone

    async def __aenter__(self) -> PhoneProcess:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # ---- events -------------------------------------------------------------------------
    async def _read_events(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    self._stderr.append(f"[stdout] {line}")
                    continue
                log.debug("phone %s: %s", self.name, line)
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._eof = True
                self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(list(self._stderr)[-lines:])

    def _find(self, kind: str, match: dict[str, Any]) -> dict[str, Any] | None:
        for index, event in enumerate(self.events):
            if index in self._taken or event.get("event") != kind:
                continue
            if all(event.get(key) == value for key, value in match.items()):
                self._taken.add(index)
                return event
        return None

    async def wait_event(self, kind: str, timeout: float = 10.0,
                         **match: Any) -> dict[str, Any]:
        """The first not-yet-returned event of ``kind`` whose fields equal ``match``.

        Events that arrived before the call count, so there is no race between a command
        and waiting for its consequence. Raises :class:`PhoneError` on timeout or exit.
        """
        async def wait() -> dict[str, Any]:
            async with self._changed:
                while True:
                    found = self._find(kind, match)
                    if found is not None:
                        return found
                    if self._eof:
                        errors = [str(e.get("message")) for e in self.seen("error")]
                        raise PhoneError(f"phone {self.name} exited before {kind} {match}; "
                                         f"errors {errors}; stderr:\n{self.stderr_tail()}")
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            seen = [e.get("event") for e in self.events[-15:]]
            raise PhoneError(f"phone {self.name}: no {kind} {match} within {timeout}s; "
                             f"last events {seen}") from None

    def seen(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        """Every event of ``kind`` so far (taken or not) whose fields equal ``match``."""
        return [e for e in self.events if e.get("event") == kind
                and all(e.get(k) == v for k, v in match.items())]

    def digits(self) -> str:
        """All DTMF digits the phone has received so far, in order."""
        return "".join(str(e["digit"]) for e in self.seen("dtmf"))

    # ---- commands -----------------------------------------------------------------------
    async def command(self, cmd: str, **args: Any) -> None:
        """Send one command (dial, answer, hangup, dtmf, hold, unhold, quit)."""
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing() or self.proc.returncode is not None:
            raise PhoneError(f"phone {self.name} is not running")
        stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await stdin.drain()

    async def dial(self, uri: str) -> int:
        """Dial ``uri``; returns the phone's call id."""
        await self.command("dial", uri=uri)
        event = await self.wait_event("calling", timeout=5.0, uri=uri)
        return int(event["call"])

    async def stats(self, call: int | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """RTP counters of a live call (``rx_packets``, ``rx_loss``, ``tx_packets`` ...)."""
        args = {} if call is None else {"call": call}
        await self.command("stats", **args)
        return await self.wait_event("stats", timeout=timeout)

    # ---- shutdown -----------------------------------------------------------------------
    async def stop(self, timeout: float = 8.0) -> int:
        """Quit the phone; escalate to SIGTERM and SIGKILL. Always reaps the process."""
        if self.proc.returncode is None:
            with contextlib.suppress(PhoneError, ConnectionError):
                await self.command("quit")
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and self.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.send_signal(sig)
                try:
                    await asyncio.wait_for(self.proc.wait(), timeout)
                    break
                except TimeoutError:
                    log.warning("phone %s did not exit; sending %s", self.name, sig)
        await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return self.proc.returncode if self.proc.returncode is not None else -1
