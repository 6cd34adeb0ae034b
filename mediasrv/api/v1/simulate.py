"""The dry run over the API (issue 10 §5, issue 13 §4): ``POST
/api/v1/businesses/{business}/numbers/{key}/simulate`` with a caller and a moment says what
the call would do - the rules that fired, the prompts, the targets in ring order, where it
ends - from the number's current compiled plan, without placing a call (the round-robin
pointer is peeked, not advanced). It is what ``mediasrv simulate --json`` prints, for the
console's "what happens if 090... calls this number on 12/29 at 19:00".

A business token reaches only its own numbers: another business's number is 404, the same
answer as a number that does not exist.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import Op, Param, Req, Resp, json_ok
from mediasrv.calls.compile import CompileError, compile_number
from mediasrv.calls.schedule import hours_evaluator
from mediasrv.calls.simulate import simulate
from mediasrv.config import to_e164
from mediasrv.simulate_cli import SimulateError, blocked_text, simulation_moment

__all__ = ["simulate_ops"]

SIMULATE_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "caller": {"type": "string", "maxLength": 32, "pattern": "^[0-9+*# -]*$",
                   "description": "the caller's number; empty: withheld"},
        "withheld": {"enum": ["", "anonymous", "payphone", "unavailable"]},
        "at": {"type": "string", "maxLength": 40,
               "description": "YYYY-MM-DD HH:MM on the business's clock (empty: now)"},
        "digits": {"type": "string", "maxLength": 16, "pattern": "^[0-9*#]*$",
                   "description": "keys the caller would press at successive menus"},
    },
}
_LIST = {"type": "array", "items": {"type": "string"}}
SIMULATION: dict[str, Any] = {
    "type": "object",
    "required": ["number", "caller", "at", "version", "rules", "prompts", "targets", "path",
                 "lines", "ends"],
    "properties": {
        "number": {"type": "string"},
        "caller": {"type": "string"},
        "at": {"type": "string", "description": "ISO 8601 with the business's offset"},
        "version": {"type": "integer", "description": "the flow version explained"},
        "rules": {**_LIST, "description": "the rules evaluated, with what they gave"},
        "prompts": {**_LIST, "description": "heard on the path taken, in order"},
        "targets": {**_LIST, "description": "rung on the path taken, in ring order"},
        "path": {**_LIST, "description": "the steps of the path taken"},
        "lines": {**_LIST, "description": "the whole explanation, indented"},
        "ends": {"type": "string"},
    },
}


class SimulateResources:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def simulate(self, req: Req) -> web.Response:
        key = str(req.params["key"])
        nv = self.s.businesses.version_for(key)
        if nv is None or nv.business.slug != req.business:
            raise Problem(404, f"no number {key!r}", field="path:key")
        try:
            plan = compile_number(nv)
        except CompileError as exc:
            raise Problem(422, f"the stored flow does not compile: {exc}",
                          slug="invalid-configuration") from None
        body = req.body or {}
        try:
            at = simulation_moment(str(body.get("at", "")), nv.business.time_zone)
        except SimulateError as exc:
            raise Problem(422, str(exc).replace("--at", "at"), field="at") from None
        caller = str(body.get("caller", "")).strip()
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


def simulate_ops(services: Services) -> list[Op]:
    r = SimulateResources(services)
    key = Param("key", "path", {"type": "string", "minLength": 1, "maxLength": 32},
                "the tracking number", True)
    return [
        Op("POST", "/api/v1/businesses/{business}/numbers/{key}/simulate", "simulateCall",
           "Dry run: what a call from this caller at this moment would do (no call placed)",
           r.simulate, {200: Resp("the path the call would take", SIMULATION)},
           params=(key,), body=SIMULATE_BODY, tag="numbers"),
    ]
