"""The web console's static files (issue 13 §5): vanilla HTML, CSS and JavaScript, served by
the API's own aiohttp server (:mod:`mediasrv.api.console`), no CDN and no build step. The
console talks to the server only through the HTTP API, with the user's token."""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
