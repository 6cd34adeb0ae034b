"""A small declarative route layer: each operation is an :class:`Op` holding its path, its
parameters and its JSON Schemas. The same objects register the aiohttp routes, validate
every request (with the ``jsonschema`` package, draft 2020-12) and generate the OpenAPI 3.1
document, so the document cannot drift from what the handlers accept.

Why hand-written JSON Schema dicts rather than dataclasses or pydantic models: OpenAPI 3.1's
Schema Object *is* JSON Schema 2020-12, so one dict serves both the validator and the
document, with no translation layer to get wrong and no new heavy dependency; the resources
are small enough that a schema per operation stays readable.

Conventions applied here for every operation (issue 12 §2):
- errors are problem+json (:mod:`.problem`) naming the failing field;
- unknown body fields and unknown query parameters are refused (422, field named);
- bodies above the operation's limit are 413 (checked on Content-Length and while reading);
- POST accepts ``Idempotency-Key``: the first response is replayed for the same key and
  the same request; another request with the key is 422; a key still in flight is 409;
- ``{business}`` in a path is checked against the token: another tenant's business is
  404, exactly as a business that does not exist.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from mediasrv.api.auth import Principal
from mediasrv.api.v1.problem import PROBLEM_JSON, PROBLEM_SCHEMA, Problem, problem_response
from mediasrv.api.v1.store import ApiStore, IdemConflict, IdemInProgress, StoredResponse

__all__ = ["SLUG_SCHEMA", "Api", "Op", "Param", "Req", "Resp", "json_ok", "page_of", "require_if_match"]

JSON = "application/json"
SLUG_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}
BUSINESS_PATH: dict[str, Any] = {"type": "string"}
ANONYMOUS = Principal("anonymous")  # who a public operation (the login) runs for
IDEMPOTENCY_KEY_MAX = 255
_PATH_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Resp:
    description: str
    schema: dict[str, Any] | None = None  # of a JSON body
    content_type: str = JSON
    headers: tuple[str, ...] = ()  # response headers worth documenting (ETag, Location)


@dataclass
class Req:
    """What a handler receives: the validated parameters and body."""

    request: web.Request
    principal: Principal
    params: dict[str, Any]
    body: Any  # the JSON value, or bytes for a raw body, or None

    @property
    def business(self) -> str:
        return str(self.params["business"])


Handler = Callable[[Req], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    op_id: str
    summary: str
    handler: Handler
    responses: Mapping[int, Resp]
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # JSON Schema of a JSON request body
    raw_body: str | None = None  # a non-JSON body's media type ("audio/wav")
    max_body: int | None = None  # bytes; None: the API's default
    admin_only: bool = False
    config_write: bool = False  # needs If-Match (428 without, 412 on mismatch)
    tag: str = ""
    public: bool = False  # served without a token (the login only): security [] in OpenAPI

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)


def json_ok(data: object, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, ensure_ascii=False).encode(),
        content_type=JSON,
        headers=dict(headers or {}),
    )


def _field_of(error: ValidationError, prefix: str = "") -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            parts.append(extra[0])
    elif error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            parts.append(str(missing[0]))
    return prefix + "/".join(parts)


def _first_error(validator: Draft202012Validator, value: object) -> ValidationError | None:
    errors = sorted(validator.iter_errors(value), key=lambda e: (len(e.absolute_path), e.message))
    return errors[0] if errors else None


def _coerce(p: Param, raw: str) -> object:
    types = p.schema.get("type")
    kinds = types if isinstance(types, list) else [types]
    field_ = f"{p.where}:{p.name}"
    if "integer" in kinds:
        try:
            return int(raw)
        except ValueError:
            raise Problem(422, f"{p.name}: expected an integer, got {raw!r}", field=field_) from None
    if "number" in kinds:
        try:
            value = float(raw)
        except ValueError:
            raise Problem(422, f"{p.name}: expected a number, got {raw!r}", field=field_) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise Problem(422, f"{p.name}: expected a finite number", field=field_)
        return value
    if "boolean" in kinds:
        if raw in ("true", "1"):
            return True
        if raw in ("false", "0"):
            return False
        raise Problem(422, f"{p.name}: expected true or false, got {raw!r}", field=field_)
    return raw


class Api:
    """Registers :class:`Op` s on an aiohttp app and describes them in OpenAPI 3.1."""

    def __init__(
        self,
        ops: Iterable[Op],
        store: ApiStore,
        principal_key: web.RequestKey[Principal],
        *,
        max_body: int,
        idempotency_ttl: float,
    ) -> None:
        self.ops = list(ops)
        self.store = store
        self._principal_key = principal_key
        self.max_body = max_body
        self.idempotency_ttl = idempotency_ttl
        self._body_validators = {
            op.op_id: Draft202012Validator(op.body) for op in self.ops if op.body is not None
        }
        self._param_validators = {
            (op.op_id, p.name): Draft202012Validator(p.schema) for op in self.ops for p in op.params
        }
        seen: set[str] = set()
        for op in self.ops:
            if op.op_id in seen:
                raise ValueError(f"duplicate operation id {op.op_id}")
            seen.add(op.op_id)
            declared = {p.name for p in op.params if p.where == "path"}
            missing = set(op.path_params) - declared - {"business"}
            if missing:
                raise ValueError(f"{op.op_id}: path parameters not declared: {sorted(missing)}")

    # ---- aiohttp ------------------------------------------------------------------------

    def mount(self, app: web.Application) -> None:
        for op in self.ops:
            app.router.add_route(op.method, op.path, self._wrap(op))

    def _wrap(self, op: Op) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                return await self._handle(op, request)
            except Problem as problem:
                return problem_response(problem)

        handle.__name__ = op.op_id
        return handle

    def _all_params(self, op: Op) -> list[Param]:
        params = list(op.params)
        if "business" in op.path_params and not any(p.name == "business" for p in params):
            # no pattern: a name that is not a slug is simply a business that does not exist
            # (404), the same answer as another tenant's business
            params.insert(0, Param("business", "path", BUSINESS_PATH, "the business (slug)", True))
        return params

    async def _handle(self, op: Op, request: web.Request) -> web.StreamResponse:
        if op.public:
            principal = request.get(self._principal_key) or ANONYMOUS
        else:
            principal = request[self._principal_key]
        if op.admin_only and not principal.is_admin:
            raise Problem(403, "this operation needs the server (admin) token")
        params = self._params(op, request)
        if "business" in params and not principal.sees(str(params["business"])):
            raise Problem(404, f"business {params['business']!r} not found", field="path:business")
        body = await self._body(op, request)
        req = Req(request, principal, params, body)
        key = request.headers.get("Idempotency-Key")
        if op.method == "POST" and key is not None and not op.public:
            return await self._idempotent(op, req, key)
        return await op.handler(req)

    def _params(self, op: Op, request: web.Request) -> dict[str, Any]:
        values: dict[str, Any] = {}
        params = self._all_params(op)
        known_query = {p.name for p in params if p.where == "query"}
        for name in request.query:
            if name not in known_query:
                raise Problem(422, f"unknown query parameter {name!r}", field=f"query:{name}")
        for p in params:
            source: Mapping[str, str]
            if p.where == "path":
                source = request.match_info
            elif p.where == "query":
                source = request.query
            else:
                source = request.headers
            raw = source.get(p.name)
            if raw is None:
                if p.required:
                    raise Problem(422, f"{p.name} is required", field=f"{p.where}:{p.name}")
                if "default" in p.schema:
                    values[p.name] = p.schema["default"]
                continue
            value = _coerce(p, raw)
            error = _first_error(self._param_validators.get((op.op_id, p.name))
                                 or Draft202012Validator(p.schema), value)
            if error is not None:
                if p.name == "business" and p.where == "path":
                    raise Problem(404, f"business {raw!r} not found", field="path:business")
                raise Problem(422, f"{p.name}: {error.message}", field=f"{p.where}:{p.name}")
            values[p.name] = value
        return values

    async def _read_limited(self, request: web.Request, limit: int) -> bytes:
        length = request.content_length
        if length is not None and length > limit:
            raise Problem(413, f"the body is {length} bytes; at most {limit} are accepted")
        chunks: list[bytes] = []
        size = 0
        while True:  # StreamReader.read(n) returns what has arrived, up to n: loop to EOF
            chunk = await request.content.read(min(65536, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise Problem(413, f"the body is over {limit} bytes")
            chunks.append(chunk)

    async def _body(self, op: Op, request: web.Request) -> Any:
        if op.body is None and op.raw_body is None:
            if request.can_read_body and (await request.content.read(1)):
                raise Problem(422, "this operation takes no request body", field="body")
            return None
        limit = op.max_body or self.max_body
        data = await self._read_limited(request, limit)
        if op.raw_body is not None:
            if request.content_type != op.raw_body:
                raise Problem(415, f"expected Content-Type {op.raw_body}", field="header:Content-Type")
            return data
        if request.content_type != JSON:
            raise Problem(415, "expected Content-Type application/json", field="header:Content-Type")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise Problem(400, f"the body is not JSON: {exc}", field="body") from None
        try:
            error = _first_error(self._body_validators[op.op_id], value)
        except RecursionError:
            raise Problem(422, "the body is nested too deeply", field="body") from None
        if error is not None:
            where = _field_of(error)
            raise Problem(422, f"{where or 'body'}: {error.message}", field=where or "body")
        return value

    async def _idempotent(self, op: Op, req: Req, key: str) -> web.StreamResponse:
        if not key or len(key) > IDEMPOTENCY_KEY_MAX:
            raise Problem(422, f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters",
                          field="header:Idempotency-Key")
        request = req.request
        fp = hashlib.sha256()
        fp.update(f"{request.method} {request.path_qs}\n".encode())
        fp.update(json.dumps(req.body, sort_keys=True).encode() if not isinstance(req.body, bytes)
                  else req.body)
        who = req.principal.name
        try:
            stored = await self.store.idem_begin(who, key, fp.hexdigest(), self.idempotency_ttl)
        except IdemConflict:
            raise Problem(422, "this Idempotency-Key was used with a different request",
                          slug="idempotency-key-reused", field="header:Idempotency-Key") from None
        except IdemInProgress:
            raise Problem(409, "the first request with this Idempotency-Key is still running",
                          slug="idempotency-in-progress", field="header:Idempotency-Key") from None
        if stored is not None:
            headers = dict(stored.headers)
            headers["Idempotent-Replayed"] = "true"
            return web.Response(status=stored.status, body=stored.body,
                                headers={**headers, "Content-Type": stored.content_type})
        try:
            response = await op.handler(req)
        except Problem as problem:
            response = problem_response(problem)
        except BaseException:
            await self.store.idem_abandon(who, key)
            raise
        if isinstance(response, web.Response) and response.status < 500:
            body = response.body if isinstance(response.body, bytes) else b""
            keep = {k: v for k, v in response.headers.items() if k in ("ETag", "Location")}
            await self.store.idem_finish(
                who, key, StoredResponse(response.status, response.content_type, body, keep)
            )
        else:
            await self.store.idem_abandon(who, key)
        return response

    # ---- OpenAPI ------------------------------------------------------------------------

    def openapi_paths(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for op in self.ops:
            paths.setdefault(op.path, {})[op.method.lower()] = self._operation(op)
        return paths

    def _operation(self, op: Op) -> dict[str, Any]:
        doc: dict[str, Any] = {"operationId": op.op_id, "summary": op.summary}
        if op.tag:
            doc["tags"] = [op.tag]
        params = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in self._all_params(op)
        ]
        if op.config_write:
            # Required by the server (428 without it, RFC 6585 §3), but declared optional here:
            # a missing header is a documented 428, not a malformed request (400/422).
            params.append({"name": "If-Match", "in": "header", "required": False,
                           "schema": {"type": "string"},
                           "description": "the ETag of the configuration this change is based "
                           "on; required: 428 without it, 412 when it is not the current one"})
        if op.public:
            doc["security"] = []
        elif op.method == "POST":
            params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "minLength": 1,
                                      "maxLength": IDEMPOTENCY_KEY_MAX},
                           "description": "replays the first response for a retried request"})
        if params:
            doc["parameters"] = params
        if op.body is not None:
            doc["requestBody"] = {"required": True, "content": {JSON: {"schema": op.body}}}
        elif op.raw_body is not None:
            doc["requestBody"] = {"required": True, "content": {op.raw_body: {
                "schema": {"type": "string", "format": "binary"}}}}
        doc["responses"] = self._responses(op)
        return doc

    def _responses(self, op: Op) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for status, resp in sorted(op.responses.items()):
            entry: dict[str, Any] = {"description": resp.description}
            if resp.schema is not None or resp.content_type != JSON:
                schema = resp.schema if resp.schema is not None else {}
                entry["content"] = {resp.content_type: {"schema": schema}}
            if resp.headers:
                entry["headers"] = {h: {"schema": {"type": "string"}} for h in resp.headers}
            out[str(status)] = entry
        standard = {401: "no valid bearer token", 422: "a parameter or the body is invalid"}
        if op.admin_only:
            standard[403] = "the token is not the server (admin) token"
        if op.path_params:
            standard[404] = "no such object (or it belongs to another business)"
        if op.body is not None or op.raw_body is not None:
            standard[413] = "the body is too large"
            standard[415] = "wrong Content-Type"
            standard[400] = "the body is not JSON"
        if op.config_write:
            standard[412] = "If-Match does not match the current ETag"
            standard[428] = "If-Match is missing"
            standard[409] = "the change conflicts with another business's configuration"
        if op.method == "POST" and not op.public:
            standard[409] = "the first request with this Idempotency-Key is still running"
        for status, text in standard.items():
            out.setdefault(str(status), {"description": text, "content": {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}})
        return out

    @staticmethod
    def components() -> dict[str, Any]:
        return {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        }


def require_if_match(req: Req, current: str) -> None:
    """RFC 9110 §13.1.1: the write applies only to the representation the client saw."""
    given = req.request.headers.get("If-Match")
    if given is None:
        raise Problem(428, f"send If-Match: {current} (the current ETag)", field="header:If-Match")
    tags = [t.strip() for t in given.split(",")]
    if "*" not in tags and current not in tags and f"W/{current}" not in tags:
        raise Problem(412, f"the configuration changed; the current ETag is {current}",
                      field="header:If-Match", headers={"ETag": current})


def page_of(items: Sequence[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": list(items), "next_cursor": next_cursor}
