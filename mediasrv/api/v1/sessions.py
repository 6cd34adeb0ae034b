"""Console login (issue 13 §5): ``POST /api/v1/login`` with a user name and password gives a
session token, used exactly like an API token (``Authorization: Bearer``);
``GET /api/v1/session`` says who a token acts for; ``DELETE /api/v1/session`` logs out (the
session token is revoked at once).

CSRF: no cookie ever carries authority here. The console keeps its token in
``sessionStorage`` and sends it in the ``Authorization`` header, which a cross-site form or
``<img>`` cannot set, and which a cross-origin ``fetch`` can only send after a CORS preflight
this server never grants (it sends no ``Access-Control-Allow-*`` header). So a forged request
from another site arrives without a token (401), and a state-changing body must be
``application/json`` (415 for the ``text/plain``, ``multipart`` and urlencoded bodies a form
can send). The login itself, the one operation without a token, also refuses a request whose
``Origin`` is not this server (login CSRF: being logged in as the attacker's account).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from mediasrv.api.accounts import Accounts
from mediasrv.api.auth import bearer_token
from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import Op, Req, Resp, json_ok

__all__ = ["session_ops"]


LOGIN_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["user", "password"],
    "additionalProperties": False,
    "properties": {
        "user": {"type": "string", "minLength": 1, "maxLength": 64},
        "password": {"type": "string", "minLength": 1, "maxLength": 1024},
    },
}
SESSION: dict[str, Any] = {
    "type": "object",
    "required": ["admin"],
    "properties": {
        "user": {"type": ["string", "null"], "description": "null for an API token"},
        "business": {"type": ["string", "null"], "description": "null for an admin"},
        "admin": {"type": "boolean"},
        "expires_at": {"type": ["number", "null"]},
    },
}
LOGIN_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["token", "token_type", "expires_at", "user", "admin"],
    "properties": {
        **SESSION["properties"],
        "token": {"type": "string", "description": "msrvs_...: send as Authorization: Bearer"},
        "token_type": {"type": "string", "const": "Bearer"},
        "expires_in": {"type": "number"},
    },
}


def _same_origin(request: web.Request) -> bool:
    """No ``Origin`` (not a browser's cross-site request) or this server's own."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc.lower() == (request.host or "").lower()


class SessionResources:
    def __init__(self, services: Services) -> None:
        self.s = services

    def _accounts(self) -> Accounts:
        accounts = self.s.accounts
        if accounts is None:
            raise Problem(503, "user accounts are not enabled on this server", slug="unavailable")
        return accounts

    async def login(self, req: Req) -> web.Response:
        if not _same_origin(req.request):
            raise Problem(403, "a login must come from this server's own console",
                          field="header:Origin")
        accounts = self._accounts()
        name = str(req.body["user"]).strip().lower()
        keys = (f"user:{name}", f"addr:{req.request.remote or '?'}")
        wait = accounts.throttle.retry_after(keys)
        if wait > 0:
            raise Problem(429, "too many failed logins; try again later", slug="rate-limited",
                          headers={"Retry-After": str(max(1, math.ceil(wait)))})
        user = await accounts.store.verify(name, str(req.body["password"]))
        if user is None:
            accounts.throttle.failed(keys)
            raise Problem(401, "the user name or the password is wrong", slug="login-failed")
        accounts.throttle.succeeded(keys[0])
        session, token = await accounts.store.create_session(user, accounts.session_ttl)
        return json_ok({"token": token, "token_type": "Bearer",
                        "expires_at": session.expires_at, "expires_in": accounts.session_ttl,
                        "user": user.name, "business": user.business, "admin": user.is_admin})

    async def who(self, req: Req) -> web.Response:
        p = req.principal
        token = _presented_token(req.request)
        session = None
        if self.s.accounts is not None and token:
            session = await self.s.accounts.store.session(token)
        return json_ok({"user": session.user.name if session else None,
                        "business": None if p.is_admin else p.business,
                        "admin": p.is_admin,
                        "expires_at": session.expires_at if session else None})

    async def logout(self, req: Req) -> web.Response:
        token = _presented_token(req.request)
        accounts = self._accounts()
        if not token or not await accounts.store.revoke_session(token):
            raise Problem(422, "this token is not a login session (API tokens are revoked "
                          "with DELETE /api/v1/tokens/{token_id})", field="header:Authorization")
        return web.Response(status=204)


def _presented_token(request: web.Request) -> str | None:
    return bearer_token(request.headers.get("Authorization"))


def session_ops(services: Services) -> list[Op]:
    r = SessionResources(services)
    return [
        Op("POST", "/api/v1/login", "login",
           "Log in with a user name and password: a session token (no token needed)",
           r.login, {200: Resp("logged in", LOGIN_RESULT),
                     401: Resp("wrong user name or password"),
                     403: Resp("the Origin is not this server"),
                     429: Resp("too many failed logins", headers=("Retry-After",)),
                     503: Resp("accounts are not enabled")},
           body=LOGIN_BODY, public=True, tag="sessions"),
        Op("GET", "/api/v1/session", "getSession", "Who this token acts for", r.who,
           {200: Resp("OK", SESSION)}, tag="sessions"),
        Op("DELETE", "/api/v1/session", "logout", "Log out: the session token is revoked",
           r.logout, {204: Resp("revoked"), 503: Resp("accounts are not enabled")},
           tag="sessions"),
    ]
