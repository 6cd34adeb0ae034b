"""``mediasrv demo``: one whole call on this machine, end to end, with real phones.

It starts ``mediasrv run`` (a child process with a generated config routing the tracking
number 0312345678 to an operator phone), an operator phone that answers after 1 s, and a
caller phone (pjsua2, each in its own process). The caller dials the tracking number, both
sides talk (each plays its own known speech-like WAV and records what it hears), the caller
sends DTMF 1234 and hangs up. The demo then prints the call's row from the server's HTTP
API, the engine that carried the media, and how well the audio matched both ways.

Exit 0 only if the call was answered, the audio arrived both ways (correlation >= 0.9) and
the operator received the digits. Every process it started is stopped, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from mediasrv.demo.audio import correlate_piecewise, read_wav, speech_like, write_wav
from mediasrv.demo.phones import PhoneError, PhoneProcess
from mediasrv.demo.server import ServerProcess, ServerSpec

NUMBER = "0312345678"
DIGITS = "1234"
ANSWER_DELAY_S = 1.0
SPEECH_S = 3.0  # each side speaks this long from the answer ...
DTMF_AT_S = 3.3  # ... then the caller keys the digits (RFC 4733 replaces its audio meanwhile)
HANGUP_AT_S = 4.6
MIN_CORRELATION = 0.9


@dataclass
class DemoReport:
    """What the demo saw; ``ok`` decides the exit code."""

    answered: bool = False
    digits_heard: str = ""
    corr_to_operator: float = 0.0
    corr_to_caller: float = 0.0
    engine: str = "?"
    row: dict[str, Any] | None = None
    recording_check: str = "not checked"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.answered and self.digits_heard == DIGITS
                and self.corr_to_operator >= MIN_CORRELATION
                and self.corr_to_caller >= MIN_CORRELATION and not self.problems)


@dataclass
class DemoFiles:
    """The demo's working directory and the WAVs in it."""

    root: Path
    caller_says: Path
    operator_says: Path
    caller_heard: Path
    operator_heard: Path

    @classmethod
    def create(cls, root: Path) -> DemoFiles:
        files = cls(root=root, caller_says=root / "caller_says.wav",
                    operator_says=root / "operator_says.wav",
                    caller_heard=root / "caller_heard.wav",
                    operator_heard=root / "operator_heard.wav")
        # Two different voices (pitch, seed) so that the checks can tell the directions apart.
        write_wav(files.caller_says, speech_like(SPEECH_S, seed=11, f0=120.0))
        write_wav(files.operator_says, speech_like(SPEECH_S, seed=22, f0=210.0))
        return files


class Demo:
    """Runs the demo call; :meth:`close` stops every process it started."""

    def __init__(self, files: DemoFiles, out: TextIO) -> None:
        self.files = files
        self.out = out
        self.server: ServerProcess | None = None
        self._starting: asyncio.Future[None] | None = None
        self.phones: list[PhoneProcess] = []
        self.report = DemoReport()
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:5.1f}s] {text}", file=self.out, flush=True)

    async def run(self) -> DemoReport:
        operator = await self._start_phone("operator", auto_answer="200",
                                           answer_delay=ANSWER_DELAY_S,
                                           play=self.files.operator_says,
                                           record=self.files.operator_heard)
        server = await self._start_server(operator.uri)
        caller = await self._start_phone("caller", play=self.files.caller_says,
                                         record=self.files.caller_heard)
        await self._call(caller, operator, f"sip:{NUMBER}@{server.sip_uri_host}")
        await self._check_audio(caller, operator)
        await self._fetch_row(server)
        return self.report

    async def _start_phone(self, name: str, **opts: Any) -> PhoneProcess:
        phone = await PhoneProcess.start(name, log_file=self.files.root / f"{name}.log",
                                         **opts)
        self.phones.append(phone)
        self.say(f"{name} phone (pjsua2, pid {phone.proc.pid}) at {phone.uri}")
        return phone

    async def _start_server(self, operator_uri: str) -> ServerProcess:
        spec = ServerSpec(workdir=self.files.root / "server", numbers=[{
            "number": NUMBER, "business": "demo", "medium": "demo-site",
            "campaign": "demo", "destinations": [operator_uri]}])
        self.server = ServerProcess(spec)
        # start() blocks (it polls /health), so it runs in a thread; shielded, so that a
        # demo timeout cannot abandon a thread that is about to spawn the server: close()
        # waits for it before stopping the server.
        self._starting = asyncio.ensure_future(asyncio.to_thread(self.server.start))
        await asyncio.shield(self._starting)
        health = await asyncio.to_thread(self.server.get_json, "/health")
        if isinstance(health, dict):
            self.report.engine = str(health.get("engine", "?"))
        self.say(f"mediasrv run (pid {self.server.proc.pid if self.server.proc else '?'}): "
                 f"SIP 127.0.0.1:{self.server.sip_port}, "
                 f"HTTP 127.0.0.1:{self.server.http_port}, media engine {self.report.engine}")
        return self.server

    async def _call(self, caller: PhoneProcess, operator: PhoneProcess, uri: str) -> None:
        self.say(f"caller dials {uri}")
        await caller.dial(uri)
        await operator.wait_event("incoming", timeout=10)
        self.say(f"operator rings; answers in {ANSWER_DELAY_S:g} s")
        await caller.wait_event("state", state="CONFIRMED", timeout=15)
        self.report.answered = True
        answered = time.monotonic()
        self.say("answered: both sides talk")
        await asyncio.sleep(max(0.0, DTMF_AT_S - (time.monotonic() - answered)))
        await caller.command("dtmf", digits=DIGITS)
        self.say(f"caller sends DTMF {DIGITS} (RFC 4733)")
        for digit in DIGITS:
            await operator.wait_event("dtmf", digit=digit, timeout=5)
        self.report.digits_heard = operator.digits()
        self.say(f"operator heard DTMF {self.report.digits_heard}")
        await asyncio.sleep(max(0.0, HANGUP_AT_S - (time.monotonic() - answered)))
        await caller.command("hangup")
        self.say("caller hangs up")
        ended = await operator.wait_event("disconnected", timeout=10)
        self.say(f"operator side ended: {ended.get('code')} {ended.get('reason')}")

    async def _check_audio(self, caller: PhoneProcess, operator: PhoneProcess) -> None:
        heard_by_operator = Path((await operator.wait_event("recorded", timeout=10))["path"])
        heard_by_caller = Path((await caller.wait_event("recorded", timeout=10))["path"])
        said_by_caller = read_wav(self.files.caller_says).samples
        said_by_operator = read_wav(self.files.operator_says).samples
        up = correlate_piecewise(said_by_caller, read_wav(heard_by_operator).samples)
        down = correlate_piecewise(said_by_operator, read_wav(heard_by_caller).samples)
        self.report.corr_to_operator, self.report.corr_to_caller = up.score, down.score
        self.say(f"audio caller -> operator: correlation {up.score:.3f} "
                 f"(delay {1000 * _median(up.lags):.0f} ms)")
        self.say(f"audio operator -> caller: correlation {down.score:.3f} "
                 f"(delay {1000 * _median(down.lags):.0f} ms)")

    async def _fetch_row(self, server: ServerProcess) -> None:
        """The call's log row; written when the call ends, so poll briefly for it."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, AssertionError):
                rows = await asyncio.to_thread(server.calls, 1)
                if rows and rows[0].get("end_time"):
                    self.report.row = rows[0]
                    break
            await asyncio.sleep(0.2)
        if self.report.row is None:
            self.report.problems.append("no call row in GET /api/v1/calls")
            return
        self.report.recording_check = _check_recording(self.report.row, self.files)

    async def close(self) -> None:
        await asyncio.gather(*(phone.stop() for phone in self.phones),
                             return_exceptions=True)
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        if self.server is not None:
            code = await self.server.astop(20.0)
            self.say(f"mediasrv stopped (exit {code})")


def _median(values: tuple[float, ...]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


def _check_recording(row: dict[str, Any], files: DemoFiles) -> str:
    """Caller on the left, operator on the right (SPEC F12), if the server recorded."""
    path = row.get("recording_path")
    if not path:
        return "no recording"
    try:
        wav = read_wav(path)
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    if wav.channels != 2:
        return f"{wav.channels} channel(s), want stereo"
    left = correlate_piecewise(read_wav(files.caller_says).samples, wav.samples[:, 0]).score
    right = correlate_piecewise(read_wav(files.operator_says).samples, wav.samples[:, 1]).score
    verdict = "ok" if min(left, right) >= MIN_CORRELATION else "MISMATCH"
    return (f"{verdict}: stereo {wav.seconds:.1f} s, left~caller {left:.3f}, "
            f"right~operator {right:.3f}")


def _when(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return datetime.fromtimestamp(float(value), UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"


def print_report(report: DemoReport, out: TextIO) -> None:
    row = report.row or {}
    lines = ["", "call log row (GET /api/v1/calls?limit=1):"]
    fields: list[tuple[str, Callable[[Any], str]]] = [
        ("call_id", str), ("tracking_number", str), ("caller_number", str),
        ("start_time", _when), ("answer_time", _when), ("end_time", _when),
        ("ring_seconds", str), ("talk_seconds", str), ("disposition", str),
        ("sip_code", str), ("end_reason", str), ("operator_uri", str), ("dtmf", str),
        ("recording_path", str)]
    for name, fmt in fields:
        lines.append(f"  {name:<16} {fmt(row.get(name)) if name in row else '-'}")
    lines += [
        "",
        f"media engine     {report.engine}",
        f"recording        {report.recording_check}",
        f"audio            caller->operator {report.corr_to_operator:.3f}, "
        f"operator->caller {report.corr_to_caller:.3f} (need >= {MIN_CORRELATION})",
        f"dtmf             sent {DIGITS}, operator heard {report.digits_heard or '-'}",
    ]
    lines += [f"problem          {p}" for p in report.problems]
    lines.append(f"RESULT demo {'ok' if report.ok else 'FAILED'}")
    print("\n".join(lines), file=out, flush=True)


async def _demo(keep: bool, out: TextIO, timeout: float) -> int:
    root = Path(tempfile.mkdtemp(prefix="mediasrv-demo-"))
    demo = Demo(DemoFiles.create(root), out)
    try:
        try:
            await asyncio.wait_for(demo.run(), timeout)
        except (PhoneError, RuntimeError, OSError, TimeoutError) as exc:
            demo.report.problems.append(f"{type(exc).__name__}: {exc}")
        finally:
            await demo.close()
        print(f"\ndemo files (recording, logs) in {root}"
              + ("" if keep else ": removed at exit; --keep keeps them"), file=out)
        print_report(demo.report, out)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if demo.report.ok else 1


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of ``mediasrv demo`` (``args.keep`` keeps the working directory)."""
    if importlib.util.find_spec("pjsua2") is None:
        print("mediasrv demo: the phones need pjsua2: pip install 'mediasrv[demo]' "
              "(package pjsua2-python)", file=sys.stderr)
        return 2
    return asyncio.run(_demo(bool(getattr(args, "keep", False)), sys.stdout,
                             float(getattr(args, "timeout", 45.0))))
