"""UDP reflection amplification (issue 8, finding 8): what a spoofed INVITE brings back.

A source in no trunk (127.0.0.3 by default; the server's trunk is 127.0.0.1/32) sends ``-n``
INVITEs with distinct transactions and never ACKs anything, as a spoofing attacker's victim
would not. Everything the server sends back to that address is counted until the server's
transactions would all be gone (Timer H = 64*T1 after the last INVITE, plus a margin). The
amplification is packets (and bytes) out per packet (and byte) in.

    python bench/reflection.py                                   # the server's defaults
    python bench/reflection.py --sip untrusted_source_policy=drop
    python bench/reflection.py --section sip.rate_limit:enabled=false

Last line::

    RESULT reflection policy=<p> sent=<n> packets_in=<n> packets_back=<n> packet_ratio=<x>
        bytes_ratio=<x>

The server is a real ``mediasrv run`` child (the installed package) with its own data
directory; it is stopped with SIGTERM at the end. Bounded in time: about 64*T1 + n/rate + 3 s.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

from mediasrv.demo.server import ServerProcess, ServerSpec

SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def invite(number: str, src: tuple[str, int], dst: str) -> bytes:
    """One INVITE of a fresh transaction (as SIPVicious and flooders send them)."""
    body = SDP.format(ip=src[0])
    tag = secrets.token_hex(4)
    lines = [
        f"INVITE sip:{number}@{dst} SIP/2.0",
        f"Via: SIP/2.0/UDP {src[0]}:{src[1]};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f'From: "probe" <sip:probe@{src[0]}>;tag={tag}',
        f"To: <sip:{number}@{dst}>",
        f"Call-ID: {secrets.token_hex(12)}@{src[0]}",
        "CSeq: 1 INVITE",
        f"Contact: <sip:probe@{src[0]}:{src[1]}>",
        "Content-Type: application/sdp",
        f"Content-Length: {len(body)}",
        "",
        body,
    ]
    return "\r\n".join(lines).encode()


def measure(
    server_port: int, source: str, count: int, rate: float, listen_s: float, number: str
) -> tuple[int, int, int, int]:
    """Send ``count`` INVITEs from ``source``; return (pkts in, bytes in, pkts back, bytes back)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    src = sock.getsockname()
    dst = ("127.0.0.1", server_port)
    sent_pkts = sent_bytes = back_pkts = back_bytes = 0
    interval = 1.0 / rate
    start = time.monotonic()
    next_send = start
    deadline = start + count * interval + listen_s
    while time.monotonic() < deadline:
        now = time.monotonic()
        if sent_pkts < count and now >= next_send:
            data = invite(number, src, f"127.0.0.1:{server_port}")
            sock.sendto(data, dst)
            sent_pkts += 1
            sent_bytes += len(data)
            next_send += interval
            continue
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            time.sleep(0.002)
            continue
        back_pkts += 1
        back_bytes += len(data)
    sock.close()
    return sent_pkts, sent_bytes, back_pkts, back_bytes


def _kv(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, _, raw = item.partition("=")
        value: object = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for conv in (int, float):
                try:
                    value = conv(raw)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("-n", "--count", type=int, default=100, help="INVITEs to send (default 100)")
    p.add_argument("--rate", type=float, default=50.0, help="INVITEs per second (default 50)")
    p.add_argument("--source", default="127.0.0.3", help="spoofed source address")
    p.add_argument("--number", default="0312345678", help="dialled number (a tracking number)")
    p.add_argument("--t1", type=float, default=0.5, help="server T1 (Timer H = 64*T1)")
    p.add_argument("--sip", action="append", default=[], help="[sip] KEY=VALUE for the server")
    p.add_argument(
        "--section",
        action="append",
        default=[],
        help="SECTION:KEY=VALUE for any other table, e.g. sip.rate_limit:enabled=false",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sip: dict[str, object] = {"t1": args.t1, "t2": max(4.0, args.t1 * 8), "t4": 5.0}
    sip.update(_kv(args.sip))
    extra: dict[str, dict[str, object]] = {}
    for item in args.section:
        name, _, kv = item.partition(":")
        extra.setdefault(name, {}).update(_kv([kv]))
    with tempfile.TemporaryDirectory(prefix="reflection-") as tmp:
        spec = ServerSpec(
            workdir=Path(tmp),
            trunks=[{"name": "carrier", "addresses": ["127.0.0.1/32"]}],
            numbers=[{"number": args.number, "destinations": ["sip:op@127.0.0.1:9"]}],
            sip=sip,
            analysis={"enabled": False},
            server={"log_level": "warning"},
        )
        spec.extra_sections = extra
        server = ServerProcess(spec)
        server.start()
        try:
            listen_s = 64 * args.t1 + 3.0
            sent, sent_b, back, back_b = measure(
                server.sip_port, args.source, args.count, args.rate, listen_s, args.number
            )
        finally:
            code = server.stop()
        if code != 0:
            print(server.log_tail(), file=sys.stderr)
    policy = str(sip.get("untrusted_source_policy", "default"))
    pr = back / sent if sent else 0.0
    br = back_b / sent_b if sent_b else 0.0
    print(
        f"RESULT reflection policy={policy} sent={sent} packets_in={sent} packets_back={back} "
        f"packet_ratio={pr:.2f} bytes_ratio={br:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
