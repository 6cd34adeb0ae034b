"""A business's prompts (issue 12 §1): upload a WAV (the store converts it to the 8 kHz
telephone format, :meth:`PromptStore.import_wav`), list, download (HTTP Range), remove.

A business's prompts are filed as ``<business>/<name>`` in the server's store, so a flow of
the business finds its own before the shared default set; a business token sees only its
own. Conversion runs in a thread (it decodes and resamples), one upload at a time.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from mediasrv.api.v1.downloads import file_download
from mediasrv.api.v1.problem import Problem
from mediasrv.api.v1.services import Services
from mediasrv.api.v1.spec import Op, Param, Req, Resp, json_ok
from mediasrv.media.api import MediaError
from mediasrv.outputs.prompts import PromptEntry, PromptError, PromptStore

__all__ = ["prompt_ops"]

PROMPT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "seconds"],
    "properties": {
        "name": {"type": "string"},
        "seconds": {"type": "number"},
        "sha256": {"type": "string"},
        "origin": {"type": "string"},
        "source": {"type": "string"},
        "links": {"type": "object"},
    },
}
_NAME = Param("name", "path", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"},
              "the prompt's name", True)


def _entry_json(business: str, short: str, e: PromptEntry) -> dict[str, object]:
    return {"name": short, "seconds": e.seconds, "sha256": e.sha256, "origin": e.origin,
            "source": e.source,
            "links": {"audio": f"/api/v1/businesses/{business}/prompts/{short}/audio"}}


class PromptResources:
    def __init__(self, services: Services) -> None:
        self.s = services

    def _store(self) -> PromptStore:
        store = self.s.prompts()
        if store is None:
            raise Problem(503, "the prompt store is not open yet", slug="unavailable")
        return store

    def _entry(self, req: Req) -> tuple[PromptStore, PromptEntry]:
        store = self._store()
        full = f"{req.business}/{req.params['name']}"
        if full not in store:
            raise Problem(404, f"no prompt {req.params['name']!r}", field="path:name")
        return store, store.entry(full)

    async def list_prompts(self, req: Req) -> web.Response:
        store = self._store()
        prefix = req.business + "/"
        items = [_entry_json(req.business, n[len(prefix):], store.entry(n))
                 for n in store.names() if n.startswith(prefix)]
        return json_ok({"items": items, "next_cursor": None})

    async def get_prompt(self, req: Req) -> web.Response:
        _, entry = self._entry(req)
        return json_ok(_entry_json(req.business, req.params["name"], entry))

    async def put_prompt(self, req: Req) -> web.Response:
        store = self._store()
        name = str(req.params["name"])
        existed = f"{req.business}/{name}" in store
        async with self.s.prompt_lock:
            entry = await asyncio.to_thread(self._import, store, req.body, name, req.business)
        return json_ok(_entry_json(req.business, name, entry), 200 if existed else 201)

    @staticmethod
    def _import(store: PromptStore, data: bytes, name: str, business: str) -> PromptEntry:
        fd, tmp = tempfile.mkstemp(suffix=".wav", prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return store.import_wav(Path(tmp), name, business=business, origin="api upload")
        except (MediaError, PromptError, ValueError, OSError) as exc:
            raise Problem(422, f"not a usable WAV: {exc}", slug="bad-audio", field="body") from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    async def get_audio(self, req: Req) -> web.StreamResponse:
        store, entry = self._entry(req)
        path = store.directory / entry.file
        if not await asyncio.to_thread(path.is_file):
            raise Problem(404, f"the audio of prompt {req.params['name']!r} is missing")
        return await file_download(req.request, path, {"Content-Type": "audio/wav"})

    async def delete_prompt(self, req: Req) -> web.Response:
        store, entry = self._entry(req)
        async with self.s.prompt_lock:
            await asyncio.to_thread(store.remove, entry.name)
        return web.Response(status=204)


def prompt_ops(services: Services) -> list[Op]:
    r = PromptResources(services)
    p = "/api/v1/businesses/{business}/prompts"
    one = (_NAME,)
    audio = Resp("the converted WAV (8 kHz); 206 for a Range", content_type="audio/wav")
    return [
        Op("GET", p, "listPrompts", "The business's own prompts", r.list_prompts,
           {200: Resp("OK", {"type": "object", "properties": {
               "items": {"type": "array", "items": PROMPT},
               "next_cursor": {"type": ["string", "null"]}}})}, tag="prompts"),
        Op("GET", p + "/{name}", "getPrompt", "One prompt", r.get_prompt,
           {200: Resp("OK", PROMPT)}, params=one, tag="prompts"),
        Op("PUT", p + "/{name}", "putPrompt", "Upload a WAV; the store converts it",
           r.put_prompt, {200: Resp("replaced", PROMPT), 201: Resp("created", PROMPT),
                          503: Resp("the prompt store is not open")},
           params=one, raw_body="audio/wav", max_body=services.limits.max_upload_bytes,
           tag="prompts"),
        Op("GET", p + "/{name}/audio", "getPromptAudio", "The prompt's audio (HTTP Range)",
           r.get_audio, {200: audio, 206: audio}, params=one, tag="prompts"),
        Op("DELETE", p + "/{name}", "deletePrompt", "Remove a prompt", r.delete_prompt,
           {204: Resp("removed")}, params=one, tag="prompts"),
    ]
