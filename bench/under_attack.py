"""Legitimate calls while the server is attacked (issue 8 benchmark).

One ``mediasrv run`` (the installed package) with a carrier trunk (127.0.0.1/32) and a digest
trunk (127.0.0.4/32, ``inbound_auth``). For ``--duration`` seconds SIPp places calls at
``--cps`` from the carrier trunk through the server to a SIPp uas. After ``--warmup`` seconds,
for ``--attack`` seconds, from other loopback sources at once:

* an OPTIONS/INVITE flood at up to ``--flood-rps`` requests/s from ``--flood-sources``
  addresses (127.0.0.11...), prebuilt datagrams of distinct transactions, never ACKed;
* a digest brute force from 127.0.0.4: INVITE, 401, INVITE with a wrong SHA-256 response...;
* ``--tcp`` idle TCP connections (127.0.0.50...), opened and left silent.

The server runs on CPU 1 and everything else on CPU 0 (``taskset``), as in sip_cps.py. The
flood and the brute force run in their own processes; the two SIPp peers get a higher CPU
priority (nice -10, when root): on a real network the attackers' CPUs are not the legitimate
peers', so the flooder must not starve them here. The server keeps normal priority. Everything is bounded in time and every
process is stopped by PID. Last line::

    RESULT under_attack legit_cps=<n> legit_failed=<n> flood_rps=<n> flood_answered=<n>
        cpu_pct=<x> rss_mb=<x>

``legit_cps`` is successful calls per second over the legitimate run, ``flood_answered`` the
datagrams that came back to the flooders, ``cpu_pct`` the server's CPU over the attack window
(100 = one core), ``rss_mb`` its resident memory at the end (after the attack, idle again);
the lines before say the peak and the growth against the RSS before the attack.

Needs SIPp (``apt-get install -y sip-tester``: installed when absent and running as root).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing as mp
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventT
from pathlib import Path

NUMBER = "0312345678"
TRUNK_SOURCE = "127.0.0.1"
BRUTE_SOURCE = "127.0.0.4"
BRUTE_USER, BRUTE_PASSWORD, REALM = "pbx", "correct-horse-battery", "mediasrv"
SERVER_CPU, OTHERS_CPU = "1", "0"


def ensure_sipp() -> None:
    if shutil.which("sipp"):
        return
    if os.geteuid() != 0:
        sys.exit("under_attack: sipp missing; run `apt-get install -y sip-tester` as root")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "sip-tester"], check=True, env=env)


# --------------------------------------------------------------------------- server process


def status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- SIP bytes

SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def request(
    method: str, src: tuple[str, int], port: int, call_id: str = "", auth: str = "", cseq: int = 1
) -> bytes:
    body = SDP.format(ip=src[0]) if method == "INVITE" else ""
    lines = [
        f"{method} sip:{NUMBER}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {src[0]}:{src[1]};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f"From: <sip:attacker@{src[0]}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{NUMBER}@127.0.0.1>",
        f"Call-ID: {call_id or secrets.token_hex(10)}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:attacker@{src[0]}:{src[1]}>",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines += [f"Content-Length: {len(body)}", "", body]
    return "\r\n".join(lines).encode()


# --------------------------------------------------------------------------- attackers


def flood(port: int, sources: list[str], rps: float, seconds: float, out: mp.Queue[object],
          go: EventT) -> None:
    """Prebuilt OPTIONS and INVITEs (half each) from ``sources``, paced in 1 ms ticks."""
    socks = []
    for host in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.setblocking(False)
        socks.append(s)
    pool = [
        [request("OPTIONS" if i % 2 else "INVITE", s.getsockname(), port) for i in range(500)]
        for s in socks
    ]
    go.wait()
    sent = answered = 0
    start = time.monotonic()
    end = start + seconds
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rps)
        while sent < due:
            k = sent % len(socks)
            try:
                socks[k].sendto(pool[k][i % 500], ("127.0.0.1", port))
            except BlockingIOError:
                break
            sent += 1
            if k == len(socks) - 1:
                i += 1
        for s in socks:
            while True:
                try:
                    s.recv(65535)
                except BlockingIOError:
                    break
                answered += 1
        time.sleep(0.001)
    time.sleep(0.5)  # late answers still count
    for s in socks:
        while True:
            try:
                s.recv(65535)
            except BlockingIOError:
                break
            answered += 1
        s.close()
    out.put(("flood", sent, answered, time.monotonic() - start))


_NONCE = re.compile(rb'nonce="([^"]+)"')


def brute_force(port: int, seconds: float, out: mp.Queue[object], go: EventT) -> None:
    """Wrong passwords as fast as the server answers (one guess in flight)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((BRUTE_SOURCE, 0))
    sock.settimeout(0.2)
    src = sock.getsockname()
    uri = f"sip:{NUMBER}@127.0.0.1:{port}"
    go.wait()
    guesses = challenges = timeouts = accepted = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        call_id = secrets.token_hex(10)
        sock.sendto(request("INVITE", src, port, call_id), ("127.0.0.1", port))
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            timeouts += 1
            continue
        m = _NONCE.search(reply)
        if not reply.startswith(b"SIP/2.0 401") or m is None:
            continue
        challenges += 1
        nonce = m.group(1).decode()
        h = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
        ha1 = h(f"{BRUTE_USER}:{REALM}:guess{guesses}")
        ha2 = h(f"INVITE:{uri}")
        cnonce = secrets.token_hex(4)
        resp = h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        auth = (
            f'Digest username="{BRUTE_USER}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="{cnonce}"'
        )
        sock.sendto(request("INVITE", src, port, call_id, auth, 2), ("127.0.0.1", port))
        guesses += 1
        try:
            verdict = sock.recv(65535)
            accepted += verdict.startswith(b"SIP/2.0 100") or verdict.startswith(b"SIP/2.0 18")
        except TimeoutError:
            timeouts += 1
    sock.close()
    out.put(("brute", guesses, challenges, timeouts, accepted))


def idle_tcp(port: int, count: int, first_source: int) -> list[socket.socket]:
    """``count`` TCP connections, 100 per source address from 127.0.0.<first_source>."""
    conns = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((f"127.0.0.{first_source + i // 100}", 0))
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        conns.append(s)
    return conns


def still_open(conns: list[socket.socket]) -> int:
    """Established connections the server has not closed (a closed one reads EOF; one still
    in SYN retries after a full listen backlog has no peer name)."""
    alive = 0
    for s in conns:
        try:
            s.getpeername()
            data = s.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            alive += 1
            continue
        except OSError:
            continue
        if data:
            alive += 1
    return alive


# --------------------------------------------------------------------------- the run


@dataclass
class Samples:
    rss_before_kb: int = 0
    rss_peak_kb: int = 0
    rss_end_kb: int = 0
    cpu_attack_s: float = 0.0


async def run(args: argparse.Namespace) -> int:
    from mediasrv.demo.server import ServerProcess, ServerSpec
    from mediasrv.demo.sipp import SippOptions, SippRun, free_port

    ensure_sipp()
    tmp = Path(tempfile.mkdtemp(prefix="under-attack-"))
    uas_port = free_port()
    spec = ServerSpec(
        workdir=tmp / "server",
        trunks=[
            {"name": "carrier", "addresses": [f"{TRUNK_SOURCE}/32"]},
            {
                "name": "pbx",
                "addresses": [f"{BRUTE_SOURCE}/32"],
                "inbound_auth": True,
                "username": BRUTE_USER,
                "password": BRUTE_PASSWORD,
                "realm": REALM,
            },
        ],
        numbers=[{"number": NUMBER, "destinations": [f"sip:uas@127.0.0.1:{uas_port}"]}],
        sip={"untrusted_source_policy": args.policy},
        media={"record": "off", "no_rtp_timeout": 3600.0},
        server={"log_level": "warning"},
        analysis={"enabled": False},
        env={"PYTHONSAFEPATH": "1"},
    )
    server = ServerProcess(spec)
    server.start()
    pid = server.proc.pid if server.proc else 0
    subprocess.run(["taskset", "-a", "-pc", SERVER_CPU, str(pid)], capture_output=True)
    calls = int(args.cps * args.duration)
    uas = await SippRun.start(
        SippOptions(scenario="uas", name="uas", local_port=uas_port, calls=calls,
                    timeout_s=args.duration + 60, cpu=int(OTHERS_CPU)),
        tmp / "uas",
    )
    uac = await SippRun.start(
        SippOptions(scenario="uac", name="uac", remote=server.sip_uri_host, service=NUMBER,
                    calls=calls, rate=args.cps, hold_ms=1000, limit=args.cps * 5,
                    timeout_s=args.duration + 60, cpu=int(OTHERS_CPU)),
        tmp / "uac",
    )
    for run_ in (uas, uac):  # the legitimate peers first on CPU 0 (see the docstring)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, run_.pid, -10)
    samples = Samples()
    ctx = mp.get_context("fork")
    out: mp.Queue[object] = ctx.Queue()
    go = ctx.Event()
    sources = [f"127.0.0.{11 + i}" for i in range(args.flood_sources)]
    procs = []
    if args.flood_rps > 0:
        procs.append(ctx.Process(target=flood, args=(server.sip_port, sources, args.flood_rps,
                                                     args.attack, out, go)))
    if args.brute:
        procs.append(ctx.Process(target=brute_force, args=(server.sip_port, args.attack, out, go)))
    for p in procs:
        p.start()
        subprocess.run(["taskset", "-pc", OTHERS_CPU, str(p.pid)], capture_output=True)
    conns: list[socket.socket] = []
    tcp_open = 0
    try:
        await asyncio.sleep(args.warmup)
        samples.rss_before_kb = status_kb(pid, "VmRSS")
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic()
        go.set()
        conns = idle_tcp(server.sip_port, args.tcp, 50)
        while time.monotonic() - t0 < args.attack:
            samples.rss_peak_kb = max(samples.rss_peak_kb, status_kb(pid, "VmRSS"))
            await asyncio.sleep(0.5)
        samples.cpu_attack_s = cpu_seconds(pid) - cpu0
        attack_wall = time.monotonic() - t0
        tcp_open = still_open(conns)
        for c in conns:
            c.close()
        results: list[object] = [out.get(timeout=30) for _ in procs]
        uac_result = await uac.wait(args.duration + 60)
        await asyncio.sleep(args.settle)
        samples.rss_end_kb = status_kb(pid, "VmRSS")
        metrics = server.metrics()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)
        for c in conns:
            c.close()
        await uac.stop()
        await uas.stop()
        code = server.stop()
    by_kind: dict[str, tuple[float, ...]] = {
        str(r[0]): tuple(float(x) for x in r[1:]) for r in results if isinstance(r, tuple)
    }
    flood_vals = by_kind.get("flood", (0.0, 0.0, 1.0))
    f_sent, f_answered, f_secs = int(flood_vals[0]), int(flood_vals[1]), flood_vals[2]
    guesses, challenges, timeouts, accepted = (
        int(x) for x in by_kind.get("brute", (0.0, 0.0, 0.0, 0.0))
    )
    stats = uac_result.stats
    legit_cps = stats.successful / args.duration
    cpu_pct = 100.0 * samples.cpu_attack_s / attack_wall
    growth = 100.0 * (samples.rss_end_kb - samples.rss_before_kb) / max(samples.rss_before_kb, 1)
    refused = {k.split('"')[1]: v for k, v in metrics.items()
               if k.startswith("mediasrv_sip_refused_total{")}
    print(f"machine: {platform.node()} {os.cpu_count()} cpu, Linux {platform.release()}, "
          f"load average {os.getloadavg()[0]:.2f} at the end (shared machine)")
    print(f"policy={args.policy} legit: {stats.successful} ok, {stats.failed} failed, "
          f"{stats.retransmissions} retransmissions of {calls} at {args.cps} cps")
    print(f"flood: {f_sent} sent in {f_secs:.1f} s from {len(sources)} sources, "
          f"{f_answered} answered")
    print(f"brute force: {guesses} wrong guesses ({guesses / args.attack:.0f}/s), "
          f"{challenges} challenges, {timeouts} unanswered, {accepted} accepted")
    print(f"tcp: {len(conns)} idle connections opened, {tcp_open} still open after "
          f"{args.attack:.0f} s")
    print(f"refused by reason: {refused}")
    print(f"rss: before {samples.rss_before_kb / 1024:.1f} MB, peak "
          f"{samples.rss_peak_kb / 1024:.1f} MB, end {samples.rss_end_kb / 1024:.1f} MB "
          f"({growth:+.1f} %); server exit {code}")
    print(f"RESULT under_attack legit_cps={legit_cps:.0f} legit_failed={stats.failed} "
          f"flood_rps={f_sent / f_secs:.0f} flood_answered={f_answered} cpu_pct={cpu_pct:.1f} "
          f"rss_mb={samples.rss_end_kb / 1024:.1f}")
    return 0 if stats.failed == 0 else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--cps", type=int, default=100, help="legitimate calls per second")
    p.add_argument("--duration", type=float, default=45.0, help="legitimate run, seconds")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the attack")
    p.add_argument("--attack", type=float, default=30.0, help="attack seconds")
    p.add_argument("--settle", type=float, default=5.0, help="idle seconds before the end RSS")
    p.add_argument("--flood-rps", type=float, default=20000.0)
    p.add_argument("--flood-sources", type=int, default=8)
    p.add_argument("--tcp", type=int, default=3000, help="idle TCP connections (0: none)")
    p.add_argument("--no-brute", dest="brute", action="store_false",
                   help="no digest brute force (with --flood-rps 0 --tcp 0: a control run)")
    p.add_argument("--policy", choices=("reject", "drop"), default="reject",
                   help="[sip] untrusted_source_policy of the server")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.warmup + args.attack > args.duration:
        sys.exit("under_attack: --warmup + --attack must fit in --duration")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
