"""SIP calls-per-second benchmark: SIPp uac -> B2BUA -> SIPp uas on loopback (issue 2).

Both B2BUAs run the same way in the same run:

* **mediasrv** (``<venv>/bin/mediasrv run``), media anchored (RTP ports allocated per leg and
  SDP rewritten; SIPp's uac sends no RTP), recording off, logs at warning level;
* **Sippy B2BUA** 2.5.0 in its own virtualenv, created on first use under the user's cache
  directory (``~/.cache/mediasrv/bench/sippy-venv``, ``pip install sippy``; ``--sippy-venv``
  or ``$SIPPY_VENV`` for another), signalling only, the reference measured at 250 calls/s
  here (TOOLS.md).

Run it with any python 3: it re-runs itself under the project's virtualenv (``.venv/`` or
``$MEDIASRV_VENV``, made by ``bash scripts/bootstrap.sh setup``) when that python has no
installed mediasrv (bench/benchenv.py).

The B2BUA is pinned to CPU 1 and both SIPp instances to CPU 0 (``taskset``). Each call holds
1 s. A rate passes when every call of a ``--duration`` run succeeds with 0 failed calls and
0 retransmissions (counted on both SIPp sides). The rate grows by ``--grow`` until a run
fails, then is refined by bisection. A failed run is retried once (``--retries``): the
machine is shared, and one noisy neighbour should not decide the result for either side.

Then ``--concurrent`` calls (default 10,000) are held at once through mediasrv and the
resident memory per held call is measured: (RSS with all calls up - RSS idle) / calls.
mediasrv binds 4 sockets per anchored call (RTP and RTCP on each leg); where the open-files
limit cannot hold that many (a hard limit of 20,000 here, not raisable without
CAP_SYS_RESOURCE), the count is capped to what fits and a note says so (``--no-cap`` tries
anyway: the calls beyond the limit then fail).

Last line::

    RESULT sip_cps mediasrv=<cps> sippy=<cps> ratio=<r> rss_per_call_kb=<kb>

``--quick`` runs short trials (5 s, 1,000 concurrent calls) for a smoke test. Every process
is bounded in time and stopped by PID (Sippy with SIGKILL: its SIGTERM is slow).

``--flow realistic`` (issue 10 "Benchmark") runs the search three times in the same run and
holds no concurrent calls: ``mediasrv`` (the plain ``[[numbers]]`` route: a one-Dial plan),
``mediasrv-flow`` (the realistic flow of ``mediasrv.demo.flows`` applied to the business
store: blocklist, business hours, round robin over two operators, a 0.4 s whisper to the
operator before the bridge), and ``kamailio``
(Kamailio 5.6 as a stateful proxy with rtpengine anchoring the media through
``rtpengine_offer`` / ``answer`` / ``delete``, rtpengine ``--delete-delay=0``, both on the
B2BUA's CPU; Debian ``kamailio`` and ``rtpengine-daemon``). Last line::

    RESULT sip_cps_flows plain=<cps> flow=<cps> ratio=<r> kamailio=<cps>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)

from mediasrv.demo.sipp import (
    SippOptions,
    SippResult,
    SippRun,
    free_port,
    is_listening_udp,
    run_sipp,
)

HERE = Path(__file__).resolve().parent
SIPP_DIR = HERE.parent / "tests" / "data" / "sipp"
# 200 at once, lower-case transport=udp in Contact (Sippy 2.5.0 fails calls on "UDP").
UAS_SCENARIO = SIPP_DIR / "uas_no180.xml"
NUMBER = "0312345678"
B2BUA_CPU, SIPP_CPU = 1, 0
CLK_TCK = os.sysconf("SC_CLK_TCK")
FDS_PER_CALL = 4  # mediasrv binds RTP + RTCP sockets for each of a call's two legs
FD_RESERVE = 400  # SIP sockets, HTTP, the store, logs, Python itself


# ---- process figures ----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (Kamailio's worker processes)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
    return out


def target_cpu_seconds(target: Target) -> float:
    """CPU time of the target: every process it runs (Kamailio forks, rtpengine beside it)."""
    pids = target.pids() if hasattr(target, "pids") else [target.pid]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` figure from /proc/PID/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def raise_nofile(wanted: int = 200_000) -> int:
    """Lift the open-files limit (inherited by the B2BUA: 4 sockets per anchored call)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(wanted, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, OSError):
            continue
    return soft


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{platform.node()} {os.cpu_count()} cpu {model}, Linux {platform.release()}"


# ---- the two B2BUAs ---------------------------------------------------------------------------
class Target(Protocol):
    name: str
    pid: int
    sip_port: int

    async def start(self, uas_port: int, workdir: Path) -> None: ...
    async def stop(self) -> None: ...
    def describe(self) -> str: ...


async def _wait_udp(port: int, proc: asyncio.subprocess.Process, what: str,
                    log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not is_listening_udp(port):
        if proc.returncode is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start listening on {port}:\n{tail}")
        await asyncio.sleep(0.05)


class SippyTarget:
    """Sippy B2BUA routing every call to the uas (``-s``), no RTP proxy (``-A 0``)."""

    name = "sippy"

    def __init__(self, exe: Path) -> None:
        self.exe = exe
        self.proc: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.sip_port = 0

    def describe(self) -> str:
        return f"Sippy B2BUA ({self.exe})"

    async def start(self, uas_port: int, workdir: Path) -> None:
        if not self.exe.exists():
            raise RuntimeError(f"{self.exe} missing: python3 -m venv DIR && "
                               "DIR/bin/pip install sippy; pass --sippy-venv DIR")
        self.sip_port = free_port()
        log = workdir / "sippy.log"
        env = {**os.environ, "SIPLOG_BEND": "none"}
        with log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                "taskset", "-c", str(B2BUA_CPU), str(self.exe), "-f", "-l", "127.0.0.1",
                "-p", str(self.sip_port), "-s", f"127.0.0.1:{uas_port}", "-A", "0", "-u",
                "-c", str(workdir / "b2bua.sock"), stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=env, cwd=workdir)
        self.pid = self.proc.pid  # taskset execs the program: same PID
        await _wait_udp(self.sip_port, self.proc, "sippy b2bua", log)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)  # SIGTERM is slow (TOOLS.md)
            await self.proc.wait()


class MediasrvTarget:
    """``mediasrv run`` with one tracking number routed to the uas; media anchored."""

    name = "mediasrv"
    start_timeout_s = 20.0  # seconds to start listening

    def __init__(self, exe: list[str], record: str, port_range: tuple[int, int],
                 flow: bool = False) -> None:
        self.flow = flow  # plan mode, the realistic flow from the business store
        if flow:
            self.name = "mediasrv-flow"
        self.exe = exe
        self.record = record
        self.port_range = port_range
        self.proc: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.sip_port = 0
        self.http_port = 0
        self.engine = "?"

    def describe(self) -> str:
        flow = ", plan interpreter + realistic flow" if self.flow else ""
        return (f"mediasrv ({' '.join(self.exe)}), engine {self.engine}, "
                f"record={self.record}{flow}")

    def config(self, uas_port: int) -> str:
        lo, hi = self.port_range
        return "\n".join([
            "[server]", 'log_level = "warning"', 'log_format = "json"', "drain_timeout = 5.0",
            "", "[media]", f"rtp_port_min = {lo}", f"rtp_port_max = {hi}",
            # SIPp's uac sends no RTP: keep the held calls up for the whole hold.
            "no_rtp_timeout = 3600.0", f'record = "{self.record}"',
            *(["", "[calls]", 'interpreter = "plan"', ""] if self.flow else
              ["", "[[numbers]]", f'number = "{NUMBER}"', 'business = "bench"',
            f'destinations = ["sip:uas@127.0.0.1:{uas_port}"]', ""])])

    async def apply_realistic_flow(self, uas_port: int, workdir: Path) -> None:
        """The business file of the realistic flow, applied to the server's store."""
        from mediasrv.demo.flows import realistic_business_toml, write_whisper_wav

        path = workdir / "realistic.toml"
        path.write_text(realistic_business_toml(
            (f"sip:op-a@127.0.0.1:{uas_port}", f"sip:op-b@127.0.0.1:{uas_port}"),
            number=NUMBER, whisper_file=write_whisper_wav(workdir / "whisper.wav")))
        proc = await asyncio.create_subprocess_exec(
            *self.exe, "business", "apply", str(path), "--data-dir", str(workdir / "var"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode != 0:
            raise RuntimeError(f"business apply failed: {out.decode(errors='replace')}")

    async def start(self, uas_port: int, workdir: Path) -> None:
        self.sip_port, self.http_port = free_port(), free_port()
        conf = workdir / "mediasrv.toml"
        conf.write_text(self.config(uas_port))
        if self.flow:
            await self.apply_realistic_flow(uas_port, workdir)
        log = workdir / "mediasrv.log"
        with log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                "taskset", "-c", str(B2BUA_CPU), *self.exe, "run", "-c", str(conf),
                "--sip-listen", f"127.0.0.1:{self.sip_port}",
                "--http-listen", f"127.0.0.1:{self.http_port}",
                "--data-dir", str(workdir / "var"), stdout=out,
                stderr=asyncio.subprocess.STDOUT, cwd=workdir)
        self.pid = self.proc.pid
        await _wait_udp(self.sip_port, self.proc, "mediasrv", log, self.start_timeout_s)
        health = await asyncio.to_thread(self.get_json, "/health", 30.0)  # a loaded box
        if isinstance(health, dict):
            self.engine = str(health.get("engine", "?"))

    def get_json(self, path: str, wait: float = 0.0) -> object:
        import json

        deadline = time.monotonic() + wait
        while True:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as resp:
                    return json.loads(resp.read())
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def active_calls(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics",
                                    timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("mediasrv_active_calls "):
                    return int(float(line.split()[1]))
        return -1

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the drain path; calls are over by now
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
KAMAILIO_CFG = """#!KAMAILIO
debug=0
log_stderror=yes
memdbg=5
memlog=5
children={children}
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:{ng}")
modparam("tm", "fr_timer", 30000)
modparam("tm", "fr_inv_timer", 60000)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (!loose_route()) {{
            if (is_method("ACK") && t_check_trans()) {{ t_relay(); exit; }}
            $du = "sip:127.0.0.1:{uas}";
        }}
        if (is_method("BYE")) {{ rtpengine_delete(); }}
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{ rtpengine_delete(); t_relay(); }}
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        if (has_body("application/sdp")) {{ rtpengine_offer("replace-origin replace-session-connection"); }}
        t_on_reply("MEDIA");
        t_on_failure("FAILED");
    }}
    $du = "sip:127.0.0.1:{uas}";
    t_relay();
    exit;
}}

onreply_route[MEDIA] {{
    if (has_body("application/sdp")) {{ rtpengine_answer("replace-origin replace-session-connection"); }}
}}

failure_route[FAILED] {{
    rtpengine_delete();
}}
"""


class KamailioTarget:
    """Kamailio 5.6 stateful proxy + rtpengine (userspace, --delete-delay=0), both pinned to the
    B2BUA's CPU: the carrier's usual C stack, the higher anchor of ``--flow realistic``."""

    name = "kamailio"

    def __init__(self, port_range: tuple[int, int], children: int = 4) -> None:
        self.port_range = port_range
        self.children = children
        self.kamailio: asyncio.subprocess.Process | None = None
        self.rtpengine: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.sip_port = 0
        self.version = "?"
        for exe in ("kamailio", "rtpengine"):
            if shutil.which(exe) is None:
                raise RuntimeError(f"{exe} not installed (Debian kamailio, rtpengine-daemon)")

    def describe(self) -> str:
        return (f"kamailio {self.version} (tm, rr, {self.children} UDP workers) + rtpengine "
                "userspace --delete-delay=0, both on the B2BUA's CPU")

    def pids(self) -> list[int]:
        out = []
        for proc in (self.kamailio, self.rtpengine):
            if proc is not None and proc.returncode is None:
                out.append(proc.pid)
                out.extend(children_of(proc.pid))
        return out

    async def start(self, uas_port: int, workdir: Path) -> None:
        self.sip_port, ng = free_port(), free_port()
        lo, hi = self.port_range
        cfg = workdir / "kamailio.cfg"
        cfg.write_text(KAMAILIO_CFG.format(children=self.children, port=self.sip_port,
                                           modules=KAMAILIO_MODULES, ng=ng, uas=uas_port))
        with (workdir / "rtpengine.log").open("wb") as out:
            self.rtpengine = await asyncio.create_subprocess_exec(
                "taskset", "-c", str(B2BUA_CPU), "rtpengine", "--config-file=none", "-f", "-E",
                "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng}",
                f"--port-min={lo}", f"--port-max={hi}", "--delete-delay=0", "-L", "3",
                "--timeout=3600", stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=workdir)
        await asyncio.sleep(1.0)
        log = workdir / "kamailio.log"
        with log.open("wb") as out:
            self.kamailio = await asyncio.create_subprocess_exec(
                "taskset", "-c", str(B2BUA_CPU), "kamailio", "-DD", "-E", "-f", str(cfg),
                "-Y", str(workdir), "-m", "256", "-M", "16",
                stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=workdir)
        self.pid = self.kamailio.pid
        await _wait_udp(self.sip_port, self.kamailio, "kamailio", log)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, timeout=10)
            self.version = done.stdout.split()[2] if done.stdout else "?"

    async def stop(self) -> None:
        for proc in (self.kamailio, self.rtpengine):
            if proc is None or proc.returncode is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# ---- one CPS trial ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    target: str
    rate: int
    calls: int
    uac: SippResult
    uas: SippResult
    cpu_pct: float
    hwm_kb: int

    @property
    def passed(self) -> bool:
        u = self.uac.stats
        return (u.successful == self.calls and u.failed == 0 and u.retransmissions == 0
                and self.uas.stats.retransmissions == 0 and self.uas.stats.failed == 0)

    def line(self) -> str:
        u, s = self.uac.stats, self.uas.stats
        return (f"{self.target} rate={self.rate} calls={self.calls} ok={u.successful} "
                f"failed={u.failed} retrans={u.retransmissions}+{s.retransmissions} "
                f"cpu_pct={self.cpu_pct:.1f} hwm_kb={self.hwm_kb} "
                f"{'PASS' if self.passed else 'FAIL'}")


@dataclass(frozen=True)
class Settings:
    duration: float
    hold_ms: int
    workdir: Path


async def run_trial(target: Target, rate: int, cfg: Settings) -> Trial:
    calls = int(rate * cfg.duration)
    hold_s = cfg.hold_ms / 1000
    limit = int(rate * hold_s * 3) + 10
    bound = cfg.duration + hold_s + 30
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}-{rate}-", dir=cfg.workdir))
    uas_port = free_port()
    uas: SippRun | None = None
    try:
        await target.start(uas_port, work)  # inside: a slow start is stopped, never orphaned
        uas = await SippRun.start(SippOptions(
            scenario=UAS_SCENARIO, name="uas", local_port=uas_port, calls=calls,
            timeout_s=bound, cpu=SIPP_CPU), work)
        cpu0, t0 = target_cpu_seconds(target), time.monotonic()
        uac = await run_sipp(SippOptions(
            scenario="uac", name="uac", remote=f"127.0.0.1:{target.sip_port}",
            service=NUMBER, calls=calls, rate=rate, limit=limit, hold_ms=cfg.hold_ms,
            timeout_s=bound, cpu=SIPP_CPU), work)
        cpu1, t1 = target_cpu_seconds(target), time.monotonic()
        hwm = status_kb(target.pid, "VmHWM")
        served = await uas.wait(10)
    finally:
        if uas is not None:
            await uas.stop()
        await target.stop()
    return Trial(target.name, rate, calls, uac, served, 100 * (cpu1 - cpu0) / (t1 - t0), hwm)


async def passes(target: Target, rate: int, cfg: Settings, retries: int) -> bool:
    for attempt in range(retries + 1):
        try:
            trial = await run_trial(target, rate, cfg)
        except (RuntimeError, OSError) as exc:  # a start that failed under load: a failed trial
            print(f"{target.name} rate={rate} could not run: {exc}".splitlines()[0], flush=True)
            continue
        print(trial.line() + (f" (retry {attempt})" if attempt else ""), flush=True)
        if trial.passed:
            return True
    return False


async def find_max_rate(check: Callable[[int], Awaitable[bool]], start: int, grow: float,
                        max_rate: int, refine: int) -> int:
    """Grow the rate until a run fails, then bisect between the last pass and that fail."""
    good, bad, rate = 0, None, start
    while rate <= max_rate:
        if not await check(rate):
            bad = rate
            break
        good = rate
        rate = max(rate + 1, round(rate * grow))
    for _ in range(refine):
        if bad is None or bad - good <= max(5, good // 20):
            break
        mid = (good + bad) // 2
        if await check(mid):
            good = mid
        else:
            bad = mid
    return good


# ---- concurrent held calls --------------------------------------------------------------------
@dataclass(frozen=True)
class Held:
    calls: int
    reached: int
    rss_idle_kb: int
    rss_held_kb: int
    uac: SippResult

    @property
    def per_call_kb(self) -> float:
        return (self.rss_held_kb - self.rss_idle_kb) / max(1, self.reached)


async def hold_calls(target: MediasrvTarget, calls: int, rate: int, cfg: Settings) -> Held:
    """Ramp ``calls`` up at ``rate``, hold them all for a few seconds, measure RSS."""
    ramp = calls / rate
    hold_ms = int((ramp + 8.0) * 1000)
    bound = ramp * 2 + hold_ms / 1000 + 40
    work = Path(tempfile.mkdtemp(prefix="held-", dir=cfg.workdir))
    uas_port = free_port()
    await target.start(uas_port, work)
    uas: SippRun | None = None
    uac: SippRun | None = None
    try:
        await asyncio.sleep(1.0)
        rss_idle = status_kb(target.pid, "VmRSS")
        uas = await SippRun.start(SippOptions(
            scenario=UAS_SCENARIO, name="uas", local_port=uas_port, calls=calls,
            timeout_s=bound, cpu=SIPP_CPU), work)
        uac = await SippRun.start(SippOptions(
            scenario="uac", name="uac", remote=f"127.0.0.1:{target.sip_port}",
            service=NUMBER, calls=calls, rate=rate, limit=calls, hold_ms=hold_ms,
            timeout_s=bound, cpu=SIPP_CPU), work)
        reached, rss_held = await _sample_plateau(target, calls, ramp + 6.0)
        done = await uac.wait(bound + 10)
        print(f"mediasrv held: {done.describe()}", flush=True)
    finally:
        for run in (uac, uas):
            if run is not None:
                await run.stop()
        await target.stop()
    return Held(calls, reached, rss_idle, rss_held, done)


async def _sample_plateau(target: MediasrvTarget, calls: int, ramp_s: float) -> tuple[int, int]:
    """Wait until all calls are up (or the ramp is over), then take the RSS."""
    deadline = time.monotonic() + ramp_s
    active = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        with contextlib.suppress(OSError, ValueError):
            active = await asyncio.to_thread(target.active_calls)
        if active >= calls:
            break
    await asyncio.sleep(1.0)  # let the last calls' allocations settle
    rss = status_kb(target.pid, "VmRSS")
    with contextlib.suppress(OSError, ValueError):
        active = await asyncio.to_thread(target.active_calls)
    print(f"mediasrv held calls={active} rss_kb={rss}", flush=True)
    return active, rss


# ---- main -------------------------------------------------------------------------------------
def mediasrv_command() -> list[str]:
    exe = Path(sys.executable).parent / "mediasrv"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mediasrv"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short trials for a smoke test")
    p.add_argument("--targets", default="mediasrv,sippy",
                   help="CPS search for these (comma list: mediasrv,sippy; '' for none)")
    p.add_argument("--duration", type=float, help="seconds per trial (default 20; quick 5)")
    p.add_argument("--hold-ms", type=int, default=1000)
    p.add_argument("--start", type=int, help="first rate (default 100; quick 50)")
    p.add_argument("--grow", type=float, default=1.5)
    p.add_argument("--refine", type=int, help="bisection steps (default 3; quick 1)")
    p.add_argument("--max-rate", type=int, default=5000)
    p.add_argument("--rates", help="comma list: run exactly these rates instead of searching")
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--concurrent", type=int, help="held calls (default 10000; quick 1000)")
    p.add_argument("--no-cap", action="store_true",
                   help="hold --concurrent calls even beyond the open-files limit")
    p.add_argument("--concurrent-rate", type=int, default=0,
                   help="ramp rate for held calls (default: 80%% of mediasrv's cps, <= 500)")
    p.add_argument("--record", default="off", choices=["off", "both", "caller", "operator"])
    p.add_argument("--sippy-venv", type=Path, default=None,
                   help="Sippy's virtualenv (default $SIPPY_VENV, else created on first use "
                   "under ~/.cache/mediasrv/bench/sippy-venv)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--flow", choices=["realistic"], default=None,
                   help="issue 10: plain route vs the realistic flow vs Kamailio + rtpengine "
                   "(replaces --targets; no held-calls phase)")
    return p.parse_args(argv)


async def bench(args: argparse.Namespace, sippy_b2bua: Callable[[], Path]) -> int:
    quick = args.quick
    duration = args.duration or (5.0 if quick else 20.0)
    workdir = Path(tempfile.mkdtemp(prefix="sip-cps-"))
    cfg = Settings(duration=duration, hold_ms=args.hold_ms, workdir=workdir)
    nofile = raise_nofile()
    start = args.start or (50 if quick else 100)
    refine = args.refine if args.refine is not None else (1 if quick else 3)
    concurrent = args.concurrent if args.concurrent is not None else (1000 if quick else 10000)
    if args.flow:
        args.targets, concurrent = "mediasrv,mediasrv-flow,kamailio", 0
    print(f"# sip_cps {datetime.now(UTC):%Y-%m-%d %H:%M}Z on {machine()}; B2BUA on cpu "
          f"{B2BUA_CPU}, SIPp on cpu {SIPP_CPU}; {duration:g} s per trial, hold "
          f"{args.hold_ms} ms; open files {nofile}", flush=True)
    names = [t.strip() for t in args.targets.split(",") if t.strip()]
    mediasrv = MediasrvTarget(mediasrv_command(), args.record, (10000, 60998))
    targets: dict[str, Target] = {"mediasrv": mediasrv}
    if args.flow:
        targets["mediasrv-flow"] = MediasrvTarget(mediasrv_command(), args.record,
                                                  (10000, 60998), flow=True)
    best: dict[str, int] = {}
    try:
        for name in names:
            if name == "kamailio":
                try:
                    targets[name] = KamailioTarget((40000, 49999))
                except RuntimeError as exc:
                    print(f"kamailio: could not set up: {exc}", flush=True)
                    best[name] = 0
                    continue
            if name == "sippy":
                try:
                    targets[name] = SippyTarget(await asyncio.to_thread(sippy_b2bua))
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    print(f"sippy: could not set up: {exc}", flush=True)
                    best[name] = 0
                    continue
            target = targets[name]

            async def check(rate: int, target: Target = target) -> bool:
                return await passes(target, rate, cfg, args.retries)

            try:
                if args.rates:
                    rates = [int(r) for r in args.rates.split(",")]
                    best[name] = max([r for r in rates if await check(r)], default=0)
                else:
                    best[name] = await find_max_rate(check, start, args.grow, args.max_rate,
                                                     refine)
            except RuntimeError as exc:
                print(f"{name}: could not run: {exc}", flush=True)
                best[name] = 0
            print(f"{name}: max {best[name]} calls/s ({target.describe()})", flush=True)
        per_call = 0.0
        if concurrent > 0:
            found = best.get("mediasrv", 0)
            rate = args.concurrent_rate or (max(20, min(500, int(found * 0.8))) if found
                                            else 200)
            fit = (nofile - FD_RESERVE) // FDS_PER_CALL
            if concurrent > fit:
                print(f"# note: open-files limit {nofile} (hard; not raisable here) and "
                      f"{FDS_PER_CALL} sockets per anchored call (RTP+RTCP on 2 legs): "
                      f"{concurrent} held calls cannot fit in one process; "
                      + ("trying anyway (--no-cap)" if args.no_cap else
                         f"holding {fit} instead"), flush=True)
                if not args.no_cap:
                    concurrent = fit
            try:
                held = await hold_calls(mediasrv, concurrent, rate, cfg)
                per_call = held.per_call_kb
                print(f"mediasrv concurrent: wanted={held.calls} reached={held.reached} "
                      f"rss_idle_kb={held.rss_idle_kb} rss_held_kb={held.rss_held_kb} "
                      f"per_call_kb={per_call:.1f} ramp_rate={rate}", flush=True)
            except RuntimeError as exc:
                print(f"mediasrv concurrent: could not run: {exc}", flush=True)
    finally:
        if args.keep:
            print(f"# work files in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ms, sp = best.get("mediasrv", 0), best.get("sippy", 0)
    if args.flow:
        flow, kam = best.get("mediasrv-flow", 0), best.get("kamailio", 0)
        print(f"RESULT sip_cps_flows plain={ms} flow={flow} "
              f"ratio={flow / ms if ms else 0.0:.2f} kamailio={kam}", flush=True)
        return 0
    ratio = ms / sp if sp else 0.0
    print(f"RESULT sip_cps mediasrv={ms} sippy={sp} ratio={ratio:.2f} "
          f"rss_per_call_kb={per_call:.1f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import benchenv  # on sys.path when run as a script (see the top)

    args = parse_args(argv)
    venv = args.sippy_venv or benchenv.default_sippy_venv()
    return asyncio.run(bench(args, lambda: benchenv.ensure_sippy(venv)))


if __name__ == "__main__":
    sys.exit(main())
