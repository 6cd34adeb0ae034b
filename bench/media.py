"""Media relay benchmark: mediasrv's engine against rtpengine userspace, in the same run.

N concurrent bridged calls on loopback: each call has two legs and two fake phones; every
phone sends 50 packets/s of 172-byte PCMU (RTP header + 160 bytes) to its leg and receives
the other phone's stream relayed back (both directions, symmetric RTP). The phones are
``bench/rtpload.c`` (C, bounded in time, compiled at run time), pinned to CPU 0; the relay
under test runs pinned to CPU 1. We measure the relay process's CPU share over the load
window (utime+stime from /proc), loss, one-way latency p99 through the relay (send time in
the payload), and RSS per call. Runs, each with fresh processes:

1. mediasrv, Cython packet path on its engine thread (``CyThreadPacketPath``: epoll +
   recvmmsg over every socket, no GIL), no recording
2. the same with stereo recording of every call (``RecordMode.BOTH``, the product recorder:
   the ``recbuf`` timeline fed from C by the engine thread, files written by the kernel's C
   writer thread without the GIL); the relay child checks every file afterwards (a WAV whose
   header matches its length and the size the engine reported)
3. rtpengine userspace (Debian ``rtpengine-daemon``, ``--table=-1``), sessions opened with
   its ng protocol (bencode over UDP)
(optionally, ``--callbacks``: the same C code driven by ``loop.add_reader`` callbacks, plain
and recorded, and the engine thread paced (1 ms sleep between rounds); ``--python``: the
pure-Python reference packet path)

Last line: ``RESULT media calls=N cpu_per_100_streams=.. rtpengine_cpu_per_100_streams=..
ratio=.. loss=.. p99_ms=.. recorded=yes|no us_per_packet=.. packet_ratio=..`` for run 2 (run
1 with ``--no-record``). A stream is one direction of one call (2 per call). ``us_per_packet``
is the relay's CPU per packet delivered, and ``packet_ratio`` the same against rtpengine: on a
loaded machine the load generator falls behind (``send_lag``), fewer packets flow than 50 per
second per stream, and only the per-packet figures stay comparable.

``--scenario hold`` (issue 9 §2): N callers each hear looping hold music with no partner.
The callers are ``bench/rtpsink.c`` (C, pinned to CPU 0; they only listen, and measure the
pacing of what arrives against the 20 ms grid from the kernel's receive timestamps); the
engine (the default ``CyThreadPacketPath``: playout paced and sent in C by the engine
thread) runs pinned to CPU 1, and, in the same run, rtpengine playing the same file to the
same number of calls with its ng ``play media`` command. Last line: ``RESULT media_hold
calls=N cpu_per_100_streams=.. rtpengine_cpu_per_100_streams=.. ratio=.. pacing_p99_ms=..
python_calls_per_packet=.. rss_per_call_kb=..`` (a stream is one held caller).

Usage: python bench/media.py [--scenario relay|hold] [--calls 500] [--seconds 20]
       [--no-record] [--no-rtpengine] [--callbacks] [--python]; needs gcc and taskset. rtpengine (for the comparison) is
       installed on first use when absent (``apt-get install rtpengine-daemon``, as root or
       with sudo). Any python 3 will do: the script re-runs itself under the project's
       virtualenv when that python has no installed mediasrv, and the relay child imports the
       installed package too (``PYTHONSAFEPATH=1``, no ``PYTHONPATH``; bench/benchenv.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
ENGINE_PORTS = (20000, 39998)  # the relay's RTP port range (RTP+RTCP pairs)
# The phones' SDP ports (2 per call) start at a base chosen per run (``--phone-base``, else
# at random in PHONE_RANGE), so that two runs on one machine do not send into each other's
# phones: the relay sends to the SDP port until a phone's first packet latches it. The relay
# child learns the base from BENCH_PHONE_BASE.
PHONE_RANGE = (40000, 65000)
PHONE_BASE = int(os.environ.get("BENCH_PHONE_BASE", "56000"))
NG_PORT = 22223
RTPE_PORTS = (30000, 39999)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The phones share this many sockets with sendmmsg/recvmmsg (see rtpload.c), so that the load
# generator is not the bottleneck; the relays latch to them (symmetric RTP).
PHONE_SOCKETS = 32
# The machine is shared: a higher CFS weight (root only) keeps other work from inflating the
# latency figures; CPU shares are per-process CPU time either way.
PRIORITY = ["nice", "-n", "-10"] if os.geteuid() == 0 else []


@dataclass
class RunResult:
    name: str
    calls: int
    cpu_pct: float
    loss: float
    p50_ms: float
    p99_ms: float
    rss_per_call_kb: float
    load_line: str
    wall_s: float = 0.0  # the load window the CPU share was measured over
    files_ok: int = 0  # recorded runs: calls whose WAV the relay child found whole

    @property
    def streams(self) -> int:
        return 2 * self.calls

    @property
    def us_per_packet(self) -> float:
        """Relay CPU per packet it delivered: unlike the per-stream figure, it holds when a
        starved load generator (a loaded machine) sends fewer packets than 50 per second."""
        received = parse_load(self.load_line).get("received", 0.0)
        cpu_s = self.cpu_pct / 100.0 * self.wall_s
        return cpu_s / received * 1e6 if received else float("nan")

    @property
    def cpu_per_100_streams(self) -> float:
        return self.cpu_pct * 100.0 / self.streams


# ---- the relay under test: mediasrv's MediaEngine in its own process -----------------------


def serve(calls: int, path_name: str, record_dir: str | None, portfile: str) -> None:
    """Build N bridged calls in a MediaEngine and relay until stdin closes."""
    import uvloop

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if path_name.startswith("hold:"):  # --scenario hold: record_dir is the music file
        assert record_dir is not None
        uvloop.run(_serve_hold(calls, path_name.removeprefix("hold:"), portfile, record_dir))
        return
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        with cProfile.Profile() as prof:
            uvloop.run(_serve(calls, path_name, record_dir, portfile))
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(12)
        return
    uvloop.run(_serve(calls, path_name, record_dir, portfile))


async def _serve(calls: int, path_name: str, record_dir: str | None, portfile: str) -> None:
    from mediasrv.media import packet_path_cy, packet_path_py, sdp
    from mediasrv.media.api import Direction, LegRole, RecordMode
    from mediasrv.media.codec import Codec
    from mediasrv.media.engine import MediaEngine

    class Threaded(packet_path_cy.CyThreadPacketPath):
        PACE_US = 1000 if path_name.endswith("-paced") else 0

    factory: type = packet_path_py.PyPacketPath
    if path_name == "cython":
        factory = packet_path_cy.CyPacketPath
    elif path_name.startswith("cython-thread"):
        factory = Threaded

    loop = asyncio.get_running_loop()
    rss_base = _rss_kb(os.getpid())
    engine = MediaEngine(
        loop, HOST, *ENGINE_PORTS, lambda _e: None, no_rtp_timeout=3600.0,
        packet_path_factory=factory,
    )  # fmt: skip
    lines = []
    for k in range(calls):
        call_id = f"bench-{k}"
        caller_phone, operator_phone = PHONE_BASE + 2 * k, PHONE_BASE + 2 * k + 1
        caller = engine.allocate(call_id, LegRole.CALLER)
        operator = engine.allocate(call_id, LegRole.OPERATOR)
        offer = sdp.build_offer(HOST, caller_phone, [Codec.PCMU], 101, Direction.SENDRECV)
        caller_offer = offer.to_bytes()
        operator_offer = engine.offer(operator, like=caller_offer)
        answer, _ = sdp.answer_offer(sdp.parse(operator_offer), HOST, operator_phone, [Codec.PCMU])
        engine.accept_answer(operator, answer.to_bytes())
        engine.answer(caller, caller_offer, prefer=["PCMU"])
        engine.bridge(caller, operator)
        if record_dir:
            engine.record(call_id, Path(record_dir) / f"{call_id}.wav", RecordMode.BOTH)
        lines.append(
            f"{caller_phone} {caller.local_port}\n{operator_phone} {operator.local_port}\n"
        )
    Path(portfile).write_text("".join(lines))
    ticks = _time_ticks(engine)
    import mediasrv

    where = Path(mediasrv.__file__).resolve().parent
    print(f"READY engine={engine.engine_name} rss_base_kb={rss_base} mediasrv={where}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)
    await stop.wait()
    recorded = 0
    reports = [engine.release(f"bench-{k}") for k in range(calls)]
    await engine.close()  # the writer's last pass: every file is closed
    good = 0
    for report in reports:
        recorded += report.recording_bytes
        good += report.recording is not None and _valid_wav(
            report.recording, report.recording_bytes
        )
    worst = max(ticks, default=0.0) * 1000
    mean = sum(ticks) / len(ticks) * 1000 if ticks else 0.0
    print(
        f"DONE recorded_bytes={recorded} files_ok={good if record_dir else 0} "
        f"tick_ms_avg={mean:.2f} tick_ms_max={worst:.2f}", flush=True
    )  # fmt: skip


def _valid_wav(path: Path, size: int) -> bool:
    """The file is as long as the engine said, and its header says so too."""
    import wave

    try:
        with wave.open(str(path), "rb") as w:
            frames = w.getnframes() * w.getnchannels() * w.getsampwidth()
        return path.stat().st_size == size and frames == size - 44 and size > 44
    except (OSError, EOFError, wave.Error):
        return False


def _time_ticks(engine: object) -> list[float]:
    """Instrument the engine's periodic timer: how long it holds the event loop each tick
    (recorder commits, no-RTP checks), during which no datagram is relayed."""
    durations: list[float] = []
    original = engine._tick  # type: ignore[attr-defined]

    def timed() -> None:
        t = time.perf_counter()
        original()
        durations.append(time.perf_counter() - t)

    engine._tick = timed  # type: ignore[attr-defined]
    return durations


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int) -> int:
    """utime+stime of a process, all threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _thread_ticks(pid: int) -> dict[str, int]:
    """utime+stime per thread name (the recording writer names itself mediasrv-rec)."""
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


# ---- rtpengine, driven over its ng protocol ------------------------------------------------


def bencode(x: object) -> bytes:
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, list):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(x)


def bdecode(b: bytes, i: int = 0) -> tuple[object, int]:
    c = b[i : i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1 : j]), j + 1
    if c in (b"l", b"d"):
        i += 1
        items: list[object] = []
        while b[i : i + 1] != b"e":
            v, i = bdecode(b, i)
            items.append(v)
        if c == b"l":
            return items, i + 1
        pairs = zip(items[::2], items[1::2], strict=True)
        return {bytes(k).decode(): v for k, v in pairs}, i + 1  # type: ignore[call-overload]
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1 : j + 1 + n], j + 1 + n


class Ng:
    def __init__(self, port: int = NG_PORT) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2)
        self.seq = 0
        self.port = port

    def __call__(self, cmd: dict[str, object]) -> dict[str, object]:
        self.seq += 1
        cookie = b"%d_%d" % (os.getpid(), self.seq)
        for attempt in range(3):  # a busy rtpengine may miss one (UDP): resend, same cookie
            self.sock.sendto(cookie + b" " + bencode(cmd), (HOST, self.port))
            try:
                data = self.sock.recv(65535)
                break
            except TimeoutError:
                if attempt == 2:
                    raise
        got, rest = data.split(b" ", 1)
        assert got == cookie, (got, cookie)
        reply, _ = bdecode(rest)
        assert isinstance(reply, dict) and reply.get("result") == b"ok", reply
        return reply


def _sdp(port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )


def _media_port(sdp: object) -> int:
    assert isinstance(sdp, bytes)
    for line in sdp.decode().splitlines():
        if line.startswith("m=audio"):
            return int(line.split()[1])
    raise ValueError("no m=audio line in rtpengine's SDP")


def rtpengine_sessions(calls: int, portfile: Path) -> None:
    ng = Ng()
    lines = []
    for k in range(calls):
        caller_phone, operator_phone = PHONE_BASE + 2 * k, PHONE_BASE + 2 * k + 1
        cid = f"bench-{k}"
        r1 = ng(
            {"command": "offer", "call-id": cid, "from-tag": f"ft{k}", "sdp": _sdp(caller_phone)}
        )
        r2 = ng({
            "command": "answer", "call-id": cid, "from-tag": f"ft{k}", "to-tag": f"tt{k}",
            "sdp": _sdp(operator_phone),
        })  # fmt: skip
        # The operator sends to the port in the offer rtpengine forwarded; the caller to the
        # port in the answer.
        lines.append(f"{caller_phone} {_media_port(r2['sdp'])}\n")
        lines.append(f"{operator_phone} {_media_port(r1['sdp'])}\n")
    portfile.write_text("".join(lines))


# ---- one run -------------------------------------------------------------------------------


def parse_load(line: str) -> dict[str, float]:
    out = {}
    for part in line.split():
        key, _, value = part.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def run_load(
    rtpload: Path, portfile: Path, seconds: float, pid: int
) -> tuple[float, str, float]:  # fmt: skip
    """Run the phones on CPU 0; return (relay CPU % of one core, rtpload's figures line,
    the window's wall seconds)."""
    c0, t0, th0 = _cpu_ticks(pid), time.monotonic(), _thread_ticks(pid)
    out = subprocess.run(
        [*PRIORITY, "taskset", "-c", "0", str(rtpload), str(portfile), str(seconds), "50", "1", str(PHONE_SOCKETS)],
        capture_output=True, text=True, check=False, timeout=seconds + 30,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"rtpload failed: {out.stderr.strip()}")
    c1, t1, th1 = _cpu_ticks(pid), time.monotonic(), _thread_ticks(pid)
    cpu = 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0)
    shares = {
        name: 100.0 * (ticks - th0.get(name, 0)) / CLK_TCK / (t1 - t0)
        for name, ticks in th1.items()
    }
    threads = " ".join(
        f"cpu_{n.replace('-', '_')}={v:.1f}" for n, v in sorted(shares.items()) if v >= 0.1
    )
    return cpu, f"{out.stdout.strip()} {threads}", t1 - t0


def run_mediasrv(
    rtpload: Path, work: Path, calls: int, seconds: float, path_name: str, record: bool,
    env: dict[str, str],
) -> RunResult:  # fmt: skip
    portfile = work / f"ports-{path_name}-{int(record)}.txt"
    record_dir = work / f"rec-{path_name}"
    cmd = [sys.executable, str(Path(__file__)), "serve", str(calls), path_name, str(portfile)]
    cmd = [*PRIORITY, "taskset", "-c", "1", *cmd]
    if record:
        record_dir.mkdir(exist_ok=True)
        cmd.append(str(record_dir))
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = proc.stdout.readline().strip()
        if not ready.startswith("READY"):
            raise RuntimeError(f"mediasrv relay failed to start: {ready!r}")
        rss_base = int(parse_load(ready)["rss_base_kb"])
        if path_name == "cython-thread" and not record:
            print(f"  relay child: {ready.removeprefix('READY ')}", flush=True)
        time.sleep(0.5)
        cpu, line, wall = run_load(rtpload, portfile, seconds, proc.pid)
        rss = _rss_kb(proc.pid)
        proc.stdin.close()
        done = proc.stdout.readline().strip()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    figures = parse_load(line)
    if record:
        done_fields = parse_load(done)
        figures["files_ok"] = done_fields.get("files_ok", 0.0)
    name = f"mediasrv-{path_name}{'+rec' if record else ''}"
    print(f"  {name}: cpu={cpu:.1f}% {line} {done}", flush=True)
    if record:
        shutil.rmtree(record_dir, ignore_errors=True)
    return RunResult(name, calls, cpu, figures["loss"], figures["p50_ms"], figures["p99_ms"],
                     (rss - rss_base) / calls, line, wall,
                     int(figures.get("files_ok", 0)))  # fmt: skip


def run_rtpengine(
    rtpload: Path, work: Path, calls: int, seconds: float, binary: str
) -> RunResult:  # fmt: skip
    log = (work / "rtpengine.log").open("w")
    cmd = [
        *PRIORITY, "taskset", "-c", "1", binary, "--config-file=none", "-f", "-E", "--table=-1",
        f"--interface={HOST}", f"--listen-ng={HOST}:{NG_PORT}",
        f"--port-min={RTPE_PORTS[0]}", f"--port-max={RTPE_PORTS[1]}", "-L", "4", "--timeout=600",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        portfile = work / "ports-rtpengine.txt"
        rss_base = _rss_kb(proc.pid)
        rtpengine_sessions(calls, portfile)
        time.sleep(0.5)
        cpu, line, wall = run_load(rtpload, portfile, seconds, proc.pid)
        rss = _rss_kb(proc.pid)
    finally:
        proc.kill()  # rtpengine's SIGTERM shutdown is slow; nothing to keep
        proc.wait()
        log.close()
    figures = parse_load(line)
    print(f"  rtpengine: cpu={cpu:.1f}% {line}", flush=True)
    return RunResult("rtpengine", calls, cpu, figures["loss"], figures["p50_ms"], figures["p99_ms"],
                     (rss - rss_base) / calls, line, wall)  # fmt: skip


# ---- --scenario hold: callers on hold, looping music, no partner ---------------------------

HOLD_NG_PORT = 21223  # rtpengine's ng port for the hold run (not the relay run's)
MOH = Path("/usr/share/asterisk/moh/manolo_camp-morning_coffee.wav")  # CC-BY-SA, opsound.org


def hold_music(work: Path) -> Path:
    """Asterisk's hold music when installed (asterisk-moh-opsound-wav, CC-BY-SA), else 10 s
    of generated chords: 8 kHz mono 16-bit either way."""
    if MOH.exists():
        return MOH
    import wave

    out = work / "moh.wav"
    t = [i / 8000 for i in range(80000)]
    import math

    pcm = bytearray()
    for i, x in enumerate(t):
        chord = (220, 277, 330) if (i // 16000) % 2 == 0 else (196, 247, 294)
        v = sum(math.sin(2 * math.pi * f * x) for f in chord) * 2500 * (0.6 + 0.4 * math.sin(x))
        pcm += int(v).to_bytes(2, "little", signed=True)
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(pcm))
    return out


async def _serve_hold(calls: int, path_name: str, portfile: str, music: str) -> None:
    from mediasrv.media import packet_path_cy, packet_path_py, sdp
    from mediasrv.media.api import Direction, LegRole
    from mediasrv.media.codec import Codec
    from mediasrv.media.engine import MediaEngine

    factory: type = {
        "python": packet_path_py.PyPacketPath,
        "cython": packet_path_cy.CyPacketPath,
    }.get(path_name, packet_path_cy.CyThreadPacketPath)
    loop = asyncio.get_running_loop()
    ports = [int(line) for line in Path(portfile).read_text().split()][:calls]
    rss_base = _rss_kb(os.getpid())
    engine = MediaEngine(
        loop, HOST, *ENGINE_PORTS, lambda _e: None, no_rtp_timeout=3600.0,
        packet_path_factory=factory,
    )  # fmt: skip
    await engine.preload(Path(music))
    path = engine._path  # the bench reads the packet path's counters
    for k, port in enumerate(ports):
        leg = engine.allocate(f"hold-{k}", LegRole.CALLER)
        offer = sdp.build_offer(HOST, port, [Codec.PCMU], 101, Direction.SENDRECV)
        engine.answer(leg, offer.to_bytes())
        engine.play(leg, [Path(music)], loop=True)
    calls0, (rx0, tx0) = path.python_calls(), path.packet_totals()
    print(f"READY engine={engine.engine_name} rss_base_kb={rss_base}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def on_stdin() -> None:  # "mark": the measured window starts; anything else (EOF) stops
        if sys.stdin.readline().strip() == "mark" and hasattr(path, "lateness"):
            path.lateness(reset=True)
        else:
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stop.wait()
    calls1, (rx1, tx1) = path.python_calls(), path.packet_totals()
    late = _lateness_figures(path.lateness()) if hasattr(path, "lateness") else ""
    for k in range(len(ports)):
        engine.release(f"hold-{k}")
    await engine.close()
    print(
        f"DONE python_calls={calls1 - calls0} packets_out={tx1 - tx0} packets_in={rx1 - rx0}"
        f"{late}",
        flush=True,
    )


def _lateness_figures(hist: tuple[float, float, list[int]]) -> str:
    """Engine-side pacing: each frame's send time minus its own grid time, recorded by the
    engine thread (cext.relay.Relay.lateness). Unlike the sink's figure it names the cause:
    a late send by the engine, not delivery to the sink; bins are 50 µs (upper edges)."""
    width, low, counts = hist
    total = sum(counts)
    if not total:
        return ""

    def quantile(q: float) -> float:
        seen = 0
        for i, c in enumerate(counts):
            seen += c
            if seen >= q * total:
                return (low + (i + 1) * width) * 1e3
        return float("nan")

    over = sum(c for i, c in enumerate(counts) if low + i * width >= 0.002) / total
    return (
        f" engine_frames={total} engine_late_p50_ms={quantile(0.5):.3f}"
        f" engine_late_p99_ms={quantile(0.99):.3f} engine_late_p999_ms={quantile(0.999):.3f}"
        f" engine_late_over_2ms={over:.5f}"
    )


@dataclass
class HoldResult:
    name: str
    calls: int
    cpu_pct: float
    sink_line: str
    rss_per_call_kb: float
    wall_s: float
    python_calls_per_packet: float = float("nan")

    @property
    def cpu_per_100_streams(self) -> float:
        return self.cpu_pct * 100.0 / self.calls

    @property
    def us_per_packet(self) -> float:
        """CPU per packet that arrived in the window (holds when a loaded machine makes a
        sender fall short of 50 packets/s per caller)."""
        measured = parse_load(self.sink_line).get("measured", 0.0)
        return self.cpu_pct / 100.0 * self.wall_s / measured * 1e6 if measured else float("nan")

    @property
    def pacing_p99_ms(self) -> float:
        return parse_load(self.sink_line).get("pacing_p99_ms", float("nan"))


def start_sink(
    rtpsink: Path, work: Path, calls: int, seconds: float, tag: str
) -> tuple[subprocess.Popen[str], Path]:
    portfile = work / f"sink-{tag}.txt"
    sink = subprocess.Popen(
        [*PRIORITY, "taskset", "-c", "0", str(rtpsink), str(calls), str(portfile), str(seconds), "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    for _ in range(300):
        if portfile.exists() and len(portfile.read_text().split()) == calls:
            break
        time.sleep(0.05)
    else:
        sink.kill()
        raise RuntimeError("rtpsink did not bind its sockets")
    return sink, portfile


def measure_sink(
    sink: subprocess.Popen[str],
    pid: int,
    seconds: float,
    server: subprocess.Popen[str] | None = None,
) -> tuple[float, str, float]:
    """Tell the sink to start; return (CPU % of one core of ``pid`` over the window, the
    sink's figures line, the window's wall seconds). ``server`` (mediasrv) is told "mark"
    when the window starts, so its own pacing figures cover the same window."""
    assert sink.stdin is not None and sink.stdout is not None
    sink.stdin.write("go\n")
    sink.stdin.flush()
    time.sleep(1.0)  # the sink's warm-up
    if server is not None and server.stdin is not None:
        server.stdin.write("mark\n")
        server.stdin.flush()
    c0, t0 = _cpu_ticks(pid), time.monotonic()
    line = sink.stdout.readline().strip()
    c1, t1 = _cpu_ticks(pid), time.monotonic()
    sink.wait(timeout=30)
    if not line:
        raise RuntimeError("rtpsink printed nothing")
    return 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0), line, t1 - t0


def run_hold_mediasrv(
    rtpsink: Path, work: Path, calls: int, seconds: float, music: Path, env: dict[str, str],
    path_name: str = "cython-thread",
) -> HoldResult:  # fmt: skip
    sink, portfile = start_sink(rtpsink, work, calls, seconds, path_name)
    cmd = [sys.executable, str(Path(__file__)), "serve", str(calls), f"hold:{path_name}",
           str(portfile), str(music)]  # fmt: skip
    proc = subprocess.Popen(
        [*PRIORITY, "taskset", "-c", "1", *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = proc.stdout.readline().strip()
        if not ready.startswith("READY"):
            raise RuntimeError(f"mediasrv hold server failed to start: {ready!r}")
        rss_base = int(parse_load(ready)["rss_base_kb"])
        cpu, line, wall = measure_sink(sink, proc.pid, seconds, proc)
        rss = _rss_kb(proc.pid)
        proc.stdin.close()
        done = proc.stdout.readline().strip()
        proc.wait(timeout=60)
    finally:
        for p in (proc, sink):
            if p.poll() is None:
                p.kill()
    figures = parse_load(done)
    per_packet = figures.get("python_calls", 0.0) / max(1.0, figures.get("packets_out", 0.0))
    name = f"mediasrv-{path_name}"
    print(f"  {name}: cpu={cpu:.1f}% {line} {done}", flush=True)
    return HoldResult(name, calls, cpu, line, (rss - rss_base) / calls, wall, per_packet)


def run_hold_rtpengine(
    rtpsink: Path, work: Path, calls: int, seconds: float, music: Path, binary: str
) -> HoldResult:  # fmt: skip
    log = (work / "rtpengine-hold.log").open("w")
    cmd = [
        *PRIORITY, "taskset", "-c", "1", binary, "--config-file=none", "-f", "-E", "--table=-1",
        f"--interface={HOST}", f"--listen-ng={HOST}:{HOLD_NG_PORT}",
        f"--port-min={RTPE_PORTS[0]}", f"--port-max={RTPE_PORTS[1]}", "-L", "4", "--timeout=600",
    ]  # fmt: skip
    sink, portfile = start_sink(rtpsink, work, calls, seconds, "rtpengine")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)
        rss_base = _rss_kb(proc.pid)
        ng = Ng(HOLD_NG_PORT)
        for k, port in enumerate(int(p) for p in portfile.read_text().split()):
            cid = f"hold-{k}"
            ng({"command": "offer", "call-id": cid, "from-tag": f"ft{k}", "sdp": _sdp(port)})
            ng({
                "command": "answer", "call-id": cid, "from-tag": f"ft{k}", "to-tag": f"tt{k}",
                "sdp": _sdp(9),  # the held caller's partner: nobody (discard port)
            })  # fmt: skip
            # Played to the caller (from-tag), looping for the whole run.
            ng({"command": "play media", "call-id": cid, "from-tag": f"ft{k}",
                "file": str(music), "repeat-times": 1000})  # fmt: skip
        cpu, line, wall = measure_sink(sink, proc.pid, seconds)
        rss = _rss_kb(proc.pid)
    finally:
        for p in (proc, sink):
            if p.poll() is None:
                p.kill()
        proc.wait()
        log.close()
    print(f"  rtpengine play media: cpu={cpu:.1f}% {line}", flush=True)
    return HoldResult("rtpengine-play-media", calls, cpu, line, (rss - rss_base) / calls, wall)


def main_hold(args: argparse.Namespace, rtpengine: str | None, child_env: dict[str, str]) -> int:
    print(f"media bench, hold: {args.calls} callers hear looping hold music, no partner, "
          f"{args.seconds:.0f} s each run, engine on CPU 1, callers on CPU 0", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mediabench-hold-") as tmp:
        work = Path(tmp)
        rtpsink = work / "rtpsink"
        subprocess.run(["gcc", "-O2", "-o", str(rtpsink), str(HERE / "rtpsink.c"), "-lm"],
                       check=True)  # fmt: skip
        music = hold_music(work)
        plan = ["cython-thread"] + (["cython"] if args.callbacks else [])
        plan += ["python"] if args.python else []
        results = [
            run_hold_mediasrv(rtpsink, work, args.calls, args.seconds, music, child_env, name)
            for name in plan
        ]
        rtpe = None
        if rtpengine is not None:
            rtpe = run_hold_rtpengine(rtpsink, work, args.calls, args.seconds, music, rtpengine)
    print(f"{'run':<28}{'cpu%':>7}{'cpu/100 streams':>17}{'us/pkt':>8}{'pacing p99 ms':>15}"
          f"{'py calls/pkt':>14}{'KB/call':>9}")  # fmt: skip
    for r in [*results, *([rtpe] if rtpe else [])]:
        print(f"{r.name:<28}{r.cpu_pct:>7.1f}{r.cpu_per_100_streams:>17.2f}{r.us_per_packet:>8.2f}"
              f"{r.pacing_p99_ms:>15.3f}{r.python_calls_per_packet:>14.4f}"
              f"{r.rss_per_call_kb:>9.1f}")  # fmt: skip
    main_run = results[0]
    rtpe_cpu = rtpe.cpu_per_100_streams if rtpe else float("nan")
    ratio = main_run.cpu_per_100_streams / rtpe_cpu if rtpe else float("nan")
    pkt_ratio = main_run.us_per_packet / rtpe.us_per_packet if rtpe else float("nan")
    print(
        f"RESULT media_hold calls={args.calls} "
        f"cpu_per_100_streams={main_run.cpu_per_100_streams:.2f} "
        f"rtpengine_cpu_per_100_streams={rtpe_cpu:.2f} ratio={ratio:.2f} "
        f"pacing_p99_ms={main_run.pacing_p99_ms:.3f} "
        f"python_calls_per_packet={main_run.python_calls_per_packet:.4f} "
        f"rss_per_call_kb={main_run.rss_per_call_kb:.1f} "
        f"us_per_packet={main_run.us_per_packet:.2f} packet_ratio={pkt_ratio:.2f}"
    )
    return 0


def choose_phone_base(base: int | None, calls: int) -> None:
    """Set this run's phone port base (here and, through the environment, in the relay child)."""
    global PHONE_BASE
    if base is None:
        import random

        base = random.randrange(PHONE_RANGE[0], PHONE_RANGE[1] - 2 * calls, 2)
    if not PHONE_RANGE[0] <= base <= PHONE_RANGE[1] - 2 * calls:
        raise SystemExit(
            f"--phone-base {base}: {calls} calls need {PHONE_RANGE[0]}..{PHONE_RANGE[1]}"
        )
    PHONE_BASE = base
    os.environ["BENCH_PHONE_BASE"] = str(base)
    print(f"bench: phone SDP ports {base}..{base + 2 * calls - 1}", flush=True)


def build_rtpload(work: Path) -> Path:
    out = work / "rtpload"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / "rtpload.c")], check=True)
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        calls, path_name, portfile = int(argv[1]), argv[2], argv[3]
        serve(calls, path_name, argv[4] if len(argv) > 4 else None, portfile)
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenario", choices=("relay", "hold"), default="relay")
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--no-record", action="store_true", help="skip the recorded run")
    ap.add_argument("--no-rtpengine", action="store_true")
    ap.add_argument(
        "--phone-base", type=int, default=None,
        help="first SDP port of the phones (2 per call); default: chosen at random per run",
    )  # fmt: skip
    ap.add_argument("--python", action="store_true", help="also run the pure-Python packet path")
    ap.add_argument(
        "--callbacks", action="store_true",
        help="also run the Cython packet path driven by loop.add_reader callbacks "
        "(plain and recorded) and a paced engine thread",
    )  # fmt: skip
    args = ap.parse_args(argv)
    if 2 * args.calls > PHONE_RANGE[1] - PHONE_RANGE[0] or (
        4 * args.calls > ENGINE_PORTS[1] - ENGINE_PORTS[0]
    ):
        ap.error("too many calls for the port ranges")
    choose_phone_base(args.phone_base, args.calls)
    import benchenv  # on sys.path when run as a script (see the top)

    rtpengine = None if args.no_rtpengine else benchenv.ensure_rtpengine()
    # The relay child must import the installed mediasrv (compiled kernels), not the tree.
    child_env = benchenv.child_env()
    if args.scenario == "hold":
        return main_hold(args, rtpengine, child_env)
    print(f"media bench: {args.calls} calls = {2 * args.calls} streams, {args.seconds:.0f} s each run, "
          f"relay on CPU 1, phones on CPU 0", flush=True)  # fmt: skip
    # (packet path, recorded) per run; the first recorded run (or the first run with
    # --no-record) is the RESULT: the engine thread, as decided in RESULTS_media.md.
    plan = [("cython-thread", False)]
    if not args.no_record:
        plan += [("cython-thread", True)]
    if args.callbacks:
        plan += [("cython", False), ("cython-thread-paced", False)]
        if not args.no_record:
            plan += [("cython", True)]
    if args.python:
        plan.append(("python", False))
    with tempfile.TemporaryDirectory(prefix="mediabench-") as tmp:
        work = Path(tmp)
        rtpload = build_rtpload(work)
        results = [
            run_mediasrv(rtpload, work, args.calls, args.seconds, path, rec, child_env)
            for path, rec in plan
        ]
        rtpe = None
        if rtpengine is not None:
            rtpe = run_rtpengine(rtpload, work, args.calls, args.seconds, rtpengine)
        elif not args.no_rtpengine:
            print("  rtpengine unavailable (see the bench: line above): no comparison")
    print(
        f"{'run':<34}{'cpu%':>7}{'cpu/100 streams':>17}{'us/pkt':>8}{'loss':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'KB/call':>9}"
    )
    for r in [*results, *([rtpe] if rtpe else [])]:
        print(f"{r.name:<34}{r.cpu_pct:>7.1f}{r.cpu_per_100_streams:>17.2f}{r.us_per_packet:>8.2f}"
              f"{r.loss:>10.5f}{r.p50_ms:>9.3f}{r.p99_ms:>9.3f}{r.rss_per_call_kb:>9.1f}")  # fmt: skip
    main_run = results[0] if args.no_record else results[1]
    recorded = "no"
    if not args.no_record:
        # "yes" only if every call's file was written whole (checked by the relay child).
        ok = main_run.files_ok == args.calls
        recorded = "yes" if ok else f"broken({main_run.files_ok}/{args.calls})"
    rtpe_cpu = rtpe.cpu_per_100_streams if rtpe else float("nan")
    ratio = main_run.cpu_per_100_streams / rtpe_cpu if rtpe else float("nan")
    pkt_ratio = main_run.us_per_packet / rtpe.us_per_packet if rtpe else float("nan")
    print(
        f"RESULT media calls={args.calls} cpu_per_100_streams={main_run.cpu_per_100_streams:.2f} "
        f"rtpengine_cpu_per_100_streams={rtpe_cpu:.2f} ratio={ratio:.2f} loss={main_run.loss:.5f} "
        f"p99_ms={main_run.p99_ms:.3f} recorded={recorded} "
        f"us_per_packet={main_run.us_per_packet:.2f} packet_ratio={pkt_ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
