"""The webhook payloads (:mod:`mediasrv.outputs.call_events`) as OpenAPI 3.1 ``webhooks``:
what a receiver gets, signed by the Standard Webhooks headers."""

from __future__ import annotations

from typing import Any

from mediasrv.api.call_schema import CALL_EVENT_DATA
from mediasrv.outputs.call_events import CALL_EVENT_TYPES

__all__ = ["CALL_EVENT_DATA", "webhooks_document"]

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
