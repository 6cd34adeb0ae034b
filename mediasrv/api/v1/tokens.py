"""API tokens of the businesses (issue 12 §4), managed with the server (admin) token: create
(the token is in that answer only), list (no secrets), revoke."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import SLUG_SCHEMA, Op, Param, Req, Resp, json_ok

__all__ = ["token_ops"]

TOKEN: dict[str, Any] = {
    "type": "object",
    "required": ["token_id", "business", "name", "hint", "created_at"],
    "properties": {
        "token_id": {"type": "string"},
        "business": {"type": "string"},
        "name": {"type": "string"},
        "hint": {"type": "string", "description": "the prefix and first characters"},
        "created_at": {"type": "number"},
        "revoked_at": {"type": ["number", "null"]},
        "token": {"type": "string", "description": "only in the answer that made it"},
    },
}
NEW_TOKEN: dict[str, Any] = {
    "type": "object",
    "required": ["business"],
    "additionalProperties": False,
    "properties": {"business": SLUG_SCHEMA, "name": {"type": "string", "maxLength": 200}},
}
_ID = Param("token_id", "path", {"type": "string", "minLength": 1, "maxLength": 64},
            "the token's id (tok_...)", True)


class TokenResources:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def list_tokens(self, req: Req) -> web.Response:
        items = await self.s.api.tokens(req.params.get("business"))
        return json_ok({"items": [t.to_dict() for t in items], "next_cursor": None})

    async def create_token(self, req: Req) -> web.Response:
        business = req.body["business"]
        if business not in {b.slug for b in await self.s.businesses.businesses()}:
            raise Problem(422, f"no business {business!r}", field="business")
        info, token = await self.s.api.create_token(business, req.body.get("name", ""))
        return json_ok({**info.to_dict(), "token": token}, 201,
                       {"Location": f"/api/v1/tokens/{info.token_id}"})

    async def get_token(self, req: Req) -> web.Response:
        info = await self.s.api.token(str(req.params["token_id"]))
        if info is None:
            raise Problem(404, f"no token {req.params['token_id']!r}", field="path:token_id")
        return json_ok(info.to_dict())

    async def revoke_token(self, req: Req) -> web.Response:
        token_id = str(req.params["token_id"])
        if await self.s.api.token(token_id) is None:
            raise Problem(404, f"no token {token_id!r}", field="path:token_id")
        await self.s.api.revoke_token(token_id)
        return web.Response(status=204)


def token_ops(services: Services) -> list[Op]:
    r = TokenResources(services)
    lst = {"type": "object", "properties": {"items": {"type": "array", "items": TOKEN},
                                            "next_cursor": {"type": ["string", "null"]}}}
    return [
        Op("GET", "/api/v1/tokens", "listTokens", "Every business token (no secrets)",
           r.list_tokens, {200: Resp("OK", lst)},
           params=(Param("business", "query", SLUG_SCHEMA, "only this business's"),),
           admin_only=True, tag="tokens"),
        Op("POST", "/api/v1/tokens", "createToken", "A new token for one business (shown once)",
           r.create_token, {201: Resp("created", TOKEN, headers=("Location",))},
           body=NEW_TOKEN, admin_only=True, tag="tokens"),
        Op("GET", "/api/v1/tokens/{token_id}", "getToken", "One token (no secret)", r.get_token,
           {200: Resp("OK", TOKEN)}, params=(_ID,), admin_only=True, tag="tokens"),
        Op("DELETE", "/api/v1/tokens/{token_id}", "revokeToken", "Revoke a token",
           r.revoke_token, {204: Resp("revoked")}, params=(_ID,), admin_only=True, tag="tokens"),
    ]
