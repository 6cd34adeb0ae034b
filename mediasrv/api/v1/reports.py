"""Reports of a business (issue 11 item 6, in the tenant paths for the console, issue 13 §3):
calls, answered, valid, first-time ... grouped by medium, campaign, tracking number, operator,
prefecture, day and hour, in the business's time zone; JSON or CSV.

The admin route ``/api/v1/reports/{group_by}`` (:mod:`mediasrv.api.http`) is the same query
over every business; here the business is the token's, always.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from mediasrv.api.csv_export import CsvEncoding, Unencodable, csv_table
from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import Op, Param, Req, Resp, json_ok
from mediasrv.outputs.reports import METRICS, Dimension, ReportQuery

__all__ = ["report_ops"]

DEFAULT_DAYS = 30  # the period when ``since`` is not given
_DIMS = "|".join(d.value for d in Dimension)
_GROUP_BY = {"type": "string", "pattern": f"^({_DIMS})(,({_DIMS}))*$", "maxLength": 128}
_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
_REPORT: dict[str, Any] = {
    "type": "object",
    "required": ["group_by", "since", "until", "time_zone", "rows"],
    "properties": {
        "group_by": {"type": "array", "items": {"type": "string"}},
        "since": {"type": "number"},
        "until": {"type": "number"},
        "time_zone": {"type": "string"},
        "rows": {"type": "array", "items": {"type": "object", "properties": {
            **{m: {"type": "integer"} for m in METRICS[:7]},
            "answer_rate": _NUM_OR_NULL, "talk_seconds": {"type": "number"},
            "mean_talk_seconds": _NUM_OR_NULL, "mean_ring_seconds": _NUM_OR_NULL}}},
    },
}


def _key_columns(query: ReportQuery) -> list[str]:
    names = {Dimension.OPERATOR: "operator", Dimension.PREFECTURE: "prefecture_code"}
    out: list[str] = []
    for d in query.group_by:
        out.append(names.get(d, d.value))
        if d is Dimension.PREFECTURE:
            out.append("prefecture")
    return out


class ReportResources:
    def __init__(self, services: Services) -> None:
        self.s = services

    def _query(self, req: Req, group: str) -> ReportQuery:
        dims = tuple(Dimension(name) for name in group.split(","))
        p = req.params
        until = float(p["until"]) if p.get("until") is not None else time.time()
        since = float(p["since"]) if p.get("since") is not None else until - DEFAULT_DAYS * 86400
        zone_name = p.get("tz")
        try:
            zone = ZoneInfo(str(zone_name)) if zone_name else self.s.time_zone(req.business)
        except (ZoneInfoNotFoundError, ValueError):
            raise Problem(422, f"tz: unknown time zone {zone_name!r}", field="query:tz") from None
        try:
            return ReportQuery(dims, since, until, zone, req.business)
        except ValueError as e:
            raise Problem(422, str(e), field="path:group_by") from None

    async def _rows(self, req: Req, group: str) -> tuple[ReportQuery, list[dict[str, object]]]:
        query = self._query(req, group)
        if self.s.reports is None:
            raise Problem(503, "reports are not available on this server", slug="no-reports")
        return query, [r.to_dict() for r in await self.s.reports(query)]

    async def get_report(self, req: Req) -> web.Response:
        query, rows = await self._rows(req, str(req.params["group_by"]))
        return json_ok({"group_by": [d.value for d in query.group_by], "since": query.since,
                        "until": query.until, "time_zone": str(query.zone), "rows": rows})

    async def export_report(self, req: Req) -> web.Response:
        query, rows = await self._rows(req, str(req.params["group_by"]))
        encoding = CsvEncoding.parse(str(req.params["encoding"]))
        header = [*_key_columns(query), *METRICS]
        table = [[d.get(h) for h in header] for d in rows]
        try:
            body = await asyncio.to_thread(csv_table, header, table, encoding, False)
        except Unencodable as e:
            raise Problem(400, f"encoding={encoding.value}: {e}", field="query:encoding",
                          slug="unencodable") from None
        return web.Response(body=body, headers={
            "Content-Type": f"text/csv; charset={encoding.value}",
            "Content-Disposition": 'attachment; filename="report.csv"',
        })


def report_ops(services: Services) -> list[Op]:
    r = ReportResources(services)
    base = "/api/v1/businesses/{business}/reports/{group_by}"
    period = (
        Param("group_by", "path", _GROUP_BY,
              f"dimensions, comma separated: {', '.join(d.value for d in Dimension)}", True),
        Param("since", "query", {"type": "number"},
              f"start_time >= since (unix seconds; default {DEFAULT_DAYS} days before until)"),
        Param("until", "query", {"type": "number"}, "start_time < until (default now)"),
        Param("tz", "query", {"type": "string", "maxLength": 64},
              "IANA time zone of days and hours (default the business's)"),
    )
    encoding = Param("encoding", "query", {"type": "string", "default": "utf-8",
                                           "enum": [e.value for e in CsvEncoding]},
                     "utf-8 (with a BOM) or cp932 / shift_jis")
    return [
        Op("GET", base, "getReport", "Calls grouped by the dimensions (answer rate, valid, ...)",
           r.get_report, {200: Resp("OK", _REPORT)}, params=period, tag="reports"),
        Op("GET", base + "/csv", "exportReport", "The report as CSV", r.export_report,
           {200: Resp("the CSV file", content_type="text/csv")}, params=(*period, encoding),
           tag="reports"),
    ]
