"""Probes for the issue 8 tests (F7, F8): raw SIP from a chosen loopback source, and SIPVicious.

Linux routes all of 127.0.0.0/8 to ``lo``, so a socket bound to 127.0.0.3 sends from there:
that is how the tests play "a source in no trunk" on one machine.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
)


def request(method: str, number: str, src: tuple[str, int], dst: str) -> bytes:
    """An out-of-dialog request of a fresh transaction (INVITEs carry an SDP offer)."""
    body = SDP.format(ip=src[0]) if method == "INVITE" else ""
    lines = [
        f"{method} sip:{number}@{dst} SIP/2.0",
        f"Via: SIP/2.0/UDP {src[0]}:{src[1]};branch=z9hG4bK{secrets.token_hex(8)};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@{src[0]}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{number}@{dst}>",
        f"Call-ID: {secrets.token_hex(12)}@{src[0]}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:probe@{src[0]}:{src[1]}>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines += [f"Content-Length: {len(body)}", "", body]
    return "\r\n".join(lines).encode()


@dataclass
class Exchange:
    sent: int
    sent_bytes: int
    replies: list[bytes]
    send_seconds: float = 0.0  # from the first to the last request sent

    @property
    def reply_bytes(self) -> int:
        return sum(len(r) for r in self.replies)

    def codes(self) -> list[int]:
        out = []
        for r in self.replies:
            m = re.match(rb"SIP/2\.0 (\d{3}) ", r)
            if m:
                out.append(int(m.group(1)))
        return out


def probe(
    port: int,
    source: str,
    method: str,
    numbers: list[str],
    rate: float,
    listen_s: float,
    stop_after: int | None = None,
) -> Exchange:
    """Send one request per number from ``source`` at ``rate``/s (never ACKing anything),
    then listen ``listen_s`` seconds; every datagram that comes back is kept."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((source, 0))
    sock.setblocking(False)
    src = sock.getsockname()
    dst = f"127.0.0.1:{port}"
    sent = sent_bytes = 0
    last_sent = 0.0
    replies: list[bytes] = []
    interval = 1.0 / rate
    start = time.monotonic()
    next_send = start
    deadline = start + len(numbers) * interval + listen_s
    try:
        while time.monotonic() < deadline:
            if stop_after is not None and len(replies) >= stop_after:
                break
            if sent < len(numbers) and time.monotonic() >= next_send:
                data = request(method, numbers[sent], src, dst)
                sock.sendto(data, ("127.0.0.1", port))
                sent += 1
                sent_bytes += len(data)
                next_send += interval
                last_sent = time.monotonic()
                continue
            try:
                replies.append(sock.recv(65535))
            except BlockingIOError:
                time.sleep(0.001)
    finally:
        sock.close()
    return Exchange(sent, sent_bytes, replies, max(0.0, last_sent - start))


# --------------------------------------------------------------------------- SIPVicious

# svwar 0.3.8 parses -b (bind address) but ignores it; bind the scanner's socket ourselves.
_SVWAR = """
import sys
from sipvicious import svwar
source = sys.argv.pop(1)
class Bound(svwar.TakeASip):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bindingip = source
svwar.TakeASip = Bound
sys.argv[0] = "svwar"
svwar.main()
"""


def svwar_available() -> bool:
    try:
        import sipvicious  # noqa: F401
    except ImportError:
        return False
    return shutil.which("sipp") is not None


@dataclass
class SvwarRun:
    found: set[str]
    seconds: float
    returncode: int
    output: str


def svwar(
    port: int, source: str, first: int, last: int, digits: int, timeout: float, silence_s: int = 5
) -> SvwarRun:
    """``svwar -m INVITE`` over numbers ``first..last`` (zero-padded to ``digits``) from
    ``source``; bounded by ``timeout`` (killed then) and by svwar's own ``--maximumtime``."""
    cmd = [
        sys.executable,
        "-c",
        _SVWAR,
        source,
        "-m",
        "INVITE",
        "-e",
        f"{first}-{last}",
        "-z",
        str(digits),
        "-p",
        str(port),
        "-x",
        source,
        "-P",
        str(_free_udp_port(source)),
        "--maximumtime",
        str(silence_s),
        "127.0.0.1",
    ]
    env = dict(os.environ, PYTHONSAFEPATH="1")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, text=True)
        code, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = -9
        out = _text(exc.stdout) + _text(exc.stderr)
    seconds = time.monotonic() - start
    pattern = re.compile(r"\b(\d{" + str(digits) + r"})\b")
    found = {m for m in pattern.findall(_table(out)) if first <= int(m) <= last}
    return SvwarRun(found, seconds, code, out)


def _free_udp_port(source: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        return int(sock.getsockname()[1])


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data if isinstance(data, str) else ""


def _table(output: str) -> str:
    """The lines of svwar's result table and its 'extension ... exists' log lines."""
    keep = [
        line
        for line in output.splitlines()
        if line.startswith("|") or "exists" in line or "probably exists" in line
    ]
    return "\n".join(keep)
