"""A finished flow's :class:`~mediasrv.calls.trace.CallTrace` as its call-log row (issue 10 §6).

The row's existing columns take what they always held (times, disposition, operator, digits,
recording); ``attempts`` carries every forwarding attempt with its operator, ring seconds,
SIP code and result; :func:`flow_summary` is the rest of the flow (version, path, menu choices,
rules, phase times, who hung up, queue, voicemail, run-time failures) as one JSON-ready dict.
"""

from __future__ import annotations

from mediasrv.calls.caller_id import CallerId, number_info
from mediasrv.calls.disposition import Disposition
from mediasrv.calls.trace import CallTrace
from mediasrv.outputs.attributes import apply_caller, is_valid
from mediasrv.outputs.calllog import CallRecord
from mediasrv.outputs.records import media_stats_of


def attempt_dicts(trace: CallTrace) -> list[dict[str, object]]:
    return [
        {
            "uri": a.target,
            "operator": a.operator,
            "code": a.code,
            "result": a.result.value,
            "reason": a.reason,
            "start": a.start,
            "end": a.end,
            "ring_seconds": round(a.ring_seconds, 3),
        }
        for a in trace.attempts
    ]


def flow_summary(trace: CallTrace) -> dict[str, object]:
    vm = trace.voicemail
    return {
        "version": trace.flow_version,
        "path": list(trace.path),
        "rules": list(trace.rules),
        "menu": _menu_dicts(trace),
        "prompts": list(trace.prompts),
        "phases": _phases(trace),
        "hung_up_by": trace.hung_up_by.value,
        "consent_played": trace.consent_played,
        "early_media": trace.early_media,
        "queue": {
            "name": trace.queue,
            "wait": round(trace.queue_wait, 3),
            "positions": trace.queue_positions,
        }
        if trace.queue
        else None,
        "voicemail": {"mailbox": vm.mailbox, "path": str(vm.path), "seconds": round(vm.seconds, 3)}
        if vm is not None
        else None,
        "failures": list(trace.failures),
    }


def _menu_dicts(trace: CallTrace) -> list[dict[str, object]]:
    return [
        {"menu": m.menu, "digits": m.digits, "choice": m.choice, "tries": m.tries}
        for m in trace.menu
    ]


def _phases(trace: CallTrace) -> dict[str, float | None]:
    return {
        "received": trace.received,
        "answered": trace.answered,
        "bridged": trace.bridged,
        "ended": trace.ended,
    }


def _recording_of(trace: CallTrace) -> str | None:
    """The row's audio file: the call recording; a voicemail call (nobody bridged, so no call
    recording) has its message instead, which ``/voicemails/{id}/audio`` serves (F11)."""
    if trace.recording is not None:
        return str(trace.recording)
    if trace.voicemail is not None:
        return str(trace.voicemail.path)
    return None


def record_from_trace(
    trace: CallTrace, caller_id: CallerId | None = None, valid_threshold: float | None = None
) -> CallRecord:
    """The call's row. ``caller_id``: who called as the SIP layer identified them (trusted
    P-Asserted-Identity, Privacy; issue 11), else the trace's number classified as given.
    ``valid_threshold`` (seconds) decides F14 (None: left undecided); duplicate / first-time
    need the stored rows: the store sets them (record_final)."""
    info = caller_id.info if caller_id is not None else number_info(trace.caller)
    flags: list[str] = []
    if trace.consent_played:
        flags.append("consent-played")
    if trace.voicemail is not None:
        flags.append("voicemail")
    if trace.failures:
        flags.append("flow-failures")
    rec = CallRecord(
        call_id=trace.call_id,
        inbound_call_id=trace.inbound_call_id,
        tracking_number=trace.number,
        caller_number=info.logged_number,
        caller_display=caller_id.display if caller_id is not None else "",
        business=trace.business,
        medium=trace.medium,
        campaign=trace.campaign,
        start_time=trace.received,
        answer_time=trace.bridged,  # answered = an operator connected (F13), after the whisper
        end_time=trace.ended,
        ring_seconds=round(trace.ring_seconds, 3),
        talk_seconds=round(trace.talk_seconds, 3),
        disposition=trace.disposition,
        sip_code=trace.sip_code,
        end_reason=trace.reason,
        operator_uri=trace.operator_target,
        attempts=attempt_dicts(trace),
        dtmf="".join(trace.digits),
        recording_path=_recording_of(trace),
        flags=flags,
        media_stats=media_stats_of(trace.media),
        # the call log's flow columns (migration 3 of CALLS_MIGRATIONS; issue 10 §6)
        flow_version=trace.flow_version,
        flow_path=list(trace.path),
        flow_rules=list(trace.rules),
        menu_choices=_menu_dicts(trace),
        phases=_phases(trace),
        hung_up_by=trace.hung_up_by.value,
    )
    apply_caller(rec, info, caller_id.source if caller_id is not None else "from")
    if valid_threshold is not None and rec.disposition is not Disposition.IN_PROGRESS:
        rec.valid = is_valid(rec.disposition, rec.talk_seconds, valid_threshold)
    return rec
