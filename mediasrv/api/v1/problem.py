"""Errors as ``application/problem+json`` (RFC 9457).

Every error of the v1 API is a :class:`Problem`: a machine-readable ``type`` URI (RFC 9457
§3.1.1; a URN, since the server may run without a public documentation site), a ``title``
that does not vary per occurrence, a ``detail`` for this occurrence and, for validation
errors, the failing ``field`` (an RFC 9457 §3.2 extension member) as a JSON-pointer-like
path (``operators/0/uri``, or ``query:limit``, ``header:If-Match``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

__all__ = ["PROBLEM_JSON", "PROBLEM_SCHEMA", "Problem", "problem_response", "problem_type"]

PROBLEM_JSON = "application/problem+json"
_TYPE_PREFIX = "urn:mediasrv:problem:"

# status -> (type slug, title) for problems raised without a more specific type
_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("bad-request", "The request is malformed"),
    401: ("unauthorized", "A valid bearer token is required"),
    403: ("forbidden", "The token's scope does not allow this"),
    404: ("not-found", "No such resource"),
    405: ("method-not-allowed", "Method not allowed on this resource"),
    409: ("conflict", "The change conflicts with the stored state"),
    412: ("precondition-failed", "If-Match does not match the current ETag"),
    413: ("payload-too-large", "The request body is too large"),
    415: ("unsupported-media-type", "Unsupported Content-Type"),
    416: ("range-not-satisfiable", "The Range is outside the file"),
    421: ("misdirected", "This server does not answer that Host name"),
    422: ("validation", "The request does not validate"),
    428: ("precondition-required", "This write needs If-Match with the current ETag"),
    500: ("internal", "Internal error"),
}

PROBLEM_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "the failing field, when one is at fault"},
    },
}


def problem_type(slug: str) -> str:
    return _TYPE_PREFIX + slug


class Problem(Exception):
    """Raise from a handler; the v1 layer answers it as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        default_slug, default_title = _DEFAULTS.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.slug = slug or default_slug
        self.title = title or default_title
        self.field = field
        self.headers = dict(headers or {})
        super().__init__(detail)

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        return body


def problem_response(problem: Problem) -> web.Response:
    return web.Response(
        status=problem.status,
        body=json.dumps(problem.body(), ensure_ascii=False).encode(),
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )
