"""Assembles the v1 API: every resource's operations, mounted on the HTTP server's app, and
the OpenAPI 3.1 document (paths, components, webhooks) generated from the same operations."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mediasrv.api.auth import Principal
from mediasrv.api.v1.businesses import business_ops
from mediasrv.api.v1.calls import call_ops
from mediasrv.api.v1.events import CALL_EVENT_DATA, webhooks_document
from mediasrv.api.v1.insights import insight_ops
from mediasrv.api.v1.problem import PROBLEM_JSON
from mediasrv.api.v1.prompts import prompt_ops
from mediasrv.api.v1.reports import report_ops
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.sessions import session_ops
from mediasrv.api.v1.spec import Api
from mediasrv.api.v1.tokens import token_ops
from mediasrv.api.v1.webhooks import webhook_ops

__all__ = ["TENANT_PREFIXES", "V1Api"]

# Paths a business token may reach (the rest of the server's routes are admin only).
TENANT_PREFIXES = ("/api/v1/businesses", "/api/v1/openapi.json", "/api/v1/session",
                   "/api/v1/login")
# Paths whose errors are problem+json (the older /api/v1/calls keep {"error": ...}).
PROBLEM_PREFIXES = ("/api/v1/businesses", "/api/v1/tokens", "/api/v1/session",
                    "/api/v1/login")


class V1Api:
    """What :class:`~mediasrv.api.http.HttpServer` mounts."""

    def __init__(self, services: Services, principal_key: web.RequestKey[Principal]) -> None:
        self.services = services
        ops = [
            *business_ops(services),
            *call_ops(services),
            *report_ops(services),
            *insight_ops(services),
            *prompt_ops(services),
            *webhook_ops(services),
            *token_ops(services),
            *session_ops(services),  # issue 13 §5: console login
        ]
        self.api = Api(
            ops,
            services.api,
            principal_key,
            max_body=services.limits.max_body_bytes,
            idempotency_ttl=services.limits.idempotency_ttl,
        )
        self.tenant_prefixes = TENANT_PREFIXES
        # (method, path) served without a token: the login
        self.public_routes = frozenset((op.method, op.path) for op in ops if op.public)
        self.problem_prefixes = PROBLEM_PREFIXES
        self.problem_content_type = PROBLEM_JSON

    def mount(self, app: web.Application) -> None:
        self.api.mount(app)

    async def authenticate(self, token: str) -> Principal | None:
        found = await self.services.api.authenticate(token)
        if found is None and self.services.accounts is not None:  # a login's session token
            found = await self.services.accounts.store.authenticate(token)
        return found

    def extend_openapi(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = dict(doc)
        doc["paths"] = {**doc.get("paths", {}), **self.api.openapi_paths()}
        components = dict(doc.get("components", {}))
        extra = self.api.components()
        components["schemas"] = {**components.get("schemas", {}), **extra["schemas"],
                                 "CallEventData": CALL_EVENT_DATA}
        components["securitySchemes"] = extra["securitySchemes"]
        doc["components"] = components
        doc["security"] = [{"bearer": []}]
        doc["webhooks"] = webhooks_document()
        return doc
