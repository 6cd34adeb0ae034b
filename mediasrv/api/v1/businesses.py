"""Businesses and their configuration (issue 12 §1): the business file (validate, apply,
versions), and the same configuration as JSON resources: tracking numbers, operators,
schedules (with holidays and date overrides), the blocklist.

The JSON form of a business is its business file read as data (``conf/business.example.toml``
documents every key); a write goes through the very validation the file does
(:func:`mediasrv.business_file.load_business_data`), becomes a new version, and is live for
new calls like ``mediasrv business apply``. Every configuration representation carries an
``ETag`` (the version and digest of the business); a write needs ``If-Match`` with it:
428 without (chosen: two editors in the console must never overwrite each other silently,
and integrators get the ETag from any GET), 412 when another write came first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import tomllib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import (
    Op,
    Param,
    Req,
    Resp,
    json_ok,
    require_if_match,
)
from mediasrv.business_file import load_business_data, load_business_text
from mediasrv.calls.business import Business
from mediasrv.config import ConfigError
from mediasrv.outputs.business_store import BusinessConflict, digest_of

__all__ = ["business_ops"]

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OBJ: dict[str, Any] = {"type": "object"}
_ETAG = ("ETag",)

BUSINESS_INFO: dict[str, Any] = {
    "type": "object",
    "required": ["slug", "name", "version", "numbers", "applied_at"],
    "properties": {
        "slug": {"type": "string"},
        "name": {"type": "string"},
        "version": {"type": "integer"},
        "numbers": {"type": "integer", "description": "tracking numbers"},
        "applied_at": {"type": "number"},
        "etag": {"type": "string"},
    },
}
FILE_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["text"],
    "additionalProperties": False,
    # no maxLength: the size bound is the request body limit ([api] max_body_bytes, 413)
    "properties": {"text": {"type": "string", "description": "the business file (TOML)"}},
}
FILE_DOC: dict[str, Any] = {
    "type": "object",
    "required": ["version", "text"],
    "properties": {"version": {"type": "integer"}, "text": {"type": "string"},
                   "etag": {"type": "string"}},
}
VERSION_INFO: dict[str, Any] = {
    "type": "object",
    "properties": {
        "version": {"type": "integer"},
        "digest": {"type": "string"},
        "applied_at": {"type": "number"},
        "source": {"type": "string"},
    },
}
VALIDATION: dict[str, Any] = {
    "type": "object",
    "required": ["valid"],
    "properties": {"valid": {"type": "boolean"}, "slug": {"type": "string"},
                   "numbers": {"type": "integer"}},
}


def _section_item(key: str, key_schema: dict[str, Any], doc: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": doc + " (every key as in the business file; unknown keys are refused)",
        "properties": {key: key_schema},
    }


# section -> (the item's key field, its schema, what it is)
SECTIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "numbers": ("number", {"type": "string", "minLength": 1, "maxLength": 32},
                "a tracking number and its flow ([[numbers]])"),
    "operators": ("name", {"type": "string", "minLength": 1, "maxLength": 128},
                  "an operator ([[operators]])"),
    "schedules": ("name", {"type": "string", "minLength": 1, "maxLength": 128},
                  "a schedule: week, holidays, date overrides ([[schedules]])"),
}
BLOCKLIST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "numbers": {"type": "array", "items": {"type": "string"}},
        "prefixes": {"type": "array", "items": {"type": "string"}},
        "withheld": {"type": "array", "items": {"type": "string"}},
    },
}


def etag_of(version: int, text: str) -> str:
    return f'"v{version}-{digest_of(text)[:16]}"'


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _from_json(raw: dict[str, Any]) -> dict[str, Any]:
    """JSON has no dates: the override ``from``/``to`` strings become TOML dates."""
    for sched in raw.get("schedules", []) or []:
        if not isinstance(sched, dict):
            continue
        for o in sched.get("overrides", []) or []:
            if not isinstance(o, dict):
                continue
            for k in ("from", "to"):
                v = o.get(k)
                if isinstance(v, str) and _DATE.match(v):
                    try:
                        o[k] = dt.date.fromisoformat(v)
                    except ValueError:
                        pass
    return raw


_INDEX = re.compile(r"\[(\d+)\]")


def _config_problem(exc: ConfigError, prefix: str = "") -> Problem:
    """The business file's located error; ``field`` as a path: ``operators/2/sip``."""
    field = _INDEX.sub(r".\1", exc.key).replace(".", "/")
    return Problem(422, str(exc) if not prefix else f"{exc.key}: {exc.message}",
                   slug="invalid-configuration", field=field)


class _Current:
    """The business as stored now: its data, version and ETag."""

    def __init__(self, slug: str, version: int, text: str) -> None:
        self.slug = slug
        self.version = version
        self.text = text
        self.etag = etag_of(version, text)
        self.data: dict[str, Any] = tomllib.loads(text)


class BusinessResources:
    def __init__(self, services: Services) -> None:
        self.s = services
        # If-Match check and apply as one step, so two writers holding the same ETag cannot
        # both pass the check (within this server; another process's `business apply`
        # between the two is caught by the next write's ETag).
        self._write_lock = asyncio.Lock()

    async def _current(self, slug: str) -> _Current:
        infos = {b.slug: b for b in await self.s.businesses.businesses()}
        info = infos.get(slug)
        text = await self.s.businesses.export(slug) if info else None
        if info is None or text is None:
            raise Problem(404, f"business {slug!r} not found", field="path:business")
        return _Current(slug, info.version, text)

    async def _apply(self, req: Req, business: Business) -> web.Response:
        if business.slug != req.business:
            raise Problem(422, f"business.slug is {business.slug!r}, not {req.business!r}",
                          field="business/slug")
        try:
            result = await self.s.businesses.apply(business, source="api")
        except BusinessConflict as exc:
            raise Problem(409, str(exc), slug="number-taken") from None
        cur = await self._current(req.business)
        return json_ok({"version": result.version, "changed": result.created, "etag": cur.etag},
                       headers={"ETag": cur.etag})

    async def _apply_data(self, req: Req, data: dict[str, Any]) -> web.Response:
        try:
            business = load_business_data(_from_json(data))
        except ConfigError as exc:
            raise _config_problem(exc, "data") from None
        return await self._apply(req, business)

    # ---- businesses -----------------------------------------------------------------------

    async def list_businesses(self, req: Req) -> web.Response:
        items = [
            {"slug": b.slug, "name": b.name, "version": b.version, "numbers": b.numbers,
             "applied_at": b.applied_at}
            for b in await self.s.businesses.businesses()
            if req.principal.sees(b.slug)
        ]
        return json_ok({"items": items, "next_cursor": None})

    async def create_business(self, req: Req) -> web.Response:
        try:
            business = load_business_text(req.body["text"], "<request>")
        except ConfigError as exc:
            raise _config_problem(exc) from None
        if any(b.slug == business.slug for b in await self.s.businesses.businesses()):
            raise Problem(409, f"business {business.slug!r} exists; PUT its file to change it",
                          field="business/slug")
        try:
            result = await self.s.businesses.apply(business, source="api")
        except BusinessConflict as exc:
            raise Problem(409, str(exc), slug="number-taken") from None
        cur = await self._current(business.slug)
        return json_ok({"slug": business.slug, "version": result.version, "etag": cur.etag},
                       201, {"ETag": cur.etag, "Location": f"/api/v1/businesses/{business.slug}"})

    async def get_business(self, req: Req) -> web.Response:
        cur = await self._current(req.business)
        head = cur.data.get("business", {})
        body = {"slug": cur.slug, "name": head.get("name", ""), "version": cur.version,
                "numbers": len(cur.data.get("numbers", [])), "etag": cur.etag,
                "applied_at": next((b.applied_at for b in await self.s.businesses.businesses()
                                    if b.slug == cur.slug), 0.0)}
        return json_ok(body, headers={"ETag": cur.etag})

    async def get_config(self, req: Req) -> web.Response:
        cur = await self._current(req.business)
        return json_ok(_jsonable(cur.data), headers={"ETag": cur.etag})

    def locked(self, handler: Callable[[Req], Awaitable[web.Response]]
               ) -> Callable[[Req], Awaitable[web.Response]]:
        async def run(req: Req) -> web.Response:
            async with self._write_lock:
                return await handler(req)

        return run

    async def put_config(self, req: Req) -> web.Response:
        cur = await self._current(req.business)
        require_if_match(req, cur.etag)
        return await self._apply_data(req, dict(req.body))

    # ---- the business file ----------------------------------------------------------------

    async def get_file(self, req: Req) -> web.Response:
        cur = await self._current(req.business)
        return json_ok({"version": cur.version, "text": cur.text, "etag": cur.etag},
                       headers={"ETag": cur.etag})

    async def put_file(self, req: Req) -> web.Response:
        cur = await self._current(req.business)
        require_if_match(req, cur.etag)
        try:
            business = load_business_text(req.body["text"], "<request>")
        except ConfigError as exc:
            raise _config_problem(exc) from None
        return await self._apply(req, business)

    async def validate_file(self, req: Req) -> web.Response:
        await self._current(req.business)
        try:
            business = load_business_text(req.body["text"], "<request>")
        except ConfigError as exc:
            raise _config_problem(exc) from None
        if business.slug != req.business:
            raise Problem(422, f"business.slug is {business.slug!r}, not {req.business!r}",
                          field="business/slug")
        return json_ok({"valid": True, "slug": business.slug, "numbers": len(business.numbers)})

    async def list_versions(self, req: Req) -> web.Response:
        await self._current(req.business)
        items = [{"version": v.version, "digest": v.digest, "applied_at": v.applied_at,
                  "source": v.source} for v in await self.s.businesses.versions(req.business)]
        return json_ok({"items": items, "next_cursor": None})

    async def get_version(self, req: Req) -> web.Response:
        await self._current(req.business)
        version = int(req.params["version"])
        text = await self.s.businesses.export(req.business, version)
        if text is None:
            raise Problem(404, f"no version {version}", field="path:version")
        return json_ok({"version": version, "text": text})

    # ---- sections ---------------------------------------------------------------------------

    def _find(self, items: list[dict[str, Any]], key: str, value: str) -> int | None:
        return next((i for i, it in enumerate(items) if str(it.get(key)) == value), None)

    def section_handlers(self, section: str) -> tuple[Any, Any, Any, Any]:
        key = SECTIONS[section][0]

        async def list_items(req: Req) -> web.Response:
            cur = await self._current(req.business)
            items = _jsonable(cur.data.get(section, []))
            return json_ok({"items": items, "next_cursor": None}, headers={"ETag": cur.etag})

        async def get_item(req: Req) -> web.Response:
            cur = await self._current(req.business)
            items = cur.data.get(section, [])
            i = self._find(items, key, req.params["key"])
            if i is None:
                raise Problem(404, f"no {section[:-1]} {req.params['key']!r}", field="path:key")
            return json_ok(_jsonable(items[i]), headers={"ETag": cur.etag})

        async def put_item(req: Req) -> web.Response:
            cur = await self._current(req.business)
            require_if_match(req, cur.etag)
            item = dict(req.body)
            given = item.setdefault(key, req.params["key"])
            if str(given) != req.params["key"]:
                raise Problem(422, f"{key} is {given!r} but the path says {req.params['key']!r}",
                              field=key)
            data = dict(cur.data)
            items = list(data.get(section, []))
            i = self._find(items, key, req.params["key"])
            if i is None:
                items.append(item)
            else:
                items[i] = item
            data[section] = items
            return await self._apply_data(req, _jsonable_to_toml(data))

        async def delete_item(req: Req) -> web.Response:
            cur = await self._current(req.business)
            require_if_match(req, cur.etag)
            data = dict(cur.data)
            items = list(data.get(section, []))
            i = self._find(items, key, req.params["key"])
            if i is None:
                raise Problem(404, f"no {section[:-1]} {req.params['key']!r}", field="path:key")
            del items[i]
            data[section] = items
            return await self._apply_data(req, data)

        return list_items, get_item, self.locked(put_item), self.locked(delete_item)

    async def get_blocklist(self, req: Req) -> web.Response:
        cur = await self._current(req.business)
        return json_ok(_jsonable(cur.data.get("blocklist", {})), headers={"ETag": cur.etag})

    async def put_blocklist(self, req: Req) -> web.Response:
        cur = await self._current(req.business)
        require_if_match(req, cur.etag)
        data = dict(cur.data)
        data["blocklist"] = dict(req.body)
        return await self._apply_data(req, data)


def _jsonable_to_toml(data: dict[str, Any]) -> dict[str, Any]:
    # a round trip through JSON so a PUT body and the stored data are the same kind of value
    return dict(json.loads(json.dumps(_jsonable(data))))


def business_ops(services: Services) -> list[Op]:
    r = BusinessResources(services)
    b = "/api/v1/businesses/{business}"
    ok = Resp("OK", BUSINESS_INFO, headers=_ETAG)
    applied = Resp("applied (a new version, unless nothing changed)", {
        "type": "object", "properties": {"version": {"type": "integer"},
                                         "changed": {"type": "boolean"},
                                         "etag": {"type": "string"}}}, headers=_ETAG)
    list_of = lambda schema: {"type": "object", "required": ["items"], "properties": {  # noqa: E731
        "items": {"type": "array", "items": schema},
        "next_cursor": {"type": ["string", "null"]}}}
    ops = [
        Op("GET", "/api/v1/businesses", "listBusinesses", "The businesses this token sees",
           r.list_businesses, {200: Resp("OK", list_of(BUSINESS_INFO))}, tag="businesses"),
        Op("POST", "/api/v1/businesses", "createBusiness", "Create a business from its file",
           r.locked(r.create_business), {201: Resp("created", _OBJ, headers=("ETag", "Location")),
                               409: Resp("the business or one of its numbers exists")},
           body=FILE_BODY, admin_only=True, tag="businesses"),
        Op("GET", b, "getBusiness", "One business", r.get_business, {200: ok}, tag="businesses"),
        Op("GET", b + "/config", "getConfig", "The whole configuration as JSON",
           r.get_config, {200: Resp("OK", _OBJ, headers=_ETAG)}, tag="businesses"),
        Op("PUT", b + "/config", "putConfig", "Replace the whole configuration (JSON)",
           r.locked(r.put_config), {200: applied}, body={"type": "object"}, config_write=True,
           tag="businesses"),
        Op("GET", b + "/file", "getBusinessFile", "The business file of the current version",
           r.get_file, {200: Resp("OK", FILE_DOC, headers=_ETAG)}, tag="flows"),
        Op("PUT", b + "/file", "applyBusinessFile", "Apply a business file (a new version)",
           r.locked(r.put_file), {200: applied}, body=FILE_BODY, config_write=True, tag="flows"),
        Op("POST", b + "/file/validate", "validateBusinessFile",
           "Check a business file without applying it (422 names the line and key)",
           r.validate_file, {200: Resp("valid", VALIDATION)}, body=FILE_BODY, tag="flows"),
        Op("GET", b + "/versions", "listVersions", "Every applied version", r.list_versions,
           {200: Resp("OK", list_of(VERSION_INFO))}, tag="flows"),
        Op("GET", b + "/versions/{version}", "getVersion", "The file of one version",
           r.get_version, {200: Resp("OK", FILE_DOC)},
           params=(Param("version", "path", {"type": "integer", "minimum": 1}, required=True),),
           tag="flows"),
        Op("GET", b + "/blocklist", "getBlocklist", "The business's blocklist",
           r.get_blocklist, {200: Resp("OK", BLOCKLIST, headers=_ETAG)}, tag="blocklists"),
        Op("PUT", b + "/blocklist", "putBlocklist", "Replace the business's blocklist",
           r.locked(r.put_blocklist), {200: applied}, body=BLOCKLIST, config_write=True, tag="blocklists"),
    ]
    for section, (key, key_schema, doc) in SECTIONS.items():
        list_items, get_item, put_item, delete_item = r.section_handlers(section)
        item = _section_item(key, key_schema, doc)
        keyp = (Param("key", "path", key_schema, f"the {key}", True),)
        name = section.capitalize()
        one = name[:-1]
        ops += [
            Op("GET", f"{b}/{section}", f"list{name}", f"The business's {section}",
               list_items, {200: Resp("OK", list_of(item), headers=_ETAG)}, tag=section),
            Op("GET", f"{b}/{section}/{{key}}", f"get{one}", f"One of the {section}", get_item,
               {200: Resp("OK", item, headers=_ETAG)}, params=keyp, tag=section),
            Op("PUT", f"{b}/{section}/{{key}}", f"put{one}", f"Create or replace one of the {section}",
               put_item, {200: applied}, params=keyp, body=item, config_write=True, tag=section),
            Op("DELETE", f"{b}/{section}/{{key}}", f"delete{one}", f"Remove one of the {section}",
               delete_item, {200: applied}, params=keyp, config_write=True, tag=section),
        ]

    return ops
