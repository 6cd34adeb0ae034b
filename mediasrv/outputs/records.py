"""Turn a finished call's :class:`~mediasrv.calls.call.CallResult` into its call-log row."""

from __future__ import annotations

from mediasrv.calls.call import CallResult
from mediasrv.calls.caller_id import number_info
from mediasrv.calls.disposition import Disposition
from mediasrv.media.api import LegStats, MediaReport
from mediasrv.outputs.attributes import apply_caller, is_valid
from mediasrv.outputs.calllog import CallRecord


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


def call_record_from_result(result: CallResult, valid_threshold: float | None = None) -> CallRecord:
    """The call's row; ``valid_threshold`` (seconds) decides F14 (None: left undecided).
    Duplicate / first-time need the stored rows: the store sets them (record_final)."""
    caller = result.caller
    info = caller.info if caller is not None else number_info(result.caller_number)
    rec = CallRecord(
        call_id=result.call_id,
        inbound_call_id=result.inbound_call_id,
        tracking_number=result.tracking_number,
        caller_number=info.logged_number,
        caller_display=result.caller_display,
        business=result.business,
        medium=result.medium,
        campaign=result.campaign,
        start_time=result.start_time,
        answer_time=result.answer_time,
        end_time=result.end_time,
        ring_seconds=round(result.ring_seconds, 3),
        talk_seconds=round(result.talk_seconds, 3),
        disposition=result.outcome,
        sip_code=result.sip_code,
        end_reason=result.end_reason,
        operator_uri=result.operator_uri,
        attempts=[
            {"uri": a.uri, "code": a.code, "start": a.start, "end": a.end} for a in result.attempts
        ],
        dtmf="".join(digit for digit, _leg, _source in result.dtmf),
        recording_path=str(result.recording) if result.recording is not None else None,
        media_stats=media_stats_of(result.media),
        flags=list(result.flags),
        callback_of=result.callback_of,
    )
    apply_caller(rec, info, caller.source if caller is not None else "from")
    if valid_threshold is not None and rec.disposition is not Disposition.IN_PROGRESS:
        rec.valid = is_valid(rec.disposition, rec.talk_seconds, valid_threshold)
    return rec
