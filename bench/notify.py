"""Notification benchmark (issue 12 "Benchmark"): call events from a real ``mediasrv run``
to a local webhook receiver that is healthy, then slow, then down, with the server killed by
SIGKILL once mid-run and restarted.

The events are real: SIPp calls (uac -> mediasrv -> uas, record off, 6 events per call:
ringing, answered, completed, each followed by its ``call.updated`` revision) through
``mediasrv run`` with one webhook endpoint for the number's business, so every event takes the
production path: written in the call log's transaction, claimed and POSTed by the server's
own dispatcher. The receiver runs in this process and verifies every request with the
``standardwebhooks`` package (a request that fails verification counts as not delivered).

Phases (calls split by ``--events``; 6 events per call):

1. healthy: 50 % of the calls at ``--rate``; the p99 latency (the event's ``timestamp``,
   taken at the call-state change, to its arrival at the receiver) is measured on these;
2. slow: 20 % of the calls, the receiver answers each request after ``--slow-ms``; right
   after them, with requests in flight and a backlog waiting, the server is killed with
   SIGKILL and restarted on the same store (the receiver stays slow ``--slow-s`` more);
3. down: the receiver stops listening (connection refused) for ``--down-s`` seconds, kept
   below the spec schedule's first retry (5 s -10 %): a delivery failing twice waits for the
   5-minute retry, which would outlast the run. 15 % of the calls are made meanwhile;
4. recovery: the receiver is back; the last 15 % of the calls are made while the backlog
   (retried 5 s after each failure) drains.

``events_per_s`` is the healthy phase's sustained delivery rate: its events delivered,
divided by the time from its first event to its last delivery (at ``--rate`` 200 calls/s the
server is offered 1,200 events/s: it keeps up only if this stays near that).

At the end the server is stopped and the store's ``outbox_events`` rows are the events:
``lost`` are rows never received, ``duplicate_ids`` webhook-ids received more than once
(at-least-once: expected after the SIGKILL), order violations per call are counted.

Then SIP throughput with and without webhooks, same run, bench/sip_cps.py's machinery: a short
search of the highest rate with 0 failed calls and 0 retransmissions, once with no endpoint
and once with the receiver subscribed (healthy).

Last line::

    RESULT notify events=<n> delivered=<n> lost=<n> duplicate_ids=<n> p99_ms=<x> events_per_s=<x>

The server is pinned to CPU 1 (as in sip_cps.py), SIPp and this process (the receiver) to
CPU 0. Every process is bounded in time and stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)

from aiohttp import web
from sip_cps import (  # type: ignore[import-not-found]
    NUMBER,
    SIPP_CPU,
    UAS_SCENARIO,
    MediasrvTarget,
    Settings,
    find_max_rate,
    machine,
    mediasrv_command,
    passes,
    raise_nofile,
)
from standardwebhooks import Webhook

from mediasrv.demo.sipp import SippOptions, SippRun, free_port, run_sipp

EVENTS_PER_CALL = 6  # record off: ringing, answered, completed, each + call.updated
BUSINESS = "bench"


# ---- the receiver ------------------------------------------------------------------------------
@dataclass
class Arrival:
    subject: str
    seq: int
    created_at: float  # the event's timestamp (the call-state change)
    at: list[float] = field(default_factory=list)  # every arrival of this webhook-id


class BenchReceiver:
    """An aiohttp receiver on a fixed loopback port that verifies with ``standardwebhooks``;
    ``down()`` closes the listener (connection refused), ``up()`` opens it again."""

    def __init__(self) -> None:
        self.port = free_port(socket.SOCK_STREAM, both=False)
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secret = ""
        self.slow_s = 0.0
        self.arrivals: dict[str, Arrival] = {}
        self.rejected = 0
        self._runner: web.AppRunner | None = None

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except Exception:
            self.rejected += 1
            return web.Response(status=401)
        now = time.time()
        if self.slow_s:
            await asyncio.sleep(self.slow_s)
        wid = headers["webhook-id"]
        got = self.arrivals.get(wid)
        if got is None:
            data = payload["data"]
            created = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
            got = Arrival(str(data["call_id"]), int(data["sequence"]), created.timestamp())
            self.arrivals[wid] = got
        got.at.append(now)  # when it reached the receiver
        return web.Response(status=204)

    def delivered(self) -> int:
        return len(self.arrivals)


# ---- the server ----------------------------------------------------------------------------------
class NotifyingTarget(MediasrvTarget):  # type: ignore[misc]
    """``mediasrv run`` as in sip_cps.py, plus webhooks to ``receiver`` for the business."""

    name = "mediasrv+webhooks"
    start_timeout_s = 90.0  # a loaded machine: starting (imports) took over 20 s here

    def __init__(self, exe: list[str], receiver: BenchReceiver, concurrency: int = 0) -> None:
        super().__init__(exe, "off", (10000, 60998))
        self.receiver = receiver
        self.concurrency = concurrency  # 0: the server's default

    def config(self, uas_port: int) -> str:
        base: str = super().config(uas_port)
        extra = f"concurrency = {self.concurrency}\n" if self.concurrency else ""
        return base + "\n[notify]\nallow_private_targets = true\n" + extra

    async def start(self, uas_port: int, workdir: Path) -> None:
        if not (workdir / "var" / "mediasrv.db").exists():
            self.receiver.secret = add_endpoint(self.exe, workdir / "var", self.receiver.url)
        try:
            await super().start(uas_port, workdir)
        except BaseException:
            await self.stop()  # a server that did not come up in time is not left running
            raise

    def get_json(self, path: str, wait: float = 0.0) -> object:
        # After a SIGKILL the restart answers HTTP later than it listens for SIP (it
        # finishes the calls cut off by the crash first): more than sip_cps.py's 10 s here.
        return super().get_json(path, max(wait, 90.0) if wait else 0.0)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()


def add_endpoint(exe: list[str], data_dir: Path, url: str) -> str:
    """``mediasrv webhooks add`` before the server starts; returns the secret."""
    out = subprocess.run(
        [*exe, "webhooks", "add", "--data-dir", str(data_dir), "--business", BUSINESS,
         "--url", url], check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    return out.split("secret:", 1)[1].strip()


# ---- the run ---------------------------------------------------------------------------------
@dataclass
class Marks:
    slow_at: float = 0.0
    down_at: float = 0.0
    killed_at: float = 0.0
    restarted_at: float = 0.0
    up_at: float = 0.0


def split_calls(events: int) -> list[int]:
    calls = math.ceil(events / EVENTS_PER_CALL)
    healthy, slow, down = round(calls * 0.5), round(calls * 0.2), round(calls * 0.15)
    return [healthy, slow, down, calls - healthy - slow - down]


async def make_calls(target: MediasrvTarget, calls: int, rate: float, work: Path, name: str) -> str:
    if calls <= 0:
        return f"{name}: no calls"
    bound = calls / rate + 30
    result = await run_sipp(SippOptions(
        scenario="uac", name=name, remote=f"127.0.0.1:{target.sip_port}", service=NUMBER,
        calls=calls, rate=rate, limit=int(rate * 3) + 10, hold_ms=200, timeout_s=bound,
        cpu=SIPP_CPU), work)  # fmt: skip
    s = result.stats
    return f"{name}: {calls} calls at {rate:g}/s, ok={s.successful} failed={s.failed}"


async def wait_delivered(receiver: BenchReceiver, want: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while receiver.delivered() < want and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


def stored_events(db: Path) -> dict[str, str]:
    """event id -> the state of its delivery (pending, delivered, dead) in the store."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT e.event_id, COALESCE(d.state, 'no delivery row') FROM outbox_events e "
            "LEFT JOIN webhook_deliveries d ON d.event_id = e.event_id WHERE e.business = ?",
            (BUSINESS,),
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def order_violations(arrivals: dict[str, Arrival]) -> int:
    """Per call, the first arrivals must come in sequence order."""
    per_call: dict[str, list[tuple[float, int]]] = {}
    for a in arrivals.values():
        per_call.setdefault(a.subject, []).append((a.at[0], a.seq))
    bad = 0
    for got in per_call.values():
        seqs = [seq for _t, seq in sorted(got)]
        bad += sum(1 for x, y in itertools.pairwise(seqs) if y < x)
    return bad


def drain_rate(receiver: BenchReceiver, up_at: float) -> tuple[float, int, float]:
    """(events/s, deliveries, seconds) from the first arrival after ``up_at`` to the last
    arrival of an event created before ``up_at``."""
    after = sorted(t for a in receiver.arrivals.values() for t in a.at[:1] if t >= up_at)
    backlog_end = max(
        (a.at[0] for a in receiver.arrivals.values() if a.created_at < up_at and a.at[0] >= up_at),
        default=0.0,
    )
    if not after or backlog_end <= after[0]:
        return 0.0, 0, 0.0
    n = sum(1 for t in after if t <= backlog_end)
    span = backlog_end - after[0]
    return n / span, n, span


@dataclass(frozen=True)
class Outcome:
    events: int
    delivered: int
    lost: int
    duplicates: int
    p99_ms: float
    events_per_s: float


async def notify_run(args: argparse.Namespace, root: Path) -> Outcome:
    receiver = BenchReceiver()
    await receiver.up()
    target = NotifyingTarget(mediasrv_command(), receiver, args.concurrency)
    work = root / "notify"
    work.mkdir()
    uas_port = free_port()
    phases = split_calls(args.events)
    marks = Marks()
    print(
        f"# calls per phase (healthy, slow, down, recovery): {phases}; receiver {receiver.url}",
        flush=True,
    )
    await target.start(uas_port, work)
    uas = await SippRun.start(SippOptions(
        scenario=UAS_SCENARIO, name="uas", local_port=uas_port, calls=sum(phases) * 2,
        timeout_s=args.timeout + 120, cpu=SIPP_CPU), work)  # fmt: skip
    t0 = time.time()
    try:
        print(await make_calls(target, phases[0], args.rate, work, "uac-healthy"), flush=True)
        await wait_delivered(receiver, phases[0] * EVENTS_PER_CALL, 10)
        first = min(a.created_at for a in receiver.arrivals.values())
        healthy_span = max(a.at[0] for a in receiver.arrivals.values()) - first
        healthy_n = receiver.delivered()
        sustained = healthy_n / healthy_span
        print(
            f"healthy: {healthy_n} delivered in {healthy_span:.2f} s from the first event "
            f"to the last delivery = {sustained:.0f} events/s sustained (offered: "
            f"{args.rate * EVENTS_PER_CALL:g}/s)",
            flush=True,
        )
        marks.slow_at = time.time()
        receiver.slow_s = args.slow_ms / 1000
        print(await make_calls(target, phases[1], args.rate, work, "uac-slow"), flush=True)
        # SIGKILL while the slow receiver holds requests in flight and a backlog waits.
        target.kill()
        marks.killed_at = time.time()
        assert target.proc is not None
        await target.proc.wait()
        print(
            f"SIGKILL {marks.killed_at - t0:.1f} s into the run (receiver slow), "
            f"{receiver.delivered()} delivered before it",
            flush=True,
        )
        await target.start(uas_port, work)
        marks.restarted_at = time.time()
        print(f"server restarted in {marks.restarted_at - marks.killed_at:.1f} s", flush=True)
        await asyncio.sleep(args.slow_s)
        print(
            f"slow ({args.slow_ms} ms per answer): {receiver.delivered()} delivered so far",
            flush=True,
        )
        marks.down_at = time.time()
        await receiver.down()
        receiver.slow_s = 0.0
        down_rate = max(1.0, phases[2] / max(0.5, args.down_s - 1.5))
        print(await make_calls(target, phases[2], down_rate, work, "uac-down"), flush=True)
        await asyncio.sleep(max(0.0, marks.down_at + args.down_s - time.time()))
        await receiver.up()
        marks.up_at = time.time()
        print(f"receiver up again after {marks.up_at - marks.down_at:.1f} s down", flush=True)
        print(await make_calls(target, phases[3], args.rate, work, "uac-recovery"), flush=True)
        total_calls = sum(phases)
        await wait_delivered(receiver, total_calls * EVENTS_PER_CALL, args.timeout)
        await asyncio.sleep(1.0)  # stragglers (cut-off calls' extra events)
    finally:
        await uas.stop()
        await target.stop()
        await receiver.down()
    stored = stored_events(work / "var" / "mediasrv.db")
    got = {wid: a for wid, a in receiver.arrivals.items() if wid in stored}
    unknown = len(receiver.arrivals) - len(got)
    lost = len(stored) - len(got)
    states: dict[str, int] = {}
    for wid, state in stored.items():
        if wid not in got:
            states[state] = states.get(state, 0) + 1
    if lost:
        print(f"not received, by state in the store: {states}", flush=True)
    dups = sum(1 for a in got.values() if len(a.at) > 1)
    healthy_lat = [
        (a.at[0] - a.created_at) * 1000 for a in got.values() if a.created_at < marks.slow_at
    ]
    rate, n, span = drain_rate(receiver, marks.up_at)
    print(
        f"healthy latency (call-state change -> delivery), {len(healthy_lat)} events: "
        f"p50={percentile(healthy_lat, 0.5):.1f} p99={percentile(healthy_lat, 0.99):.1f} "
        f"max={max(healthy_lat, default=float('nan')):.1f} ms",
        flush=True,
    )
    print(
        f"after the outage: {n} deliveries in {span:.2f} s = {rate:.0f} events/s (the events "
        "that failed wait for the first retry, 5 s after each failure)",
        flush=True,
    )
    print(
        f"order violations per call: {order_violations(got)}; signature failures: "
        f"{receiver.rejected}; ids not in the store: {unknown}",
        flush=True,
    )
    return Outcome(len(stored), len(got), lost, dups, percentile(healthy_lat, 0.99), sustained)


async def cps_compare(args: argparse.Namespace, root: Path) -> tuple[int, int]:
    """Highest clean CPS without and with webhooks (receiver healthy), same run."""
    cfg = Settings(duration=args.cps_duration, hold_ms=1000, workdir=root)
    receiver = BenchReceiver()
    await receiver.up()
    plain = MediasrvTarget(mediasrv_command(), "off", (10000, 60998))
    notifying = NotifyingTarget(mediasrv_command(), receiver, args.concurrency)
    best: list[int] = []
    try:
        for target in (plain, notifying):

            async def check(rate: int, target: MediasrvTarget = target) -> bool:
                return bool(await passes(target, rate, cfg, 1))

            found = await find_max_rate(check, args.cps_start, 1.4, 5000, args.cps_refine)
            print(f"{target.name}: max {found} calls/s", flush=True)
            best.append(found)
        print(
            f"webhooks delivered during the CPS trials: {receiver.delivered()}, "
            f"signature failures {receiver.rejected}",
            flush=True,
        )
    finally:
        await receiver.down()
    return best[0], best[1]


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000, help="call events (6 per call)")
    p.add_argument("--rate", type=float, default=200.0, help="calls/s in the healthy phases")
    p.add_argument("--slow-ms", type=int, default=250, help="receiver delay when slow")
    p.add_argument("--slow-s", type=float, default=3.0, help="seconds slow after its calls")
    p.add_argument(
        "--down-s",
        type=float,
        default=4.0,
        help="seconds the receiver is down (< 4.5: the first retry comes at 5 s)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="[notify] concurrency of the server (default: the server's default)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="bound on the final drain")
    p.add_argument("--no-cps", action="store_true", help="skip the CPS comparison")
    p.add_argument("--cps-duration", type=float, default=5.0, help="seconds per CPS trial")
    p.add_argument("--cps-start", type=int, default=150)
    p.add_argument("--cps-refine", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


async def bench(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    raise_nofile()
    load = os.getloadavg()[0]
    print(
        f"# notify {datetime.now(UTC):%Y-%m-%d %H:%M}Z on {machine()}; load {load:.2f}; "
        f"events {args.events}, rate {args.rate:g}/s, slow {args.slow_ms} ms, down "
        f"{args.down_s:g} s",
        flush=True,
    )
    try:
        with pinned(SIPP_CPU):
            out = await notify_run(args, root)
            if not args.no_cps:
                without, with_hooks = await cps_compare(args, root)
                print(
                    f"sip cps without webhooks={without} with webhooks={with_hooks} "
                    f"ratio={with_hooks / without if without else 0:.2f}",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"# work files in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"RESULT notify events={out.events} delivered={out.delivered} lost={out.lost} "
        f"duplicate_ids={out.duplicates} p99_ms={out.p99_ms:.1f} "
        f"events_per_s={out.events_per_s:.0f}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(bench(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
