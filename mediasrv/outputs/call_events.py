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
    "CALL_DATA_FIELDS",
    "CALL_EVENT_TYPES",
    "RENAMED_IN_EVENTS",
    "analysis_summary",
    "call_data",
    "call_event_statements",
    "call_links",
    "repeats_from_row",
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


# What every call event carries (besides links and the outbox's sequence), in order; the
# event's name where it differs from the CallRecord field (RENAMED_IN_EVENTS).
CALL_DATA_FIELDS = (
    "call_id", "business", "tracking_number", "caller_number", "caller_display",
    "caller_kind", "caller_area", "prefecture_code", "prefecture", "medium", "campaign",
    "start_time", "answer_time", "end_time", "ring_seconds", "talk_seconds", "disposition",
    "sip_code", "end_reason", "operator", "dtmf", "flags", "valid", "duplicate", "first_time",
    "repeat_count", "callback_of",
)  # fmt: skip
RENAMED_IN_EVENTS = {"operator": "operator_uri"}


def call_data(record: CallRecord) -> dict[str, object]:
    """What every call event carries."""
    data: dict[str, object] = {
        name: getattr(record, RENAMED_IN_EVENTS.get(name, name)) for name in CALL_DATA_FIELDS
    }
    data["disposition"] = record.disposition.value
    data["flags"] = list(record.flags)
    data["links"] = call_links(record)
    return data


def call_links(record: CallRecord) -> dict[str, str]:
    """Where the full row, transcript and recording are: the business's API paths (issue 12),
    which the business's own token can read (the older /api/v1/calls is admin only)."""
    base = f"/api/v1/businesses/{record.business}/calls/{record.call_id}"
    links = {"call": base, "transcript": base + "/transcript", "analysis": base + "/analysis"}
    if record.recording_path:
        links["recording"] = base + "/recording"
    return links


def _sql_bool(column: str) -> str:
    return f"CASE {column} WHEN 1 THEN json('true') WHEN 0 THEN json('false') END"


# F15's attributes are computed in SQL by the call log (record_final), in the transaction
# that writes the event: this statement copies them from the row into the event's data, so
# call.completed says the real `duplicate`, not the null the record had before the SQL ran.
_REPEATS_FROM_ROW = (
    "UPDATE outbox_events SET data = json_set(data, "
    f"'$.duplicate', (SELECT {_sql_bool('duplicate')} FROM calls WHERE call_id = ?1), "
    f"'$.first_time', (SELECT {_sql_bool('first_time')} FROM calls WHERE call_id = ?1), "
    "'$.repeat_count', COALESCE((SELECT repeat_count FROM calls WHERE call_id = ?1), 0)) "
    "WHERE event_id = ?2"
)


def repeats_from_row(call_id: str, event_id: str) -> SqlStatement:
    """The statement that sets an event's duplicate / first_time / repeat_count to what the
    stored call row says (run after the row's F15 statement, in the same transaction)."""
    return _REPEATS_FROM_ROW, (call_id, event_id)


def call_event_statements(
    record: CallRecord,
    milestones: Sequence[str],
    now: float,
    extra: dict[str, object] | None = None,
    *,
    from_row: bool = False,
) -> list[SqlStatement]:
    """The outbox statements for a change of ``record``: each milestone event, then the
    ``call.updated`` revision (in that order, so the sequence follows it).

    ``from_row``: the call's row is final in the same transaction (or already): the events
    take duplicate / first_time / repeat_count from it (:func:`repeats_from_row`)."""
    data = call_data(record)
    if extra:
        data.update(extra)
    statements: list[SqlStatement] = []
    for event_type in (*milestones, "call.updated"):
        event = OutboxEvent(record.business, record.call_id, event_type, data, now)
        statements += event_statements(event)
        if from_row:
            statements.append(repeats_from_row(record.call_id, event.event_id))
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
