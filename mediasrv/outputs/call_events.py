"""Call events for integrators (F21): the webhook/email payload of a call-log row.

``call.updated`` is the revisioned stream (every change of a call, numbered per call by the
outbox's sequence); ``call.ringing``/``call.answered``/``call.completed`` are the milestones
most integrators subscribe to. Payloads are "thin plus": ids and the attributes a CRM shows,
with a link to fetch the full row and the recording, so a body stays well under 20 kB
(Standard Webhooks, "Payload size")."""

from __future__ import annotations

from collections.abc import Sequence

from mediasrv.outputs.calllog import CallRecord, SqlStatement
from mediasrv.outputs.outbox import OutboxEvent, event_statements

__all__ = [
    "CALL_EVENT_TYPES",
    "analysis_summary",
    "call_data",
    "call_event_statements",
    "call_links",
]

SUMMARY_SEGMENTS = 10  # transcript segments in an analysis.completed body; the rest by link
SEGMENT_CHARS = 120

CALL_EVENT_TYPES = (
    "call.ringing",
    "call.answered",
    "call.completed",
    "call.updated",
    "recording.ready",
    "analysis.completed",
    "voicemail.created",
)


def call_data(record: CallRecord) -> dict[str, object]:
    """What every call event carries."""
    data: dict[str, object] = {
        "call_id": record.call_id,
        "business": record.business,
        "tracking_number": record.tracking_number,
        "caller_number": record.caller_number,
        "caller_display": record.caller_display,
        "caller_kind": record.caller_kind,
        "caller_area": record.caller_area,
        "prefecture_code": record.prefecture_code,
        "prefecture": record.prefecture,
        "medium": record.medium,
        "campaign": record.campaign,
        "start_time": record.start_time,
        "answer_time": record.answer_time,
        "end_time": record.end_time,
        "ring_seconds": record.ring_seconds,
        "talk_seconds": record.talk_seconds,
        "disposition": record.disposition.value,
        "sip_code": record.sip_code,
        "end_reason": record.end_reason,
        "operator": record.operator_uri,
        "dtmf": record.dtmf,
        "flags": list(record.flags),
        "valid": record.valid,
        "duplicate": record.duplicate,
        "first_time": record.first_time,
        "repeat_count": record.repeat_count,
        "links": call_links(record),
    }
    return data


def call_links(record: CallRecord) -> dict[str, str]:
    """Where the full row, transcript and recording are: the business's API paths (issue 12),
    which the business's own token can read (the older /api/v1/calls is admin only)."""
    base = f"/api/v1/businesses/{record.business}/calls/{record.call_id}"
    links = {"call": base, "transcript": base + "/transcript", "analysis": base + "/analysis"}
    if record.recording_path:
        links["recording"] = base + "/recording"
    return links


def call_event_statements(
    record: CallRecord,
    milestones: Sequence[str],
    now: float,
    extra: dict[str, object] | None = None,
) -> list[SqlStatement]:
    """The outbox statements for a change of ``record``: each milestone event, then the
    ``call.updated`` revision (in that order, so the sequence follows it)."""
    data = call_data(record)
    if extra:
        data.update(extra)
    statements: list[SqlStatement] = []
    for event_type in (*milestones, "call.updated"):
        event = OutboxEvent(record.business, record.call_id, event_type, data, now)
        statements += event_statements(event)
    return statements


def analysis_summary(result: dict[str, object]) -> dict[str, object]:
    """The part of an analysis result an event carries: labels, gender, the first segments of
    the transcript (cut, so the body stays small), and how many there are in all."""
    summary: dict[str, object] = {}
    for key in ("outcome", "gender", "gender_confidence", "labels", "language"):
        if key in result:
            summary[key] = result[key]
    timeline = result.get("timeline")
    segments = timeline if isinstance(timeline, list) else []
    summary["transcript"] = [
        {
            "speaker": str(seg.get("speaker", seg.get("channel", ""))),
            "start": float(seg.get("start", 0.0)),
            "text": str(seg.get("text", ""))[:SEGMENT_CHARS],
        }
        for seg in segments[:SUMMARY_SEGMENTS]
        if isinstance(seg, dict)
    ]
    summary["transcript_segments"] = len(segments)
    return summary
