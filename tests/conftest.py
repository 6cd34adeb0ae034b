"""Root test configuration: shared helper folders on sys.path, and the real-peer fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
for sub in ("peers", "sip", "e2e"):
    path = str(HERE / sub)
    if path not in sys.path:
        sys.path.insert(0, path)

pytest_plugins = ["peers_plugin"]
