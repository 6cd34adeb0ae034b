"""Issue 8 finding 1: a third host cannot hijack or inject into a call's RTP.

A real call through ``mediasrv run`` (SIPp does the signalling on both sides; the caller's and
the operator's RTP come from sockets this test owns, so that it can pause the caller and tell
every packet apart by its payload). A hijacker bound to 127.0.0.2 sends valid RTP with new
SSRCs to the caller-leg port, before, while and after the real caller pauses. None of it may
reach the operator or the recording, the hijacker may receive nothing, and the drops must show
in the call row and in /metrics.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import StartServer
from peers_plugin import needs_sipp, sipp_scenario

from mediasrv.demo.audio import read_wav
from mediasrv.demo.sipp import SippOptions, SippRun, free_port
from mediasrv.media.kernels import load_kernel

pytestmark = [needs_sipp, pytest.mark.e2e]

NUMBER = "0312345678"
RTP_MIN, RTP_MAX = 42100, 42199  # private to this test file
PCMA = 8
FRAME = 160  # 20 ms at 8 kHz
CALLER_HZ, OPERATOR_HZ, HIJACK_HZ = 440.0, 700.0, 1800.0
HIJACKER_HOST = "127.0.0.2"
# Media schedule in seconds from the moment both RTP ports are known.
MEDIA_S = 5.5
CALLER_TALKS = ((0.0, 1.5), (4.5, MEDIA_S))  # silent (no packet at all) from 1.5 s to 4.5 s
HIJACK_FROM = 0.3


def tone_frames(hz: float, amplitude: int, count: int = 50) -> list[bytes]:
    """``count`` consecutive 20 ms PCMA frames of a sine (a different frame each time)."""
    g711 = load_kernel("g711", python=True)
    frames = []
    for f in range(count):
        n0 = f * FRAME
        pcm = [round(amplitude * math.sin(2 * math.pi * hz * (n0 + n) / 8000)) for n in range(FRAME)]
        frames.append(g711.alaw_encode(struct.pack(f"<{FRAME}h", *pcm)))
    return frames


@dataclass
class Source:
    """One RTP sender: a socket, a stream (SSRC/seq/ts) and its payloads."""

    sock: socket.socket
    ssrc: int
    frames: list[bytes]
    seq: int = 1000
    ts: int = 50_000
    sent: int = 0
    received: list[bytes] = field(default_factory=list)

    def send(self, to: tuple[str, int]) -> None:
        head = struct.pack("!BBHII", 0x80, PCMA, self.seq & 0xFFFF, self.ts, self.ssrc)
        try:
            self.sock.sendto(head + self.frames[self.sent % len(self.frames)], to)
        except OSError:
            return
        self.sent += 1
        self.seq += 1
        self.ts += FRAME

    def drain(self) -> None:
        while True:
            try:
                self.received.append(self.sock.recv(2048)[12:])
            except (BlockingIOError, ConnectionRefusedError):
                return


def udp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


async def wait_port_file(path: Path, run: SippRun, timeout: float = 15.0) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            host, port = path.read_text().split()
            return host, int(port)
        if run.proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise AssertionError(f"SIPp {run.opts.name} never wrote {path.name}")


def run_media(caller: Source, operator: Source, hijacker: Source,
              caller_leg: tuple[str, int], operator_leg: tuple[str, int]) -> None:
    """Paced at 20 ms (bounded: MEDIA_S seconds, at most one packet per source per tick)."""
    start = time.monotonic()
    tick = 0
    while (now := time.monotonic() - start) < MEDIA_S:
        operator.send(operator_leg)  # the operator talks all the time
        if any(a <= now < b for a, b in CALLER_TALKS):
            caller.send(caller_leg)
        if now >= HIJACK_FROM:
            hijacker.send(caller_leg)  # the stranger, to the caller-leg port
        for s in (caller, operator, hijacker):
            s.drain()
        tick += 1
        time.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))
    time.sleep(0.3)
    for s in (caller, operator, hijacker):
        s.drain()


def tone_share(samples: np.ndarray, hz: float) -> np.ndarray:
    """Per 20 ms frame: the share of the frame's energy at ``hz`` (0..1)."""
    n = len(samples) // FRAME
    frames = samples[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    t = np.arange(FRAME) / 8000.0
    basis = np.exp(-2j * np.pi * hz * t)
    at = np.abs(frames @ basis) ** 2 * 2 / FRAME
    total = np.maximum((frames**2).sum(axis=1), 1e-9)
    return np.asarray(at / total)


@pytest.mark.parametrize(
    ("engine", "env"),
    [("cython-thread", {}), ("python", {"MEDIASRV_NO_EXTENSIONS": "1"})],
)
async def test_a_third_host_cannot_hijack_or_inject_into_the_caller_leg(
    tmp_path: Path, start_server: StartServer, engine: str, env: dict[str, str]
) -> None:
    caller = Source(udp("127.0.0.1"), 0xCA11E5, tone_frames(CALLER_HZ, 8000))
    operator = Source(udp("127.0.0.1"), 0x0FE7A7, tone_frames(OPERATOR_HZ, 8000))
    hijacker = Source(udp(HIJACKER_HOST), 0xBAD, tone_frames(HIJACK_HZ, 20000))
    caller_port = caller.sock.getsockname()[1]
    uas_port = free_port()
    server = start_server(
        numbers=[{"number": NUMBER, "business": "acme", "medium": "web",
                  "destinations": [f"sip:operator@127.0.0.1:{uas_port}"]}],
        media={"rtp_port_min": RTP_MIN, "rtp_port_max": RTP_MAX},
        env=env,
    )
    uas_file, uac_file = tmp_path / "operator_leg.txt", tmp_path / "caller_leg.txt"
    uas = await SippRun.start(SippOptions(
        scenario=sipp_scenario("uas_rtp_port.xml"), name="uas", local_port=uas_port, calls=1,
        timeout_s=40, keys={"sink_port": str(operator.sock.getsockname()[1]),
                            "portfile": str(uas_file)}), tmp_path / "uas")
    uac = await SippRun.start(SippOptions(
        scenario=sipp_scenario("uac_rtp_port.xml"), name="uac", remote=server.sip_uri_host,
        service=NUMBER, calls=1, hold_ms=int((MEDIA_S + 1.5) * 1000), timeout_s=40,
        keys={"caller_port": str(caller_port), "portfile": str(uac_file)}),
        tmp_path / "uac")
    try:
        caller_leg = await wait_port_file(uac_file, uac)
        operator_leg = await wait_port_file(uas_file, uas)
        assert RTP_MIN <= caller_leg[1] <= RTP_MAX and RTP_MIN <= operator_leg[1] <= RTP_MAX
        await asyncio.to_thread(run_media, caller, operator, hijacker, caller_leg, operator_leg)
        done = await uac.wait()
        assert done.ok, done.describe() + done.errors_tail()
    finally:
        await uac.stop()
        await uas.stop()
        for s in (caller, operator, hijacker):
            s.sock.close()

    hijack_payloads = set(hijacker.frames)
    caller_payloads = set(caller.frames)
    to_operator = operator.received
    assert hijacker.sent > 200 and caller.sent > 80
    # The operator heard the caller, and never the hijacker.
    assert sum(p in caller_payloads for p in to_operator) > caller.sent // 2
    assert sum(p in hijack_payloads for p in to_operator) == 0
    # The hijacker received nothing, also while the caller was silent; the caller got the
    # operator's audio throughout (latched to it, before, during and after the pause).
    assert hijacker.received == []
    assert len(caller.received) > operator.sent // 2

    assert not any(server.wait_idle(20).values())  # idle: the final row is written
    (row,) = server.calls(10)
    assert row["disposition"] == "answered"
    assert row["media_stats"]["engine"] == engine  # type: ignore[index]
    legs = row["media_stats"]["legs"]  # type: ignore[index]
    assert legs["caller"]["foreign_dropped"] > 0, legs
    assert legs["caller"]["remote"] == f"127.0.0.1:{caller_port}", legs
    assert legs["operator"]["foreign_dropped"] == 0, legs
    metrics = server.metrics()
    assert metrics.get("mediasrv_rtp_foreign_source_dropped_total", 0) > 0, metrics
    assert f"dropping RTP from {HIJACKER_HOST}:" in server.log_tail(200_000)

    # The caller channel of the recording is the caller, not the hijacker.
    stereo = read_wav(Path(str(row["recording_path"])))
    left = stereo.samples[:, 0]
    assert int((tone_share(left, CALLER_HZ) > 0.5).sum()) > 50
    assert int((tone_share(left, HIJACK_HZ) > 0.2).sum()) == 0
