"""CPU-seconds per call of the running server, with SIPp: the plain ``[[numbers]]`` route and
the realistic flow of issue 10 (``mediasrv.demo.flows``: blocklist, hours, round robin over two
operators, and the whisper where the installed version has it).

Process CPU time (user + system of the server, from /proc) is what a call costs whatever else
the machine runs, unlike calls per second, which a loaded box decides. The server's idle CPU
(its timers) is measured for a few seconds first and taken off. Each scenario runs ``--calls``
calls at ``--rate`` with a short hold, recording off in both (the realistic flow's number does
not record); a scenario with any failed call prints no figure.
Run it with the interpreter of the version to measure (its own venv), e.g. before/after::

    /path/to/baseline/.venv/bin/python bench/cpu_per_call.py   # before (the baseline's venv)
    .venv/bin/python bench/cpu_per_call.py                     # after

Last lines: ``RESULT cpu_per_call scenario=<plain|flow> calls=<n> cpu_ms_per_call=<ms>``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mediasrv.demo import flows
from mediasrv.demo.server import ServerProcess, ServerSpec
from mediasrv.demo.sipp import SippOptions, SippRun, free_port, run_sipp

NUMBER = "0312340000"
IDLE_S = 3.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def apply_flow(workdir: Path, targets: tuple[str, str]) -> bool:
    """Apply the realistic flow; True when it has the whisper (newer versions only)."""
    whisper = "whisper_file" in inspect.signature(flows.realistic_business_toml).parameters
    kwargs: dict[str, object] = {"number": NUMBER}
    if whisper:
        kwargs["whisper_file"] = flows.write_whisper_wav(workdir / "whisper.wav")  # type: ignore[attr-defined]
    path = workdir / "realistic.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(flows.realistic_business_toml(targets, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    done = subprocess.run(
        [sys.executable, "-m", "mediasrv", "business", "apply", str(path),
         "--data-dir", str(workdir / "var")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return whisper


async def start_uas(port: int, args: argparse.Namespace, workdir: Path) -> SippRun:
    opts = SippOptions(
        scenario="uas", name=f"uas-{port}", local_port=port, calls=args.calls,
        timeout_s=args.timeout,
    )  # fmt: skip
    return await SippRun.start(opts, workdir / f"uas-{port}")


async def calls_done(server: ServerProcess, timeout: float = 30.0, settle: float = 1.0) -> None:
    """No call and no RTP port left (SIP transactions linger for their timers: not waited
    for), then ``settle`` seconds for the last rows' writes."""
    deadline = time.monotonic() + timeout
    keys = ("mediasrv_active_calls", "mediasrv_rtp_ports_in_use")
    while time.monotonic() < deadline:
        left = await asyncio.to_thread(server.leaks)
        if not any(left[k] for k in keys):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(settle)


async def scenario(name: str, args: argparse.Namespace, root: Path) -> float | None:
    workdir = root / name
    port_a, port_b = free_port(), free_port()
    targets = (f"sip:op-a@127.0.0.1:{port_a}", f"sip:op-b@127.0.0.1:{port_b}")
    spec = ServerSpec(
        workdir=workdir,
        server={"log_level": "warning"},
        media={"no_rtp_timeout": 3600.0, "record": "off"},  # as the realistic flow's number
        analysis={"enabled": False},
    )
    note = ""
    if name == "plain":
        spec.numbers = [{"number": NUMBER, "business": "bench", "destinations": [targets[0]]}]
    else:
        note = " (with whisper)" if apply_flow(workdir, targets) else " (no whisper)"
        spec.extra_sections = {"calls": {"interpreter": "plan"}}
    server = ServerProcess(spec)
    server.start()
    uas = [await start_uas(p, args, workdir) for p in (port_a, port_b)]
    try:
        assert server.proc is not None
        pid = server.proc.pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(IDLE_S)
        idle_rate = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        result = await run_sipp(
            SippOptions(scenario="uac", name="uac", remote=server.sip_uri_host, service=NUMBER,
                        calls=args.calls, rate=args.rate, limit=400, hold_ms=args.hold_ms,
                        timeout_s=args.timeout),
            workdir / "uac",
        )  # fmt: skip
        await calls_done(server)
        c2, t2 = cpu_seconds(pid), time.monotonic()
    finally:
        for run in uas:
            await run.stop()
        server.stop()
    busy = (c2 - c1) - idle_rate * (t2 - t1)
    ok, failed = result.stats.successful, result.stats.failed
    print(f"{name}{note}: calls={ok} failed={failed} wall_s={t2 - t1:.1f} cpu_s={c2 - c1:.2f} "
          f"idle_cpu_pct={100 * idle_rate:.1f} load={os.getloadavg()[0]:.1f}", flush=True)
    if failed or ok != args.calls:
        print(f"{name}: failed calls, no figure:\n{result.describe()}", flush=True)
        return None
    return 1000 * busy / ok


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--hold-ms", type=int, default=200)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--scenarios", default="plain,flow")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="cpu-per-call-"))
    figures: dict[str, float | None] = {}
    for name in args.scenarios.split(","):
        figures[name] = await scenario(name, args, root)
    for name, ms in figures.items():
        shown = f"{ms:.3f}" if ms is not None else "none"
        print(f"RESULT cpu_per_call scenario={name} calls={args.calls} cpu_ms_per_call={shown}")
    return 0 if all(v is not None for v in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
