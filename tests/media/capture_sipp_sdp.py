"""Regenerate sipp_uac.sdp and sipp_uac_pcap.sdp: the SDP bodies SIPp 3.6 really sends.

Run: .venv/bin/python tests/media/capture_sipp_sdp.py
SIPp's built-in ``uac`` and ``uac_pcap`` scenarios dial a plain UDP socket; the first
INVITE's body is saved byte for byte, and SIPp is stopped.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
from pathlib import Path

SIPP_PCAPS = Path("/usr/share/sip-tester")  # uac_pcap loads pcap/g711a.pcap from the cwd


def capture(scenario: str, cwd: Path) -> bytes:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    port = sock.getsockname()[1]
    sipp = subprocess.Popen(
        [
            "sipp",
            "-sn",
            scenario,
            f"127.0.0.1:{port}",
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-mp",
            "6000",
            "-m",
            "1",
            "-timeout",
            "5s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
    )
    try:
        while True:
            data, _ = sock.recvfrom(65536)
            if data.startswith(b"INVITE "):
                return data.split(b"\r\n\r\n", 1)[1]
    finally:
        sock.close()
        sipp.terminate()  # it would wait for a 200 OK that never comes
        sipp.wait(10)


def main() -> None:
    data = Path(__file__).parent / "data"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pcap").symlink_to(SIPP_PCAPS)
        bodies = {s: capture(s, Path(tmp)) for s in ("uac", "uac_pcap")}
    for scenario, body in bodies.items():
        (data / f"sipp_{scenario}.sdp").write_bytes(body)
        print(f"--- {scenario}\n{body.decode()}")


if __name__ == "__main__":
    main()
