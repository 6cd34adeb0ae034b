"""Where recordings live: ``<data_dir>/recordings/YYYY/MM/DD/<call_id>.wav`` (UTC date).

One directory per day keeps directories small at thousands of calls a day and makes retention
(delete days older than N) a directory removal.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

__all__ = ["is_within", "recording_path"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


def recording_path(recordings_dir: Path, call_id: str, start_time: float) -> Path:
    """The WAV path of a call that started at ``start_time`` (unix seconds).

    ``call_id`` becomes a file name, so it must be a plain token (our ids are uuid4 hex);
    anything with a separator or a leading dot is refused with :class:`ValueError`.
    """
    if not _SAFE_ID.match(call_id):
        raise ValueError(f"call id {call_id!r} is not usable as a file name")
    day = time.strftime("%Y/%m/%d", time.gmtime(start_time))
    return Path(recordings_dir) / day / f"{call_id}.wav"


def is_within(path: Path, root: Path) -> bool:
    """True if ``path`` (after resolving symlinks and ``..``) lies inside ``root``."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):
        return False
