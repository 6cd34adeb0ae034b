"""The one JSON Schema of a call (issue 12 §1): the call-log row as the API returns it and
the ``data`` of every call event a webhook or email carries. Both are cut from one table of
properties, so the row, the event and the OpenAPI document cannot drift apart.

- :data:`CALL_SCHEMA`: :meth:`~mediasrv.outputs.calllog.CallRecord.to_dict` (``/api/v1/calls``);
- :data:`CALL_V1_SCHEMA`: the same plus ``links`` (``/api/v1/businesses/{business}/calls``);
- :data:`CALL_EVENT_DATA`: :func:`~mediasrv.outputs.call_events.call_data` plus what an event
  adds (``sequence``; the analysis summary of ``analysis.completed``).
"""

from __future__ import annotations

from typing import Any

from mediasrv.calls.trace import HungUpBy
from mediasrv.outputs.call_events import CALL_DATA_FIELDS, RENAMED_IN_EVENTS
from mediasrv.outputs.calllog import CALL_RECORD_FIELDS, Disposition

__all__ = ["CALL_EVENT_DATA", "CALL_PROPERTIES", "CALL_SCHEMA", "CALL_V1_SCHEMA"]

_NUMBER_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
_BOOL_OR_NULL: dict[str, Any] = {"type": ["boolean", "null"]}

# Every property a call can have, once. Keys are CallRecord field names.
CALL_PROPERTIES: dict[str, dict[str, Any]] = {
    "call_id": {"type": "string", "description": "our id for the call (uuid4 hex)"},
    "inbound_call_id": {"type": "string", "description": "SIP Call-ID of the caller leg"},
    "tracking_number": {"type": "string"},
    "caller_number": {
        "type": "string",
        "description": "E.164 when derivable, else as received; 'anonymous' when withheld",
    },
    "caller_display": {"type": "string"},
    "business": {"type": "string"},
    "medium": {"type": "string"},
    "campaign": {"type": "string"},
    "start_time": {"type": "number", "description": "unix seconds, INVITE received"},
    "answer_time": _NUMBER_OR_NULL,
    "end_time": _NUMBER_OR_NULL,
    "ring_seconds": {"type": "number"},
    "talk_seconds": {"type": "number"},
    "disposition": {"type": "string", "enum": [d.value for d in Disposition]},
    "sip_code": {"type": "integer", "description": "final SIP code the caller got"},
    "end_reason": {"type": "string"},
    "operator_uri": {"type": "string", "description": "who answered"},
    "attempts": {
        "type": "array",
        "items": {"type": "object", "description": "uri, code, start, end"},
    },
    "dtmf": {"type": "string"},
    "recording_path": {"type": ["string", "null"]},
    "media_stats": {"type": "object"},
    "analysis": {"type": ["object", "null"]},
    "flags": _STRINGS,
    # issue 11
    "caller_kind": {
        "type": "string",
        "description": "fixed, mobile, ip, toll-free, navi-dial, other, international, "
        "invalid, anonymous, payphone, unavailable",
    },
    "caller_area": {"type": "string", "description": "numbering area of a fixed line"},
    "prefecture_code": {"type": "string", "description": "JIS X 0401 (01-47), '' if unknown"},
    "prefecture": {"type": "string"},
    "caller_source": {"type": "string", "description": "from, p-asserted-identity, privacy"},
    "valid": _BOOL_OR_NULL,
    "duplicate": _BOOL_OR_NULL,
    "first_time": _BOOL_OR_NULL,
    "repeat_count": {"type": "integer"},
    # issue 10 §6: the flow the call followed (plan interpreter)
    "flow_version": {
        "type": ["integer", "null"],
        "description": "business configuration version the call ran",
    },
    "flow_path": {**_STRINGS, "description": "steps run"},
    "flow_rules": {
        **_STRINGS,
        "description": "rules evaluated, e.g. 'blocklist=no', 'hours:clinic=open'",
    },
    "menu_choices": {
        "type": "array",
        "items": {"type": "object", "description": "menu, digits, choice, tries"},
    },
    "phases": {
        "type": "object",
        "description": "unix seconds: received, answered, bridged, ended (null if not)",
        "additionalProperties": _NUMBER_OR_NULL,
    },
    "hung_up_by": {
        "type": "string",
        "enum": [h.value for h in HungUpBy],
        "description": "who ended the call ('' while it is up)",
    },
    # issue 12 §5: callback-email tracking
    "callback_of": {
        "type": "string",
        "description": "a callback through a leased callback number: the call whose email "
        "showed that number ('' for other calls); medium and campaign are that call's",
    },
}
_LINKS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_REQUIRED = ["call_id", "tracking_number", "caller_number", "start_time", "disposition"]


def _missing(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n not in CALL_PROPERTIES]


if _missing(CALL_RECORD_FIELDS):  # a new CallRecord field must be described here
    raise RuntimeError(f"CALL_PROPERTIES lacks {_missing(CALL_RECORD_FIELDS)}")

CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": _REQUIRED,
    "additionalProperties": False,
    "properties": {name: CALL_PROPERTIES[name] for name in CALL_RECORD_FIELDS},
}
CALL_V1_SCHEMA: dict[str, Any] = {
    **CALL_SCHEMA,
    "properties": {**CALL_SCHEMA["properties"], "links": _LINKS},
}


def _event_property(name: str) -> dict[str, Any]:
    return CALL_PROPERTIES[RENAMED_IN_EVENTS.get(name, name)]


_ANALYSIS_SUMMARY: dict[str, Any] = {
    "outcome": {"description": "analysis.completed: the outcome label"},
    "gender": {"description": "analysis.completed: the caller's gender (or unknown)"},
    "gender_confidence": {"type": ["number", "null"]},
    "labels": {"description": "analysis.completed: the labels the analysis gave"},
    "language": {"type": ["string", "null"]},
    "transcript": {
        "type": "array",
        "description": "analysis.completed: the first transcript segments (cut)",
        "items": {"type": "object", "properties": {
            "speaker": {"type": "string"}, "start": {"type": "number"},
            "text": {"type": "string"}}},
    },
    "transcript_segments": {"type": "integer", "description": "segments in all"},
}  # fmt: skip
CALL_EVENT_DATA: dict[str, Any] = {
    "type": "object",
    "required": ["call_id", "business", "tracking_number", "disposition", "sequence"],
    "additionalProperties": False,
    "properties": {
        **{name: _event_property(name) for name in CALL_DATA_FIELDS},
        "links": _LINKS,
        "sequence": {"type": "integer", "description": "per call, increasing (call.updated)"},
        "voicemail_mailbox": {"type": "string", "description": "the mailbox of the message "
                              "(voicemail.created and the events of the same change)"},
        "voicemail_seconds": {"type": "number", "description": "the message's length"},
        **_ANALYSIS_SUMMARY,
    },
}
