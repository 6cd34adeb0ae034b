"""A business's dry runs and figures inside its own paths (issue 12 §1): ``simulate`` (the
path a given caller at a given time would take), number-info and the callback pool (reports
are :mod:`mediasrv.api.v1.reports`, with their CSV). A business token
runs them for its own business only: another business's is 404, like every tenant path.

- ``POST /api/v1/businesses/{business}/numbers/{key}/simulate``: the number's current flow
  version, compiled as the server would, explained by :func:`mediasrv.calls.simulate.simulate`
  (the round-robin pointer is peeked, not advanced); no call is placed.
- ``GET /api/v1/businesses/{business}/number-info/{number}``: what a number is (E.164, kind,
  numbering area, prefecture), as the call log classifies callers.
- ``GET /api/v1/businesses/{business}/callback-leases``: the callback pool (issue 12 §5),
  each number with its lease: to whom, for which call, until when.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import Op, Param, Req, Resp, json_ok
from mediasrv.calls.caller_id import number_info
from mediasrv.calls.compile import CompileError, compile_number
from mediasrv.calls.schedule import hours_evaluator
from mediasrv.calls.simulate import blocked_text, parse_at, simulate
from mediasrv.config import to_e164

__all__ = ["insight_ops"]

_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
SIMULATE_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "caller": {"type": "string", "maxLength": 64,
                   "description": "the caller's number ('' or absent: withheld)"},
        "withheld": {"type": "string", "enum": ["", "anonymous", "payphone", "unavailable"],
                     "description": "the withheld category of a caller with no number"},
        "at": {"type": "string", "maxLength": 64,
               "description": "'YYYY-MM-DD HH:MM' on the business's clock, or ISO 8601 with "
               "an offset; absent: now"},
        "digits": {"type": "string", "pattern": "^[0-9*#]{0,32}$",
                   "description": "keys the caller would press in menus"},
    },
}  # fmt: skip
SIMULATION: dict[str, Any] = {
    "type": "object",
    "required": ["number", "caller", "at", "version", "rules", "prompts", "targets", "path",
                 "lines", "ends"],
    "properties": {
        "number": {"type": "string"}, "caller": {"type": "string"},
        "at": {"type": "string", "format": "date-time"}, "version": {"type": "integer"},
        "rules": {**_STRINGS, "description": "rules evaluated, in order"},
        "prompts": {**_STRINGS, "description": "heard on the path taken"},
        "targets": {**_STRINGS, "description": "rung on the path taken, in order"},
        "path": {**_STRINGS, "description": "steps of the path taken"},
        "lines": {**_STRINGS, "description": "the whole explanation"},
        "ends": {"type": "string", "description": "where the path taken stops"},
    },
}  # fmt: skip
NUMBER_INFO: dict[str, Any] = {
    "type": "object",
    "required": ["input", "e164", "kind"],
    "properties": {
        "input": {"type": "string"}, "e164": {"type": ["string", "null"]},
        "kind": {"type": "string"}, "area": {"type": ["string", "null"]},
        "prefecture_code": {"type": ["string", "null"], "description": "JIS X 0401"},
        "prefecture": {"type": ["string", "null"]}, "also_prefectures": _STRINGS,
        "source": {"type": ["string", "null"]}, "dial_prefix": {"type": ["string", "null"]},
    },
}  # fmt: skip
LEASES: dict[str, Any] = {
    "type": "object",
    "required": ["items"],
    "properties": {"items": {"type": "array", "items": {
        "type": "object",
        "required": ["number", "active"],
        "properties": {
            "number": {"type": "string", "description": "the callback number (E.164)"},
            "active": {"type": "boolean", "description": "a call to it reaches the caller now"},
            "caller": {"type": ["string", "null"]}, "call_id": {"type": ["string", "null"],
            "description": "the call whose email showed the number"},
            "medium": {"type": ["string", "null"]}, "campaign": {"type": ["string", "null"]},
            "tracking_number": {"type": ["string", "null"]},
            "leased_at": {"type": ["number", "null"]}, "expires_at": {"type": ["number", "null"]},
        },
    }}},
}  # fmt: skip
def _number_info(req: Req) -> web.Response:
    return json_ok(number_info(str(req.params["number"])).to_dict())


class Insights:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def simulate_number(self, req: Req) -> web.Response:
        key = str(req.params["key"])
        nv = self.s.businesses.version_for(key)
        if nv is None or nv.business.slug != req.business:
            raise Problem(404, f"number {key!r} not found", field="path:key")
        try:
            plan = compile_number(nv)
        except CompileError as exc:
            raise Problem(422, f"the stored flow does not compile: {exc}",
                          slug="flow-does-not-compile") from None  # fmt: skip
        body: dict[str, Any] = req.body or {}
        at = self._moment(str(body.get("at", "")), nv.business.time_zone)
        caller = str(body.get("caller", ""))
        sim = simulate(
            plan,
            caller=to_e164(caller) or caller,  # as the server sees it (flow_legs.py)
            withheld=str(body.get("withheld", "")),
            at=at,
            digits=str(body.get("digits", "")),
            hours=hours_evaluator,
            blocked=blocked_text,
            peek_rotation=self.s.businesses.peek_rotation,
        )
        out = asdict(sim)
        out["at"] = sim.at.isoformat()
        return json_ok(out)

    @staticmethod
    def _moment(text: str, zone: str) -> datetime:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Problem(422, f"the business's time zone {zone!r} is unknown") from None
        if not text:
            return datetime.now(tz)
        try:
            return parse_at(text, zone)
        except (ValueError, OverflowError) as exc:
            raise Problem(422, f"at: {exc}", field="body/at") from None

    async def callback_leases(self, req: Req) -> web.Response:
        business = await self.s.businesses.get(req.business)
        pool = business.callback_pool if business is not None else ()
        kept = self.s.callback_leases() if self.s.callback_leases is not None else []
        leases = {lease.number: lease for lease in kept if lease.call.business == req.business}
        now = time.time()
        items: list[dict[str, object]] = []
        for number in pool:
            lease = leases.get(number)
            if lease is None:
                items.append({"number": number, "active": False, "caller": None,
                              "call_id": None, "medium": None, "campaign": None,
                              "tracking_number": None, "leased_at": None, "expires_at": None})
                continue
            c = lease.call
            items.append({"number": number, "active": lease.active(now), "caller": c.caller,
                          "call_id": c.call_id, "medium": c.medium, "campaign": c.campaign,
                          "tracking_number": c.tracking_number, "leased_at": lease.leased_at,
                          "expires_at": lease.expires_at})  # fmt: skip
        return json_ok({"items": items})


def insight_ops(services: Services) -> list[Op]:
    r = Insights(services)
    b = "/api/v1/businesses/{business}"
    key = Param("key", "path", {"type": "string", "minLength": 1, "maxLength": 32},
                "the tracking number", True)  # fmt: skip
    number = Param("number", "path", {"type": "string", "minLength": 1, "maxLength": 64},
                   "a number, tel:/sip: URI, or a withheld word (anonymous)", True)  # fmt: skip
    async def info(req: Req) -> web.Response:
        return _number_info(req)

    return [
        Op("POST", b + "/numbers/{key}/simulate", "simulateNumber",
           "Dry run: the path a call from this caller at this time would take (no call)",
           r.simulate_number, {200: Resp("the explanation", SIMULATION)}, params=(key,),
           body=SIMULATE_BODY, tag="flows"),
        Op("GET", b + "/number-info/{number}", "getNumberInfo",
           "What a number is: E.164, kind, numbering area, prefecture", info,
           {200: Resp("OK", NUMBER_INFO)}, params=(number,), tag="numbers"),
        Op("GET", b + "/callback-leases", "listCallbackLeases",
           "The callback pool: each number and its lease (caller, call, medium, expiry)",
           r.callback_leases, {200: Resp("OK", LEASES)}, tag="numbers"),
    ]  # fmt: skip
