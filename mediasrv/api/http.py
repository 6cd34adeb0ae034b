"""The ops and call-log HTTP endpoints, served by aiohttp inside the server's event loop.

Routes:
    GET /health                          200 {"status": "ok", ...} or 503 while draining
    GET /ready                           200 when accepting calls and the store answers, else 503
    GET /metrics                         Prometheus text format
    GET /api/v1/openapi.json             the OpenAPI 3.1 description of these routes
    GET /api/v1/calls                    ?limit=&cursor=&offset=&since=&until= and a filter per
                                         attribute (tracking_number, business, medium, campaign,
                                         operator, caller_number, caller_kind, prefecture_code,
                                         disposition, valid, duplicate, first_time)
    GET /api/v1/calls.csv                the same filters, as CSV (``encoding=utf-8`` with a BOM
                                         by default, ``cp932`` / ``shift_jis``; ``bom=0``)
    GET /api/v1/number-info/{number}     {e164, kind, area, prefecture_code, prefecture, source}
    GET /api/v1/reports/{group_by}       ?since=&until=&business=&tz=; group_by: medium,
                                         campaign, tracking_number, operator, prefecture, day,
                                         hour, comma separated; ``{group_by}.csv`` as CSV
    GET /api/v1/calls/{call_id}          one call, or 404
    GET /api/v1/calls/{call_id}/recording  the WAV file, or 404
    GET /api/v1/live/...                 the live board (issue 13; :mod:`mediasrv.api.live`)
    GET /console/...                     the web console's static files (:mod:`mediasrv.api.console`)

Errors are JSON ``{"error": "..."}`` with a fitting status; a bad query parameter is a 400
that names the parameter.

Security (issue 8, finding 5; :class:`HttpPolicy`): every route but the open ops endpoints
needs ``Authorization: Bearer <token>`` (RFC 6750; 401 with ``WWW-Authenticate: Bearer``
otherwise), a foreign ``Host`` gets 421 (DNS rebinding, :mod:`mediasrv.api.hosts`), every
response carries ``nosniff``, ``no-store``, ``no-referrer`` and a deny-all CSP, and the
``Server`` header names no software version. A request head must arrive within
``idle_timeout`` of the connection opening or of the previous response (slow headers).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from mediasrv.api.auth import Principal, Scope, TokenStore, bearer_token
from mediasrv.api.console import CONSOLE_CSP, CONSOLE_PREFIX, ConsoleRoutes
from mediasrv.api.csv_export import CsvEncoding, Unencodable, csv_header, csv_raw_rows, csv_table
from mediasrv.api.hosts import HostAllowlist
from mediasrv.api.live import LIVE_PREFIX, LiveRoutes, live_openapi_paths
from mediasrv.api.openapi import openapi_document
from mediasrv.api.v1.problem import Problem, problem_response
from mediasrv.api.v1.root import PROBLEM_PREFIXES, V1Api
from mediasrv.calls.caller_id import number_info
from mediasrv.outputs.attributes import AttributePolicy, StaticPolicy
from mediasrv.outputs.calllog import (
    FLAG_FILTERS,
    QUERY_FILTERS,
    BadCursor,
    CallLog,
    CallQuery,
    Disposition,
    decode_cursor,
)
from mediasrv.outputs.live_board import LiveBoard
from mediasrv.outputs.metrics import CONTENT_TYPE, Metrics
from mediasrv.outputs.recordings import is_within
from mediasrv.outputs.reports import METRICS, Dimension, ReportQuery, ReportRow

__all__ = ["MAX_EXPORT", "MAX_LIMIT", "OPS_ENDPOINTS", "PRINCIPAL", "HttpPolicy", "HttpServer"]

log = logging.getLogger(__name__)

MAX_LIMIT = 1000  # rows per JSON page
MAX_EXPORT = 100_000  # rows per CSV export
EXPORT_PAGE = 5000  # rows fetched from the store at a time while streaming CSV
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPS_ENDPOINTS = ("/health", "/ready", "/metrics")
PRINCIPAL = web.RequestKey("principal", Principal)  # who the request's token belongs to

# On every response: API JSON is never a document to render, frame, cache or refer from.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


@dataclass(frozen=True)
class HttpPolicy:
    """Who may call what, which Host names are ours, and the connection timeout."""

    tokens: TokenStore
    open_endpoints: frozenset[str] = field(default_factory=lambda: frozenset(OPS_ENDPOINTS))
    allowed_hosts: tuple[str, ...] = ()
    server_header: str = ""
    idle_timeout: float = 15.0


class BadParam(ValueError):
    """A query parameter could not be understood (answer 400)."""


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _unauthorized(error: str | None, problem: bool = False) -> web.Response:
    # RFC 6750 §3: the challenge; §3.1: error="invalid_token" when a token was presented.
    challenge = 'Bearer realm="mediasrv"' + (f', error="{error}"' if error else "")
    message = "a valid bearer token is required"
    if problem:
        return problem_response(Problem(401, message, headers={"WWW-Authenticate": challenge}))
    response = _json_error(401, message)
    response.headers["WWW-Authenticate"] = challenge
    return response


def _scope_for(path: str) -> Scope:
    """The scope a path needs: the live board's routes are open to tenant tokens."""
    if path == LIVE_PREFIX or path.startswith(LIVE_PREFIX + "/"):
        return Scope.BOARD
    return Scope.ADMIN


def _route(request: web.Request) -> str:
    """The matched route's pattern (bounded label values), not the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _is_v1(request: web.Request) -> bool:
    return request.path.startswith(PROBLEM_PREFIXES)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadParam as e:
        return _json_error(400, str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        # 405 keeps its Allow header (RFC 9110 §15.5.6); the v1 API answers problem+json
        keep = {k: v for k, v in e.headers.items() if k in ("Allow", "Content-Range")}
        if _is_v1(request):
            return problem_response(Problem(e.status, e.reason, headers=keep))
        response = _json_error(e.status, e.reason)
        response.headers.update(keep)
        return response
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        if _is_v1(request):
            return problem_response(Problem(500, "internal error"))
        return _json_error(500, "internal error")


def _int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(f"{name}: expected an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadParam(f"{name}: must be from {lo} to {hi}, got {value}")
    return value


_SPACED_OFFSET = re.compile(r" (\d\d:?\d\d)$")


def _time_param(q: Mapping[str, str], name: str) -> float | None:
    """Unix seconds (``1700000000.5``) or ISO 8601 (``2026-11-22T03:00:00+09:00``; naive = UTC)."""
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        # a "+09:00" offset arrives as " 09:00" when the client did not escape the '+'
        dt = datetime.fromisoformat(_SPACED_OFFSET.sub(r"+\1", raw.replace("Z", "+00:00")))
    except ValueError:
        raise BadParam(f"{name}: expected unix seconds or ISO 8601, got {raw!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _disposition_param(q: Mapping[str, str]) -> Disposition | None:
    raw = q.get("disposition")
    if raw is None or raw == "":
        return None
    try:
        return Disposition.parse(raw.lower())
    except ValueError:
        choices = ", ".join(d.value for d in Disposition)
        raise BadParam(f"disposition: unknown value {raw!r}; expected one of {choices}") from None


# query parameter -> column; ``operator`` is the operator URI
_FILTER_PARAMS = {n: n for n in QUERY_FILTERS if n != "operator_uri"} | {"operator": "operator_uri"}
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")
Reports = Callable[[ReportQuery], Awaitable[list[ReportRow]]]


def _flag_param(q: Mapping[str, str], name: str) -> bool | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise BadParam(f"{name}: expected true or false, got {raw!r}")


def _call_query(q: Mapping[str, str], limit: int, offset: int = 0) -> CallQuery:
    """Every attribute filter of the call log (issue 11, item 5) and the keyset cursor."""
    equals: list[tuple[str, str]] = []
    for param, column in _FILTER_PARAMS.items():
        value = q.get(param)
        if value is None or value == "":
            continue
        if column == "disposition":
            disposition = _disposition_param(q)
            assert disposition is not None
            value = disposition.value
        equals.append((column, value))
    flags = [(name, flag) for name in FLAG_FILTERS if (flag := _flag_param(q, name)) is not None]
    cursor = q.get("cursor") or None
    try:
        after = decode_cursor(cursor) if cursor else None
    except BadCursor as e:
        raise BadParam(str(e)) from None
    if after is not None and offset:
        raise BadParam("offset: not with a cursor (the cursor says where the page starts)")
    return CallQuery(
        tuple(equals), tuple(flags), _time_param(q, "since"), _time_param(q, "until"),
        after, limit, offset,
    )  # fmt: skip


def _csv_encoding(q: Mapping[str, str]) -> tuple[CsvEncoding, bool, bool]:
    """(encoding, write a BOM, replace unencodable characters) from the query."""
    try:
        encoding = CsvEncoding.parse(q.get("encoding") or "utf-8")
    except ValueError as e:
        raise BadParam(str(e)) from None
    bom = q.get("bom", "1").lower() not in _FALSE and encoding is CsvEncoding.UTF8
    replace = (q.get("replace") or "").lower() in _TRUE
    return encoding, bom, replace


async def _encode_off_loop(rows: list[Any], encoding: CsvEncoding, replace: bool) -> bytes:
    """A page of CSV is tens of milliseconds of CPU: never on the event loop (SIP timers)."""
    return await asyncio.to_thread(csv_raw_rows, rows, encoding, replace)


def _report_keys(query: ReportQuery) -> list[str]:
    keys = {"operator": "operator", "prefecture": "prefecture_code"}
    out: list[str] = []
    for d in query.group_by:
        out.append(keys.get(d.value, d.value))
        if d is Dimension.PREFECTURE:
            out.append("prefecture")
    return out


class HttpServer:
    """``/health``, ``/ready``, ``/metrics`` and the call-log API on one aiohttp site."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        store: CallLog,
        health: Callable[[], dict[str, object]],
        recordings_dir: Path | None = None,
        *,
        policy: HttpPolicy,
        attributes: AttributePolicy | None = None,
        reports: Reports | None = None,
        board: LiveBoard | None = None,
        v1: V1Api | None = None,
    ) -> None:
        self.host = host
        self._v1 = v1  # issue 12: the integrator API (its own modules, mounted here)
        self._port = port
        self.policy = policy
        self._hosts = HostAllowlist(host, policy.allowed_hosts)
        self._metrics = metrics
        self._store = store
        self._health = health
        # When set, a recording is served only from inside this directory.
        self._recordings_dir = recordings_dir
        self._attributes: AttributePolicy = attributes or StaticPolicy()
        self._reports = reports
        self._board = board  # issue 13: the live board and the console (None: not served)
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._runner is not None:
            for addr in self._runner.addresses:
                if isinstance(addr, tuple) and len(addr) >= 2:
                    return int(addr[1])
        return self._port

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        self._metrics.http_requests_total.labels(route=_route(request), code=str(resp.status)).inc()
        return resp

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Host allowlist first (a rebound name learns nothing), then the bearer token."""
        if not self._hosts.allows(request.headers.get("Host")):
            return _json_error(421, "this server does not answer that Host name")
        if request.path in self.policy.open_endpoints or self._is_console_asset(request.path):
            return await handler(request)
        if self._v1 is not None and (request.method, request.path) in self._v1.public_routes:
            return await handler(request)  # the login (its handler checks the Origin)
        v1 = _is_v1(request)
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return _unauthorized(None, v1)
        principal = self.policy.tokens.authenticate(token)
        if principal is None and self._v1 is not None:
            principal = await self._v1.authenticate(token)
        if principal is None:
            return _unauthorized("invalid_token", v1)
        if not self._permitted(principal, request.path):
            # RFC 6750 §3.1: a valid token without the scope the resource needs
            challenge = 'Bearer realm="mediasrv", error="insufficient_scope", scope="admin"'
            message = "this token may not use this resource"
            if v1:
                return problem_response(
                    Problem(403, message, headers={"WWW-Authenticate": challenge})
                )
            response = _json_error(403, message)
            response.headers["WWW-Authenticate"] = challenge
            return response
        request[PRINCIPAL] = principal
        return await handler(request)

    def _permitted(self, principal: Principal, path: str) -> bool:
        """Admin: everything. The live board: board tokens and business tokens (each sees
        its own business there). The v1 tenant paths: business tokens (their handlers
        answer 404 for another business)."""
        if principal.allows(Scope.ADMIN):
            return True
        if _scope_for(path) is Scope.BOARD:
            return principal.allows(Scope.BOARD) or Scope.BUSINESS in principal.scopes
        return Scope.BUSINESS in principal.scopes and self._tenant_path(path)

    def _tenant_path(self, path: str) -> bool:
        return self._v1 is not None and path.startswith(self._v1.tenant_prefixes)

    def _is_console_asset(self, path: str) -> bool:
        """The console's static files need no token: they hold no data (the API does)."""
        return self._board is not None and (
            path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")
        )

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        if self._is_console_asset(request.path):
            response.headers["Content-Security-Policy"] = CONSOLE_CSP
        response.headers["Server"] = self.policy.server_header

    def _build_app(self) -> web.Application:
        # _count is outermost so that it sees the status the error middleware produced;
        # _guard comes before any handler (an unknown path without a token is a 401, not 404).
        app = web.Application(middlewares=[self._count, self._guard, _errors_as_json])
        app.on_response_prepare.append(self._headers)
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/ready", self._get_ready)
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/api/v1/openapi.json", self._get_openapi)
        app.router.add_get("/api/v1/calls", self._list_calls)
        app.router.add_get("/api/v1/calls.csv", self._export_calls)
        app.router.add_get("/api/v1/calls/{call_id}", self._get_call)
        app.router.add_get("/api/v1/calls/{call_id}/recording", self._get_recording)
        app.router.add_get("/api/v1/number-info/{number}", self._get_number_info)
        app.router.add_get("/api/v1/reports/{group_by}", self._get_report)
        if self._board is not None:
            LiveRoutes(self._board, PRINCIPAL).add_to(app)
            ConsoleRoutes().add_to(app)
        if self._v1 is not None:
            self._v1.mount(app)
        return app

    async def start(self) -> None:
        # handle_signals=False: SIGTERM belongs to the server's drain logic, not to aiohttp.
        # keepalive_timeout is also aiohttp's deadline for the first request head on a new
        # connection: it closes slow-header and idle connections alike.
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=2.0,
            keepalive_timeout=self.policy.idle_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("HTTP listening", extra={"host": self.host, "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ---------------------------------------------------------------- ops

    def _health_state(self) -> dict[str, object]:
        state = dict(self._health())
        state.setdefault("status", "ok")
        return state

    async def _get_health(self, request: web.Request) -> web.Response:
        state = self._health_state()
        return web.json_response(state, status=200 if state["status"] == "ok" else 503)

    async def _get_ready(self, request: web.Request) -> web.Response:
        state = self._health_state()
        reasons: list[str] = []
        if state["status"] != "ok":
            reasons.append(f"status is {state['status']}")
        try:
            await self._store.count_calls()
        except Exception as e:
            reasons.append(f"call log unavailable: {e}")
        body: dict[str, Any] = {"ready": not reasons, "status": state["status"]}
        if reasons:
            body["reasons"] = reasons
        return web.json_response(body, status=503 if reasons else 200)

    async def _get_openapi(self, request: web.Request) -> web.Response:
        doc = openapi_document(MAX_LIMIT)
        if self._board is not None:
            doc["paths"].update(live_openapi_paths())
        if self._v1 is not None:
            doc = self._v1.extend_openapi(doc)
            for path in self.policy.open_endpoints:  # served without a token
                for op in doc["paths"].get(path, {}).values():
                    op["security"] = []
        return web.json_response(doc)

    async def _get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    # ---------------------------------------------------------------- calls

    async def _list_calls(self, request: web.Request) -> web.Response:
        """A page, newest first, with ``next_cursor`` for the next one (keyset pagination:
        as fast on the millionth row as on the first). ``total`` is counted unless a
        cursor is given (a count costs a scan of every match)."""
        q = request.query
        limit = _int_param(q, "limit", 100, 1, MAX_LIMIT)
        offset = _int_param(q, "offset", 0, 0, 2**62)
        query = _call_query(q, limit, offset)
        calls, next_cursor = await self._store.query_calls(query)
        body: dict[str, object] = {
            "calls": [c.to_dict() for c in calls],
            "limit": limit,
            "offset": offset,
            "next_cursor": next_cursor,
        }
        if query.after is None:
            body["total"] = await self._store.count_query(query)
        return web.json_response(body)

    async def _export_calls(self, request: web.Request) -> web.StreamResponse:
        """CSV of the call log. UTF-8 is streamed page by page; CP932 / Shift_JIS is built
        first, so that a character it cannot hold is a 400 naming it, not a cut-off file."""
        q = request.query
        limit = _int_param(q, "limit", MAX_EXPORT, 1, MAX_EXPORT)
        offset = _int_param(q, "offset", 0, 0, 2**62)
        encoding, bom, replace = _csv_encoding(q)
        query = _call_query(q, min(EXPORT_PAGE, limit), offset)
        headers = {
            "Content-Type": f"text/csv; charset={encoding.value}",
            "Content-Disposition": 'attachment; filename="calls.csv"',
        }
        if encoding is not CsvEncoding.UTF8:
            try:
                chunks = [csv_header(encoding)]
                async for rows in self._store.export_raw(query, limit, EXPORT_PAGE):
                    chunks.append(await _encode_off_loop(rows, encoding, replace))
            except Unencodable as e:
                return _json_error(400, f"encoding={encoding.value}: {e}")
            return web.Response(body=b"".join(chunks), headers=headers)
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        await resp.write((encoding.bom if bom else b"") + csv_header(encoding))
        async for rows in self._store.export_raw(query, limit, EXPORT_PAGE):
            await resp.write(await _encode_off_loop(rows, encoding, False))
        await resp.write_eof()
        return resp

    # ---------------------------------------------------------------- numbers, reports

    async def _get_number_info(self, request: web.Request) -> web.Response:
        info = number_info(request.match_info["number"])
        return web.json_response(info.to_dict())

    async def _get_report(self, request: web.Request) -> web.Response:
        group = request.match_info["group_by"]
        as_csv = group.endswith(".csv")
        query = self._report_query(group.removesuffix(".csv"), request.query)
        if self._reports is None:
            return _json_error(503, "reports are not available on this server")
        rows = await self._reports(query)
        if not as_csv:
            return web.json_response(
                {
                    "group_by": [d.value for d in query.group_by],
                    "since": query.since,
                    "until": query.until,
                    "business": query.business,
                    "time_zone": str(query.zone),
                    "rows": [r.to_dict() for r in rows],
                }
            )
        encoding, _bom, replace = _csv_encoding(request.query)
        dicts = [r.to_dict() for r in rows]
        header = [*_report_keys(query), *METRICS]
        try:
            body = csv_table(header, [[d[h] for h in header] for d in dicts], encoding, replace)
        except Unencodable as e:
            return _json_error(400, f"encoding={encoding.value}: {e}")
        return web.Response(
            body=body,
            headers={
                "Content-Type": f"text/csv; charset={encoding.value}",
                "Content-Disposition": 'attachment; filename="report.csv"',
            },
        )

    def _report_query(self, group: str, q: Mapping[str, str]) -> ReportQuery:
        dims: list[Dimension] = []
        for name in group.split(","):
            try:
                dims.append(Dimension(name.strip().lower()))
            except ValueError:
                choices = ", ".join(d.value for d in Dimension)
                raise BadParam(f"group_by: unknown {name!r}; expected some of {choices}") from None
        until = _time_param(q, "until") or time.time()
        since = _time_param(q, "since")
        if since is None:
            since = until - 30 * 86400
        business = q.get("business") or None
        zone_name = q.get("tz")
        try:
            zone = ZoneInfo(zone_name) if zone_name else self._attributes.time_zone(business or "")
        except (ZoneInfoNotFoundError, ValueError):
            raise BadParam(f"tz: unknown time zone {zone_name!r}") from None
        try:
            return ReportQuery(tuple(dims), since, until, zone, business)
        except ValueError as e:
            raise BadParam(str(e)) from None

    async def _get_call(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        rec = await self._store.get_call(call_id)
        if rec is None:
            return _json_error(404, f"call {call_id!r} not found")
        return web.json_response(rec.to_dict())

    async def _get_recording(self, request: web.Request) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        rec = await self._store.get_call(call_id)
        if rec is None:
            return _json_error(404, f"call {call_id!r} not found")
        if not rec.recording_path:
            return _json_error(404, f"call {call_id!r} has no recording")
        path = Path(rec.recording_path)
        problem = await asyncio.to_thread(self._recording_problem, path)  # stat off the loop
        if problem:
            log.warning("recording not served: %s", problem, extra={"call_id": call_id})
            return _json_error(404, f"the recording of call {call_id!r} is {problem}")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "audio/wav",
                "Content-Disposition": f'attachment; filename="{call_id}.wav"',
            },
        )

    def _recording_problem(self, path: Path) -> str:
        if self._recordings_dir is not None and not is_within(path, self._recordings_dir):
            return "outside the recordings directory"
        if not path.is_file():
            return "missing"
        return ""
