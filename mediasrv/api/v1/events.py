"""The webhook payloads (:mod:`mediasrv.outputs.call_events`) as OpenAPI 3.1 ``webhooks``:
what a receiver gets, signed by the Standard Webhooks headers."""

from __future__ import annotations

from typing import Any

from mediasrv.outputs.call_events import CALL_EVENT_TYPES
from mediasrv.outputs.calllog import Disposition

__all__ = ["webhooks_document"]

_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
CALL_EVENT_DATA: dict[str, Any] = {
    "type": "object",
    "required": ["call_id", "business", "tracking_number", "disposition", "sequence"],
    "properties": {
        "call_id": {"type": "string"},
        "business": {"type": "string"},
        "tracking_number": {"type": "string"},
        "caller_number": {"type": "string"},
        "caller_display": {"type": "string"},
        "medium": {"type": "string"},
        "campaign": {"type": "string"},
        "start_time": {"type": "number"},
        "answer_time": _NUM_OR_NULL,
        "end_time": _NUM_OR_NULL,
        "ring_seconds": {"type": "number"},
        "talk_seconds": {"type": "number"},
        "disposition": {"type": "string", "enum": [d.value for d in Disposition]},
        "sip_code": {"type": "integer"},
        "end_reason": {"type": "string"},
        "operator": {"type": "string"},
        "dtmf": {"type": "string"},
        "flags": {"type": "array", "items": {"type": "string"}},
        "links": {"type": "object", "additionalProperties": {"type": "string"}},
        "sequence": {"type": "integer", "description": "per call, increasing (call.updated)"},
        "analysis": {"type": "object", "description": "analysis.completed: labels, gender, "
                     "the first transcript segments"},
    },
}
_HEADERS = {
    "webhook-id": "the event's id (the same on every retry)",
    "webhook-timestamp": "unix seconds of this attempt",
    "webhook-signature": "v1,<base64 HMAC-SHA256 of id.timestamp.body>; two during a rotation",
}


def _event(event_type: str, data: dict[str, Any], summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {"name": h, "in": "header", "required": True, "schema": {"type": "string"},
                 "description": d}
                for h, d in _HEADERS.items()
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["type", "timestamp", "data"],
                "properties": {
                    "type": {"const": event_type},
                    "timestamp": {"type": "string", "format": "date-time"},
                    "data": data,
                },
            }}}},
            "responses": {
                "200": {"description": "any 2xx: delivered (redirects are not followed)"},
                "410": {"description": "Gone: the endpoint is disabled"},
            },
        }
    }


def webhooks_document() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/CallEventData"}
    hooks = {t: _event(t, ref, f"{t}: a change of a call") for t in CALL_EVENT_TYPES}
    hooks["webhook.test"] = _event("webhook.test", {"type": "object", "properties": {
        "endpoint_id": {"type": "string"}, "sequence": {"type": "integer"}}},
        "webhook.test: sent on request to check an endpoint")
    return hooks
