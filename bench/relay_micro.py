"""Relay CPU per packet, measured in-process: ``cext.relay.Relay.on_readable`` over loopback
for two bridged PCMU legs (recvmmsg, validation, latching, RFC 3550 statistics, rewrite,
sendto), 16 datagrams per call.

Only the relay call is timed, in thread CPU time (``time.thread_time``), so a loaded machine
moves it much less than the wall-clock figures of ``bench/media.py``; use it to compare two
builds of the relay back to back (``MEDIASRV_VENV=... python bench/relay_micro.py``).

Last line: ``RESULT relay_micro us_per_packet=<best> median=<x> runs=<n>``.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

BATCH = 16  # datagrams per on_readable call (one recvmmsg)


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return s


def run(rounds: int, batches: int) -> list[float]:
    from cext.relay import Relay

    legs, phones = (_udp(), _udp()), (_udp(), _udp())
    relay = Relay(lambda *a: None, lambda *a: None, lambda *a: None, lambda *a: None)
    for leg in (0, 1):
        relay.open(leg, legs[leg].fileno(), 0x1000 + leg, 100, 1000)
        relay.configure(leg, 0, 0, {0: 0}, 101, phones[leg].getsockname(), True, True)
    relay.bridge(0, 1)
    dest, payload = legs[0].getsockname(), b"\x80" * 160
    results, seq, relayed = [], 0, 0
    for _ in range(rounds):
        cpu = 0.0
        for _ in range(batches):
            for _ in range(BATCH):
                head = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (160 * seq) & 0xFFFFFFFF, 0xA)
                phones[0].sendto(head + payload, dest)
                seq += 1
            t = time.thread_time()
            relay.on_readable(0)
            cpu += time.thread_time() - t
            while True:
                try:
                    phones[1].recv(2048)
                except BlockingIOError:
                    break
                relayed += 1
        results.append(cpu / (batches * BATCH) * 1e6)
    if abs(relayed - seq) > BATCH:  # every packet must have been relayed
        raise SystemExit(f"relayed {relayed} of {seq} packets")
    for s in (*legs, *phones):
        s.close()
    return results


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batches", type=int, default=4000, help="on_readable calls per round")
    args = ap.parse_args(argv)
    import benchenv  # on sys.path (see the top)

    benchenv.use_project_python(__file__)
    runs = sorted(run(args.rounds, args.batches))
    print(f"RESULT relay_micro us_per_packet={runs[0]:.3f} median={runs[len(runs) // 2]:.3f} "
          f"runs={len(runs)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
