"""OpenAPI 3 description of the HTTP API, served at ``/api/v1/openapi.json``.

Built in code next to the handlers so that tests can check that every route is described and
every described route exists, and that the call schema lists exactly the call record's fields.
"""

from __future__ import annotations

from typing import Any

from mediasrv import __version__
from mediasrv.api.call_schema import CALL_SCHEMA
from mediasrv.outputs.calllog import Disposition

__all__ = ["openapi_document"]

def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TIME = {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}
_CALL_ID = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document(max_limit: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes :class:`~mediasrv.api.http.HttpServer` serves."""
    list_params = [
        _param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": max_limit, "default": 100},
            "page size",
        ),
        _param("offset", {"type": "integer", "minimum": 0, "default": 0}, "rows to skip"),
        _param("tracking_number", {"type": "string"}, "only calls to this tracking number"),
        _param("since", _TIME, "start_time >= since (unix seconds or ISO 8601; naive = UTC)"),
        _param("until", _TIME, "start_time < until"),
        _param(
            "disposition",
            {"type": "string", "enum": [d.value for d in Disposition]},
            "only this outcome",
        ),
        _param("cursor", {"type": "string"}, "next_cursor of the previous page (keyset paging)"),
        *(
            _param(name, {"type": "string"}, f"only calls with this {name}")
            for name in ("business", "medium", "campaign", "operator", "caller_number",
                         "caller_kind", "prefecture_code")
        ),
        *(
            _param(name, {"type": "boolean"}, f"only calls with {name} set or not")
            for name in ("valid", "duplicate", "first_time")
        ),
    ]
    csv_params = [
        *list_params,
        _param("encoding", {"type": "string", "enum": ["utf-8", "cp932", "shift_jis"]},
               "utf-8 (with a BOM unless bom=0) or CP932 / Shift_JIS for Excel on Windows"),
        _param("replace", {"type": "boolean"}, "write '?' for characters the encoding lacks"),
    ]  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "mediasrv", "version": __version__},
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness and drain state",
                    "responses": {
                        "200": _json({"type": "object"}, "serving"),
                        "503": _json({"type": "object"}, "draining (SIGTERM received)"),
                    },
                }
            },
            "/ready": {
                "get": {
                    "summary": "Accepting new calls and the call log answers",
                    "responses": {
                        "200": _json({"type": "object"}, "ready"),
                        "503": _json({"type": "object"}, "not ready; 'reasons' says why"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format 0.0.4)",
                    "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}},
                }
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/api/v1/calls": {
                "get": {
                    "summary": "The call log, newest first",
                    "parameters": list_params,
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/CallList"}),
                        "400": _error("a query parameter is invalid"),
                    },
                }
            },
            "/api/v1/calls.csv": {
                "get": {
                    "summary": "The call log as CSV (same filters; limit up to the export maximum)",
                    "parameters": csv_params,
                    "responses": {
                        "200": {"description": "OK", "content": {"text/csv": {}}},
                        "400": _error("a query parameter is invalid"),
                    },
                }
            },
            "/api/v1/calls/{call_id}": {
                "get": {
                    "summary": "One call",
                    "parameters": [_CALL_ID],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Call"}),
                        "404": _error("no such call"),
                    },
                }
            },
            "/api/v1/number-info/{number}": {
                "get": {
                    "summary": "What a number is: E.164, kind, numbering area, prefecture",
                    "parameters": [
                        {"name": "number", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/api/v1/reports/{group_by}": {
                "get": {
                    "summary": "Calls, answered, valid, first-time ... per medium, campaign, "
                    "tracking_number, operator, prefecture, day, hour (comma separated; "
                    "'.csv' suffix for CSV)",
                    "parameters": [
                        {"name": "group_by", "in": "path", "required": True, "schema": {"type": "string"}},
                        _param("since", _TIME, "default: 30 days before until"),
                        _param("until", _TIME, "default: now"),
                        _param("business", {"type": "string"}, "only this business"),
                        _param("tz", {"type": "string"}, "IANA zone of days and hours"),
                        _param("encoding", {"type": "string"}, "CSV: utf-8, cp932, shift_jis"),
                    ],
                    "responses": {
                        "200": _json({"type": "object"}),
                        "400": _error("a query parameter is invalid"),
                    },
                }
            },
            "/api/v1/calls/{call_id}/recording": {
                "get": {
                    "summary": "The call's stereo WAV recording (caller left, operator right)",
                    "parameters": [_CALL_ID],
                    "responses": {
                        "200": {"description": "OK", "content": {"audio/wav": {}}},
                        "404": _error("no such call, or it has no recording"),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Call": CALL_SCHEMA,
                "CallList": {
                    "type": "object",
                    "properties": {
                        "calls": {"type": "array", "items": {"$ref": "#/components/schemas/Call"}},
                        "limit": {"type": "integer"},
                        "offset": {"type": "integer"},
                        "total": {"type": "integer", "description": "rows matching the filters"},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            }
        },
    }
