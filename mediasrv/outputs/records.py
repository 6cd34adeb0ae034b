"""The call-log row's media columns from the engine's report (used by ``flow_records``)."""

from __future__ import annotations

from mediasrv.media.api import LegStats, MediaReport


def _leg_stats(stats: LegStats) -> dict[str, object]:
    # Not dataclasses.asdict: it deep-copies, and this runs for every call.
    return {
        "packets_in": stats.packets_in,
        "packets_out": stats.packets_out,
        "bytes_in": stats.bytes_in,
        "bytes_out": stats.bytes_out,
        "packets_lost": stats.packets_lost,
        "jitter_ms": round(stats.jitter_ms, 3),
        "codec": stats.codec,
        "remote": stats.remote,
        "foreign_dropped": stats.foreign_dropped,
    }


def media_stats_of(report: MediaReport | None) -> dict[str, object]:
    """The row's ``media_stats``: the engine and each leg's counters."""
    if report is None:
        return {}
    return {
        "engine": report.engine,
        "legs": {role.value: _leg_stats(stats) for role, stats in report.legs.items()},
    }
