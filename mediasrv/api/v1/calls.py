"""Calls of a business (issue 12 §1): the call log with filters and cursor pagination, one
call, its recording, its transcript and analysis, and voicemails.

Downloads (recordings, voicemails) are :class:`aiohttp.web.FileResponse`, which implements
HTTP range requests (RFC 9110 §14): ``Range`` -> 206 with ``Content-Range``, an
unsatisfiable range -> 416, ``If-Range`` with the ``ETag``/``Last-Modified`` it sent, and
``Accept-Ranges: bytes``, so a browser's audio element can seek. The file is read by the
loop's sendfile, never into memory.

The cursor is opaque to clients: base64url of the last row's ``(start_time, call_id)``;
the next page is the rows strictly after it in the log's order (newest first), so rows
written meanwhile neither repeat nor shift a page (unlike offsets).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
from pathlib import Path
from typing import Any

from aiohttp import web

from mediasrv.api.call_schema import CALL_V1_SCHEMA
from mediasrv.api.csv_export import CsvEncoding, Unencodable, csv_header, csv_raw_rows
from mediasrv.api.v1.downloads import file_download
from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import Op, Param, Req, Resp, json_ok
from mediasrv.outputs.calllog import FLAG_FILTERS, CallQuery, CallRecord, Disposition
from mediasrv.outputs.recordings import is_within

__all__ = ["call_ops", "call_query", "decode_cursor", "encode_cursor", "filter_params"]

EXPORT_PAGE = 5000  # rows fetched from the store at a time for a CSV export
MAX_EXPORT = 100_000  # rows per CSV export
# query parameter -> call-log column (equality filters)
_EQUALS = {"tracking_number": "tracking_number", "medium": "medium", "campaign": "campaign",
           "operator": "operator_uri", "caller_number": "caller_number",
           "caller_kind": "caller_kind", "prefecture": "prefecture_code"}

_PAGE: dict[str, Any] = {
    "type": "object",
    "required": ["items", "next_cursor"],
    "properties": {"items": {"type": "array", "items": CALL_V1_SCHEMA},
                   "next_cursor": {"type": ["string", "null"]}},
}
_CALL_ID = Param("call_id", "path", {"type": "string", "minLength": 1, "maxLength": 64},
                 "the call's id", True)
_AUDIO = Resp("the WAV file (206 for a Range)", content_type="audio/wav",
              headers=("Accept-Ranges", "ETag"))


def encode_cursor(rec: CallRecord) -> str:
    raw = json.dumps([rec.start_time, rec.call_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        t, call_id = value
        if not isinstance(call_id, str) or isinstance(t, bool):
            raise ValueError
        t = float(t)
        if not math.isfinite(t):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Problem(422, "cursor: not a cursor this API gave out", field="query:cursor") from None
    return t, call_id


def call_query(req: Req, disposition: Disposition | None, limit: int) -> CallQuery:
    """The v1 filters (issue 11 item 5, issue 13 §2) as a store query, always of the token's
    business; the cursor is a keyset bound (rows written meanwhile neither repeat nor shift)."""
    p = req.params
    equals = [("business", req.business)]
    equals += [(column, str(p[name])) for name, column in _EQUALS.items()
               if p.get(name) not in (None, "")]
    if disposition is not None:
        equals.append(("disposition", disposition.value))
    flags = tuple((name, bool(p[name])) for name in FLAG_FILTERS if p.get(name) is not None)
    cursor = decode_cursor(p["cursor"]) if p.get("cursor") else None
    label = p.get("label") or None
    return CallQuery(tuple(equals), flags, p.get("since"), p.get("until"), cursor, limit,
                     label=None if label is None else str(label))


def _call_json(business: str, rec: CallRecord) -> dict[str, object]:
    d = rec.to_dict()
    base = f"/api/v1/businesses/{business}/calls/{rec.call_id}"
    links = {"self": base, "transcript": base + "/transcript", "analysis": base + "/analysis"}
    if rec.recording_path:
        links["recording"] = base + "/recording"
    d["recording_path"] = None if not rec.recording_path else Path(rec.recording_path).name
    d["links"] = links
    return d


class CallResources:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def _page(self, req: Req, disposition: Disposition | None) -> web.Response:
        limit = int(req.params["limit"])
        query = call_query(req, disposition, limit)
        rows, next_cursor = await self.s.calls.query_calls(query)
        return json_ok({"items": [_call_json(req.business, r) for r in rows],
                        "next_cursor": next_cursor})

    async def list_calls(self, req: Req) -> web.Response:
        raw = req.params.get("disposition")
        return await self._page(req, Disposition(raw) if raw else None)

    async def list_voicemails(self, req: Req) -> web.Response:
        return await self._page(req, Disposition.VOICEMAIL)

    async def export_calls(self, req: Req) -> web.Response:
        """The filtered call log as CSV (issue 11's columns). Built whole, off the loop, so
        that a character CP932 cannot hold is a 400 naming it rather than a cut-off file."""
        raw = req.params.get("disposition")
        limit = int(req.params["limit"])
        encoding = CsvEncoding.parse(str(req.params["encoding"]))
        query = call_query(req, Disposition(raw) if raw else None, min(EXPORT_PAGE, limit))
        chunks = [encoding.bom, csv_header(encoding)]
        try:
            async for rows in self.s.calls.export_raw(query, limit, EXPORT_PAGE):
                chunks.append(await asyncio.to_thread(csv_raw_rows, rows, encoding, False))
        except Unencodable as e:
            raise Problem(400, f"encoding={encoding.value}: {e}", field="query:encoding",
                          slug="unencodable") from None
        return web.Response(body=b"".join(chunks), headers={
            "Content-Type": f"text/csv; charset={encoding.value}",
            "Content-Disposition": f'attachment; filename="calls-{req.business}.csv"',
        })

    async def _call(self, req: Req) -> CallRecord:
        call_id = str(req.params["call_id"])
        rec = await self.s.calls.get_call(call_id)
        if rec is None or rec.business != req.business:  # another tenant's call: not found
            raise Problem(404, f"call {call_id!r} not found", field="path:call_id")
        return rec

    async def get_call(self, req: Req) -> web.Response:
        return json_ok(_call_json(req.business, await self._call(req)))

    async def get_transcript(self, req: Req) -> web.Response:
        rec = await self._call(req)
        analysis = rec.analysis or {}
        timeline = analysis.get("timeline")
        if not isinstance(timeline, list):
            raise Problem(404, f"call {rec.call_id!r} has no transcript (yet)", slug="no-transcript")
        return json_ok({"call_id": rec.call_id, "language": analysis.get("language"),
                        "segments": timeline})

    async def get_analysis(self, req: Req) -> web.Response:
        rec = await self._call(req)
        if rec.analysis is None:
            raise Problem(404, f"call {rec.call_id!r} has no analysis (yet)", slug="no-analysis")
        return json_ok({"call_id": rec.call_id, "analysis": rec.analysis})

    async def _audio(self, request: web.Request, rec: CallRecord) -> web.StreamResponse:
        if not rec.recording_path:
            raise Problem(404, f"call {rec.call_id!r} has no recording", slug="no-recording")
        path = Path(rec.recording_path)
        problem = await asyncio.to_thread(self._file_problem, path)
        if problem:
            raise Problem(404, f"the recording of call {rec.call_id!r} is {problem}",
                          slug="no-recording")
        return await file_download(request, path, {
            "Content-Type": "audio/wav",
            "Content-Disposition": f'inline; filename="{rec.call_id}.wav"',
        })

    def _file_problem(self, path: Path) -> str:
        root = self.s.recordings_dir
        if root is not None and not is_within(path, root):
            return "outside the recordings directory"
        return "" if path.is_file() else "missing"

    async def get_recording(self, req: Req) -> web.StreamResponse:
        return await self._audio(req.request, await self._call(req))

    async def get_voicemail_audio(self, req: Req) -> web.StreamResponse:
        rec = await self._call(req)
        if rec.disposition is not Disposition.VOICEMAIL:
            raise Problem(404, f"call {rec.call_id!r} is not a voicemail", field="path:call_id")
        return await self._audio(req.request, rec)


def filter_params() -> tuple[Param, ...]:
    """The call log's filters, shared by the list, the voicemails and the CSV export."""
    def text(name: str, what: str, length: int = 64) -> Param:
        return Param(name, "query", {"type": "string", "maxLength": length}, what)

    def flag(name: str, what: str) -> Param:
        return Param(name, "query", {"type": "boolean"}, what)

    return (
        Param("cursor", "query", {"type": "string", "maxLength": 512},
              "next_cursor of the previous page"),
        Param("since", "query", {"type": "number"}, "start_time >= since (unix seconds)"),
        Param("until", "query", {"type": "number"}, "start_time < until (unix seconds)"),
        text("tracking_number", "only calls to this tracking number", 32),
        text("medium", "only calls of this medium (advertising channel)"),
        text("campaign", "only calls of this campaign"),
        text("operator", "only calls answered by this operator (SIP URI)", 256),
        text("caller_number", "only calls from this number (E.164)", 32),
        text("caller_kind", "fixed, mobile, ip, toll-free, anonymous, ..."),
        Param("prefecture", "query", {"type": "string", "pattern": "^[0-9]{2}$"},
              "the caller's prefecture (JIS X 0401 code, 01-47)"),
        flag("valid", "only valid (or not valid) calls"),
        flag("first_time", "only first-time (or repeat) callers"),
        flag("duplicate", "only duplicates (or not)"),
        text("label", "the analysis's outcome label (e.g. booking_made)"),
    )


def call_ops(services: Services) -> list[Op]:
    r = CallResources(services)
    c = "/api/v1/businesses/{business}"
    limit = Param("limit", "query", {"type": "integer", "minimum": 1,
                                     "maximum": services.limits.max_page, "default": 50},
                  "page size")
    page = (limit, *filter_params())
    disposition = Param("disposition", "query",
                        {"type": "string", "enum": [d.value for d in Disposition]}, "outcome")
    export = (
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_EXPORT,
                                 "default": 10_000}, "at most this many rows"),
        Param("encoding", "query", {"type": "string", "enum": [e.value for e in CsvEncoding],
                                    "default": "utf-8"},
              "utf-8 (with a BOM, for Excel) or cp932 / shift_jis"),
        *filter_params(), disposition,
    )
    one = (_CALL_ID,)
    return [
        Op("GET", c + "/calls", "listCalls", "The call log, newest first (cursor pages)",
           r.list_calls, {200: Resp("OK", _PAGE)}, params=(*page, disposition), tag="calls"),
        Op("GET", c + "/calls.csv", "exportCalls",
           "The call log as CSV, with the list's filters (UTF-8 with a BOM, or CP932)",
           r.export_calls, {200: Resp("the CSV file", content_type="text/csv")},
           params=export, tag="calls"),
        Op("GET", c + "/calls/{call_id}", "getCall", "One call", r.get_call,
           {200: Resp("OK", CALL_V1_SCHEMA)}, params=one, tag="calls"),
        Op("GET", c + "/calls/{call_id}/recording", "getRecording",
           "The stereo recording (caller left, operator right); HTTP Range supported",
           r.get_recording, {200: _AUDIO, 206: _AUDIO, 416: Resp("the Range is outside the file",
                                                                 content_type="text/plain")},
           params=one, tag="calls"),
        Op("GET", c + "/calls/{call_id}/transcript", "getTranscript",
           "The transcript timeline (caller and operator segments)", r.get_transcript,
           {200: Resp("OK", {"type": "object", "properties": {
               "call_id": {"type": "string"}, "language": {"type": ["string", "null"]},
               "segments": {"type": "array", "items": {"type": "object"}}}})},
           params=one, tag="calls"),
        Op("GET", c + "/calls/{call_id}/analysis", "getAnalysis",
           "The post-call analysis (labels, gender, transcript)", r.get_analysis,
           {200: Resp("OK", {"type": "object", "properties": {
               "call_id": {"type": "string"}, "analysis": {"type": "object"}}})},
           params=one, tag="calls"),
        Op("GET", c + "/voicemails", "listVoicemails", "Calls that left a voicemail",
           r.list_voicemails, {200: Resp("OK", _PAGE)}, params=page, tag="voicemails"),
        Op("GET", c + "/voicemails/{call_id}/audio", "getVoicemailAudio",
           "The voicemail's audio; HTTP Range supported", r.get_voicemail_audio,
           {200: _AUDIO, 206: _AUDIO, 416: Resp("the Range is outside the file",
                                               content_type="text/plain")},
           params=one, tag="voicemails"),
    ]
