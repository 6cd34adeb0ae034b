"""Recording writer benchmark: CPU of the ``recbuf`` writer thread alone, N recorded calls.

N call timelines, each with one stereo recording to its own WAV file, registered with one
``cext.recbuf.Writer`` (the C thread that commits every timeline four times a second and
writes the files with write()/pwrite(), without the GIL). Each timeline gets one packet so
that its clock runs; the writer then commits and writes a whole call's worth of audio per
second per call (silence costs what speech costs). We measure the writer thread's own CPU
(utime+stime of the thread named ``mediasrv-rec``) over the window, so neither the packet
path nor this script's Python is counted.

The other half of recording's cost is on the engine thread: placing each received packet on
the timeline. ``feed_us_per_packet`` is the relay's CPU per packet (``Relay.on_readable`` on
a loopback pair, thread CPU time, batches of 64) with a timeline attached minus without.

Usage: python bench/recording_writer.py [--calls 2000] [--seconds 8] [--ulaw] [--dir DIR]
Last line: ``RESULT recording_writer calls=N writer_cpu_pct=.. user_pct=.. sys_pct=..
mb_per_s=.. dir=.. relay_us_per_packet=.. feed_us_per_packet=..``. ``--dir`` picks the file system (default: a temporary directory
under the system's; /dev/shm shows the cost without a disk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run by path; bench/ is not on sys.path under PYTHONSAFEPATH
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchenv

    benchenv.use_project_python(__file__)


def writer_ticks() -> tuple[int, int]:
    """(utime, stime) of this process's writer thread."""
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        if (task / "comm").read_text().strip() == "mediasrv-rec":
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]), int(fields[12])
    raise RuntimeError("no mediasrv-rec thread: is the writer running?")


def relay_cpu_per_packet(record: bool, batches: int = 600) -> float:
    """µs of thread CPU per relayed packet, with or without a recording timeline."""
    import socket
    import struct

    from cext.recbuf import StereoTimeline
    from cext.relay import Relay

    def udp() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        return s

    legs, phones = (udp(), udp()), (udp(), udp())
    relay = Relay(lambda *a: None, lambda *a: None, lambda *a: None, lambda *a: None)
    for leg in (0, 1):
        relay.open(leg, legs[leg].fileno(), 0x1000 + leg, 0, 0)
        relay.configure(leg, 0, 0, {0: 0}, 101, phones[leg].getsockname(), True, True)
    relay.bridge(0, 1)
    timeline = StereoTimeline()
    if record:
        timeline.add_output(1, 2, 3, False, 0.0)
        relay.set_timeline(0, timeline, 0, -time.monotonic())  # its clock starts now at 0
    payload, dest = b"\x80" * 160, legs[0].getsockname()
    spent, seq = 0.0, 0
    try:
        for batch in range(batches):
            for _ in range(64):
                packet = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, 160 * seq, 7) + payload
                phones[0].sendto(packet, dest)
                seq += 1
            t = time.thread_time()
            relay.on_readable(0)
            spent += time.thread_time() - t
            while True:
                try:
                    phones[1].recv(2048)
                except BlockingIOError:
                    break
            if record and batch % 4 == 0:
                timeline.tick(seq * 0.02)
                timeline.take(0)
    finally:
        for s in (*legs, *phones):
            s.close()
    return spent / (64 * batches) * 1e6


def main(argv: list[str]) -> int:
    from cext import recbuf

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--ulaw", action="store_true", help="µ-law files instead of 16-bit PCM")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="recwriter-", dir=args.dir))
    writer = recbuf.Writer()
    writer.start()
    timelines = []
    try:
        now = time.monotonic()
        for k in range(args.calls):
            timeline = recbuf.StereoTimeline()
            writer.register(timeline, 0.0)
            timeline.add_output(k, 2, 3, args.ulaw, now, bytes(base / f"{k}.wav"))
            timeline.feed(0, 1, 0, 0, b"\x80" * 160, now)
            timelines.append(timeline)
        time.sleep(1.0)  # files open, buffers at their working size
        u0, s0 = writer_ticks()
        t0 = time.monotonic()
        time.sleep(args.seconds)
        u1, s1 = writer_ticks()
        wall = time.monotonic() - t0
        for timeline in timelines:
            timeline.close()
        writer.stop()
        written = sum(p.stat().st_size for p in base.iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    plain = min(relay_cpu_per_packet(False) for _ in range(3))
    recorded = min(relay_cpu_per_packet(True) for _ in range(3))
    hz = os.sysconf("SC_CLK_TCK")
    user, system = 100.0 * (u1 - u0) / hz / wall, 100.0 * (s1 - s0) / hz / wall
    per_s = args.calls * 8000 * (2 if args.ulaw else 4) / 1e6
    print(
        f"RESULT recording_writer calls={args.calls} writer_cpu_pct={user + system:.2f} "
        f"user_pct={user:.2f} sys_pct={system:.2f} mb_per_s={per_s:.1f} "
        f"dir={args.dir or tempfile.gettempdir()} written_mb={written / 1e6:.0f} "
        f"relay_us_per_packet={plain:.2f} feed_us_per_packet={recorded - plain:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
