"""The "realistic flow" of issue 10's SIPp test and benchmark, as a business file.

Every call of the tracking number runs: the blocklist (number, business and withheld rules),
the business-hours check (a schedule open every day, so the closed branch is compiled and
evaluated but not taken), then a round-robin forwarding over two operators, each with its own
ring timeout; busy or no answer moves on to the other one. The two operators are shared lines
(a shop's PBX each): many calls at once, as a load test needs. The whisper is left out: the media
engine of this base cannot mix a prompt into one leg yet (issue 9), so it would only count a
failure per call. ``blocked_number`` is on the number's blocklist (a caller to refuse).
"""

from __future__ import annotations

REALISTIC_NUMBER = "0312340000"
BLOCKED_CALLER = "0399990000"  # +81399990000: on the realistic number's own blocklist
REALISTIC_SLUG = "realistic"


def realistic_business_toml(
    targets: tuple[str, str],
    *,
    number: str = REALISTIC_NUMBER,
    slug: str = REALISTIC_SLUG,
    ring_timeout: float = 20.0,
) -> str:
    """A business file: ``number`` forwarded round robin to the two SIP URIs ``targets``."""
    first, second = targets
    return f"""
[business]
slug = "{slug}"
name = "Realistic flow"
time_zone = "Asia/Tokyo"

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

[[numbers.forwarding.targets]]
operator = "op-a"
ring_timeout = {ring_timeout}

[[numbers.forwarding.targets]]
operator = "op-b"
ring_timeout = {ring_timeout}
"""
