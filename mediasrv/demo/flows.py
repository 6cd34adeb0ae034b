"""The "realistic flow" of issue 10's SIPp test and benchmark, as a business file.

Every call of the tracking number runs: the blocklist (number, business and withheld rules),
the business-hours check (a schedule open every day, so the closed branch is compiled and
evaluated but not taken), then a round-robin forwarding over two operators, each with its own
ring timeout; busy or no answer moves on to the other one. With ``whisper_file`` the operator
who answers first hears that WAV (mixed into the operator's leg only, issue 9) while the caller
still hears ringback, and only then is the caller answered and bridged (F8). The two operators
are shared lines (a shop's PBX each): many calls at once, as a load test needs.
``blocked_number`` is on the number's blocklist (a caller to refuse).
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

REALISTIC_NUMBER = "0312340000"
BLOCKED_CALLER = "0399990000"  # +81399990000: on the realistic number's own blocklist
REALISTIC_SLUG = "realistic"
WHISPER_PROMPT = "whisper-web"
WHISPER_SECONDS = 0.4  # a short whisper: a load test measures the flow, not the prompt


def write_whisper_wav(path: Path, seconds: float = WHISPER_SECONDS) -> Path:
    """A whisper prompt as the engine plays it (8 kHz mono 16-bit): a 440 Hz tone at -20 dBov
    (synthesised, so a test or benchmark needs no TTS model)."""
    rate = 8000
    amp = 0.1 * 32767  # -20 dBov
    frames = b"".join(
        struct.pack("<h", int(amp * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def realistic_business_toml(
    targets: tuple[str, str],
    *,
    number: str = REALISTIC_NUMBER,
    slug: str = REALISTIC_SLUG,
    ring_timeout: float = 20.0,
    whisper_file: Path | None = None,
) -> str:
    """A business file: ``number`` forwarded round robin to the two SIP URIs ``targets``;
    with ``whisper_file`` (an absolute WAV path) a whisper to the operator before the bridge."""
    first, second = targets
    prompt = (
        f'\n[[prompts]]\nname = "{WHISPER_PROMPT}"\nfile = "{whisper_file}"\n'
        'text = "ウェブ広告からのお電話です。"\n'
        if whisper_file is not None
        else ""
    )
    whisper = f'whisper = ["{WHISPER_PROMPT}"]\n' if whisper_file is not None else ""
    return f"""
[business]
slug = "{slug}"
name = "Realistic flow"
time_zone = "Asia/Tokyo"
{prompt}
[[operators]]
name = "op-a"
sip = "{first}"
shared = true

[[operators]]
name = "op-b"
sip = "{second}"
shared = true

[[schedules]]
name = "always"
holidays = "jp"
holiday_hours = ["00:00-24:00"]

[[schedules.week]]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
hours = ["00:00-24:00"]

[blocklist]
numbers = ["+819011112222"]
prefixes = ["+8150"]
withheld = ["payphone"]

[[numbers]]
number = "{number}"
medium = "web"
campaign = "flow-bench"
record = "off"
start = "forward"

[numbers.blocklist]
numbers = ["+81{BLOCKED_CALLER[1:]}"]
withheld = ["anonymous"]

[numbers.blocking]
sip_code = 603
prompts = []

[numbers.hours]
schedule = "always"
closed = {{ action = "reject", sip_code = 480 }}

[numbers.forwarding]
strategy = "round_robin"
on_busy = "next_target"
on_no_answer = "next_target"
on_exhausted = "hangup"
{whisper}
[[numbers.forwarding.targets]]
operator = "op-a"
ring_timeout = {ring_timeout}

[[numbers.forwarding.targets]]
operator = "op-b"
ring_timeout = {ring_timeout}
"""
