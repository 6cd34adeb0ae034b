"""Call attributes (issue 11): caller kind and prefecture (F16), valid (F14), duplicate and
first-time (F15), computed when a call ends and recomputable for a period.

The per-business duplicate window, time zone and the per-number valid-call threshold come
from an :class:`AttributePolicy`. Until the business store lands, :class:`StaticPolicy`
(built from the ``[call_attributes]`` config block) answers with defaults and per-business /
per-number overrides; the business store implements the same three methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

from mediasrv.calls.caller_id import NumberInfo, number_info
from mediasrv.outputs.calllog import CallLogStore, CallRecord, Disposition

__all__ = ["AttributePolicy", "RecomputeReport", "StaticPolicy", "apply_caller", "is_valid", "recompute"]


class AttributePolicy(Protocol):
    """Per-business and per-number settings the attributes depend on."""

    def valid_threshold(self, tracking_number: str) -> float: ...

    def duplicate_window(self, business: str) -> float: ...

    def time_zone(self, business: str) -> ZoneInfo: ...


@dataclass(frozen=True)
class StaticPolicy:
    """Defaults with optional overrides (seconds; IANA zone names)."""

    valid_seconds: float = 60.0
    window_seconds: float = 86400.0
    zone: str = "Asia/Tokyo"
    thresholds: Mapping[str, float] = field(default_factory=dict)  # by tracking number (E.164)
    windows: Mapping[str, float] = field(default_factory=dict)  # by business
    zones: Mapping[str, str] = field(default_factory=dict)  # by business

    def valid_threshold(self, tracking_number: str) -> float:
        return self.thresholds.get(tracking_number, self.valid_seconds)

    def duplicate_window(self, business: str) -> float:
        return self.windows.get(business, self.window_seconds)

    def time_zone(self, business: str) -> ZoneInfo:
        return ZoneInfo(self.zones.get(business, self.zone))


def is_valid(disposition: Disposition, talk_seconds: float, threshold: float) -> bool:
    """F14: an answered call whose talk time, counted from the bridge (the whisper to the
    operator excluded), reaches the number's threshold."""
    return disposition is Disposition.ANSWERED and talk_seconds >= threshold


def apply_caller(rec: CallRecord, info: NumberInfo, source: str) -> None:
    """Write a classified caller into the row (number, kind, area, prefecture)."""
    rec.caller_number = info.logged_number
    rec.caller_kind = info.kind.value
    rec.caller_area = info.area or ""
    rec.prefecture_code = f"{info.prefecture_code:02d}" if info.prefecture_code else ""
    rec.prefecture = info.prefecture
    rec.caller_source = source
    if info.withheld:
        rec.duplicate, rec.first_time, rec.repeat_count = False, None, 0


@dataclass(frozen=True)
class RecomputeReport:
    classified: int
    repeats: int
    valid: int


async def recompute(
    store: CallLogStore,
    policy: AttributePolicy,
    since: float,
    until: float,
    business: str | None = None,
) -> RecomputeReport:
    """Recompute the attributes of the calls that started in ``[since, until)``: classify
    rows stored before classification existed, then valid and duplicate / first-time with
    the policy as it is now. Running it twice gives the same rows."""
    classified = 0
    rows = await store.unclassified(since, until)
    if rows:
        updates = []
        for call_id, number in rows:
            info = number_info(number)
            code = f"{info.prefecture_code:02d}" if info.prefecture_code else ""
            updates.append((call_id, info.kind.value, info.area or "", code, info.prefecture))
        classified = await store.set_caller_attributes(updates)
    pairs = [(b, n) for b, n in await store.period_numbers(since, until)
             if business is None or b == business]  # fmt: skip
    valid = 0
    for number in sorted({n for _b, n in pairs}):
        valid += await store.recompute_valid(number, since, until, policy.valid_threshold(number))
    repeats = 0
    for name in sorted({b for b, _n in pairs}):
        repeats += await store.recompute_repeats(name, since, until, policy.duplicate_window(name))
    return RecomputeReport(classified, repeats, valid)
