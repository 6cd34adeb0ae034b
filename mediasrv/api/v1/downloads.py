"""File downloads that a browser can seek: :class:`aiohttp.web.FileResponse` (Range ->
206 with Content-Range, 416, Accept-Ranges, ETag, sendfile) plus the entity-tag form of
``If-Range``, which aiohttp reads only as a date.

RFC 9110 §13.1.5: a Range request whose If-Range validator does not match the current
representation is answered with the whole file (200); an entity tag matches only by strong
comparison, so a weak tag never does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from aiohttp import hdrs, web

__all__ = ["file_download"]


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'  # as FileResponse makes it


async def file_download(
    request: web.Request, path: Path, headers: Mapping[str, str]
) -> web.StreamResponse:
    response = web.FileResponse(path, headers=dict(headers))
    if_range = request.headers.get(hdrs.IF_RANGE, "").strip()
    if not if_range.startswith(('"', "W/")) or hdrs.RANGE not in request.headers:
        return response  # no Range, or a date validator (aiohttp handles it)
    st = await asyncio.to_thread(os.stat, path)
    if if_range == _etag(st):
        return response
    without_range = {k: v for k, v in request.headers.items() if k.lower() != "range"}
    await response.prepare(request.clone(headers=without_range))
    return response
