"""A business's webhook endpoints and their deliveries (issue 12 §1, §4): CRUD, rotate
the signing secret, send a test event, the delivery log and its attempts, replay one
delivery, recover every dead delivery since a time. The secret is shown in full once, when
the endpoint is made or rotated; lists show a masked hint."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import Op, Param, Req, Resp, json_ok
from mediasrv.outputs.call_events import CALL_EVENT_TYPES
from mediasrv.outputs.outbox import Endpoint, OutboxStore
from mediasrv.outputs.webhooks import TargetRefused

__all__ = ["webhook_ops"]

EVENT_TYPES = [*CALL_EVENT_TYPES, "webhook.test"]
ENDPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint_id", "url", "event_types", "enabled"],
    "properties": {
        "endpoint_id": {"type": "string"},
        "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string"}},
        "enabled": {"type": "boolean"},
        "disabled_reason": {"type": ["string", "null"]},
        "description": {"type": "string"},
        "created_at": {"type": "number"},
        "secret_hints": {"type": "array", "items": {"type": "string"}},
        "secret": {"type": "string", "description": "only in the answer that made it"},
    },
}
NEW_ENDPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 2048,
                "description": "http(s) URL, or mailto:addr?lang=ja|en for email"},
        "event_types": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"type": "string", "enum": ["*", *EVENT_TYPES]}},
        "description": {"type": "string", "maxLength": 500},
    },
}
PATCH_ENDPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["enabled"],
    "additionalProperties": False,
    "properties": {"enabled": {"type": "boolean"}},
}
RECOVER: dict[str, Any] = {
    "type": "object",
    "required": ["since"],
    "additionalProperties": False,
    "properties": {"since": {"type": "number", "minimum": 0,
                             "description": "unix seconds: events created since then"}},
}
DELIVERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "delivery_id": {"type": "integer"},
        "event_id": {"type": "string", "description": "the webhook-id header"},
        "endpoint_id": {"type": "string"},
        "type": {"type": "string"},
        "subject": {"type": "string"},
        "sequence": {"type": "integer"},
        "state": {"type": "string", "enum": ["pending", "delivered", "dead"]},
        "attempts": {"type": "integer"},
        "next_at": {"type": ["number", "null"]},
        "last_status": {"type": ["integer", "null"]},
        "last_error": {"type": ["string", "null"]},
        "delivered_at": {"type": ["number", "null"]},
    },
}
ATTEMPT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "attempt": {"type": "integer"},
        "at": {"type": "number"},
        "status": {"type": ["integer", "null"]},
        "latency_ms": {"type": "number"},
        "error": {"type": ["string", "null"]},
        "response_excerpt": {"type": ["string", "null"]},
    },
}
_EP = Param("endpoint_id", "path", {"type": "string", "minLength": 1, "maxLength": 64},
            "the endpoint's id (ep_...)", True)
_DELIVERY = Param("delivery_id", "path", {"type": "integer", "minimum": 1, "maximum": 2**62},
                  "the delivery's id", True)


def _mask(secret: str) -> str:
    return secret[:10] + "..."


def _endpoint_json(ep: Endpoint, secret: str | None = None) -> dict[str, object]:
    d: dict[str, object] = {
        "endpoint_id": ep.endpoint_id,
        "url": ep.url,
        "event_types": list(ep.event_types),
        "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason,
        "description": ep.description,
        "created_at": ep.created_at,
        "secret_hints": [_mask(s) for s in ep.secrets],
    }
    if secret is not None:
        d["secret"] = secret
    return d


def _list(items: list[Any]) -> dict[str, Any]:
    return {"items": items, "next_cursor": None}


class WebhookResources:
    def __init__(self, services: Services) -> None:
        self.s = services

    def _outbox(self) -> OutboxStore:
        if self.s.outbox is None:
            raise Problem(503, "webhooks are not enabled on this server", slug="unavailable")
        return self.s.outbox

    async def _endpoint(self, req: Req) -> Endpoint:
        ep = await self._outbox().endpoint(req.business, str(req.params["endpoint_id"]))
        if ep is None:  # another tenant's endpoint is "not found" too
            raise Problem(404, f"no endpoint {req.params['endpoint_id']!r}",
                          field="path:endpoint_id")
        return ep

    async def list_endpoints(self, req: Req) -> web.Response:
        eps = await self._outbox().endpoints(req.business)
        return json_ok(_list([_endpoint_json(e) for e in eps]))

    async def create_endpoint(self, req: Req) -> web.Response:
        body = req.body
        try:
            ep = await self._outbox().add_endpoint(
                req.business, body["url"], body.get("event_types", ["*"]),
                description=body.get("description", ""))
        except (TargetRefused, ValueError) as exc:
            raise Problem(422, str(exc), slug="target-refused", field="url") from None
        path = f"/api/v1/businesses/{req.business}/webhooks/{ep.endpoint_id}"
        return json_ok(_endpoint_json(ep, ep.secrets[0]), 201, {"Location": path})

    async def get_endpoint(self, req: Req) -> web.Response:
        return json_ok(_endpoint_json(await self._endpoint(req)))

    async def patch_endpoint(self, req: Req) -> web.Response:
        ep = await self._endpoint(req)
        await self._outbox().set_enabled(req.business, ep.endpoint_id, bool(req.body["enabled"]),
                                         "disabled over the API")
        return json_ok(_endpoint_json(await self._endpoint(req)))

    async def delete_endpoint(self, req: Req) -> web.Response:
        ep = await self._endpoint(req)
        await self._outbox().delete_endpoint(req.business, ep.endpoint_id)
        return web.Response(status=204)

    async def rotate_secret(self, req: Req) -> web.Response:
        ep = await self._endpoint(req)
        overlap = self.s.limits.secret_overlap
        secret = await self._outbox().rotate_secret(req.business, ep.endpoint_id, overlap)
        return json_ok({"endpoint_id": ep.endpoint_id, "secret": secret,
                        "previous_valid_for_s": overlap})

    async def send_test(self, req: Req) -> web.Response:
        ep = await self._endpoint(req)
        event_id = await self._outbox().send_test(req.business, ep.endpoint_id)
        return json_ok({"webhook_id": event_id}, 202)

    async def recover(self, req: Req) -> web.Response:
        ep = await self._endpoint(req)
        n = await self._outbox().recover(req.business, ep.endpoint_id, float(req.body["since"]))
        return json_ok({"requeued": n}, 202)

    async def list_deliveries(self, req: Req) -> web.Response:
        ep = await self._endpoint(req)
        rows = await self._outbox().deliveries(req.business, ep.endpoint_id,
                                               req.params.get("state"))
        return json_ok(_list(rows))

    async def _delivery_exists(self, req: Req) -> int:
        delivery_id = int(req.params["delivery_id"])
        rows = await self._outbox().deliveries(req.business)
        if not any(r["delivery_id"] == delivery_id for r in rows):
            raise Problem(404, f"no delivery {delivery_id}", field="path:delivery_id")
        return delivery_id

    async def list_attempts(self, req: Req) -> web.Response:
        delivery_id = await self._delivery_exists(req)
        attempts = await self._outbox().attempts(req.business, delivery_id)
        return json_ok(_list([{"attempt": a.attempt, "at": a.at, "status": a.status,
                               "latency_ms": a.latency_ms, "error": a.error,
                               "response_excerpt": a.response_excerpt} for a in attempts]))

    async def replay(self, req: Req) -> web.Response:
        delivery_id = int(req.params["delivery_id"])
        if not await self._outbox().replay(req.business, delivery_id):
            raise Problem(404, f"no delivery {delivery_id}", field="path:delivery_id")
        return json_ok({"delivery_id": delivery_id, "state": "pending"}, 202)


def webhook_ops(services: Services) -> list[Op]:
    r = WebhookResources(services)
    w = "/api/v1/businesses/{business}/webhooks"
    d = "/api/v1/businesses/{business}/deliveries/{delivery_id}"
    ep = (_EP,)
    na = {503: Resp("webhooks are not enabled on this server")}
    lst = lambda s: {"type": "object", "properties": {  # noqa: E731
        "items": {"type": "array", "items": s}, "next_cursor": {"type": ["string", "null"]}}}
    return [
        Op("GET", w, "listWebhooks", "The business's endpoints (secrets masked)",
           r.list_endpoints, {200: Resp("OK", lst(ENDPOINT)), **na}, tag="webhooks"),
        Op("POST", w, "createWebhook", "Add an endpoint; the answer shows its secret once",
           r.create_endpoint, {201: Resp("created", ENDPOINT, headers=("Location",)), **na},
           body=NEW_ENDPOINT, tag="webhooks"),
        Op("GET", w + "/{endpoint_id}", "getWebhook", "One endpoint", r.get_endpoint,
           {200: Resp("OK", ENDPOINT), **na}, params=ep, tag="webhooks"),
        Op("PATCH", w + "/{endpoint_id}", "patchWebhook", "Enable or disable an endpoint",
           r.patch_endpoint, {200: Resp("OK", ENDPOINT), **na}, params=ep, body=PATCH_ENDPOINT,
           tag="webhooks"),
        Op("DELETE", w + "/{endpoint_id}", "deleteWebhook",
           "Remove an endpoint (its undelivered events are dropped)", r.delete_endpoint,
           {204: Resp("removed"), **na}, params=ep, tag="webhooks"),
        Op("POST", w + "/{endpoint_id}/rotate-secret", "rotateWebhookSecret",
           "A new signing secret; the old one keeps signing for a while", r.rotate_secret,
           {200: Resp("the new secret (shown once)", {"type": "object", "properties": {
               "endpoint_id": {"type": "string"}, "secret": {"type": "string"},
               "previous_valid_for_s": {"type": "number"}}}), **na},
           params=ep, tag="webhooks"),
        Op("POST", w + "/{endpoint_id}/test", "testWebhook", "Send a webhook.test event",
           r.send_test, {202: Resp("queued", {"type": "object", "properties": {
               "webhook_id": {"type": "string"}}}), **na}, params=ep, tag="webhooks"),
        Op("POST", w + "/{endpoint_id}/recover", "recoverWebhook",
           "Send again every dead delivery of events since a time", r.recover,
           {202: Resp("requeued", {"type": "object", "properties": {
               "requeued": {"type": "integer"}}}), **na},
           params=ep, body=RECOVER, tag="webhooks"),
        Op("GET", w + "/{endpoint_id}/deliveries", "listDeliveries", "The delivery log",
           r.list_deliveries, {200: Resp("OK", lst(DELIVERY)), **na},
           params=(_EP, Param("state", "query", {"type": "string",
                                                 "enum": ["pending", "delivered", "dead"]})),
           tag="webhooks"),
        Op("GET", d + "/attempts", "listAttempts", "Every attempt of one delivery",
           r.list_attempts, {200: Resp("OK", lst(ATTEMPT)), **na}, params=(_DELIVERY,),
           tag="webhooks"),
        Op("POST", d + "/replay", "replayDelivery", "Send one delivery again (same webhook-id)",
           r.replay, {202: Resp("requeued", {"type": "object", "properties": {
               "delivery_id": {"type": "integer"}, "state": {"type": "string"}}}), **na},
           params=(_DELIVERY,), tag="webhooks"),
    ]
