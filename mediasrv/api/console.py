"""The console's static files on the API server (issue 13 §5).

``/console`` and ``/console/`` answer the page; ``/console/<name>`` one of the files found in
:data:`mediasrv.console.STATIC_DIR` at start (a fixed set: no path from the request ever
reaches the file system). The files hold no data and need no token; their CSP allows only
this origin (no inline script or style, no other host; media also from ``blob:``, the
recordings the page fetched with its token header), and no page may frame them.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from mediasrv.console import STATIC_DIR

__all__ = ["CONSOLE_CSP", "CONSOLE_PREFIX", "ConsoleRoutes"]

CONSOLE_PREFIX = "/console"
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; media-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}


class ConsoleRoutes:
    """Serves the files of ``static_dir`` (read once, at construction)."""

    def __init__(self, static_dir: Path = STATIC_DIR) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        for path in sorted(static_dir.iterdir()) if static_dir.is_dir() else ():
            kind = CONTENT_TYPES.get(path.suffix)
            if path.is_file() and kind is not None:
                self._files[path.name] = (path.read_bytes(), kind)

    def add_to(self, app: web.Application) -> None:
        app.router.add_get(CONSOLE_PREFIX, self._index)
        app.router.add_get(CONSOLE_PREFIX + "/", self._index)
        app.router.add_get(CONSOLE_PREFIX + "/{name}", self._file)

    def _respond(self, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None:
            raise web.HTTPNotFound(reason=f"no console file {name!r}")
        body, kind = found
        return web.Response(body=body, headers={"Content-Type": kind})

    async def _index(self, request: web.Request) -> web.Response:
        return self._respond("index.html")

    async def _file(self, request: web.Request) -> web.Response:
        return self._respond(request.match_info["name"])
