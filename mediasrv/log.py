"""Structured logs: one JSON object per line (or readable text), with per-call fields.

Fields passed as ``log.info("...", extra={"call_id": cid, "method": "INVITE"})`` become keys
of the JSON object. Formatting never raises: odd extras are rendered with ``repr``, and a
message whose ``%`` arguments do not fit is logged as-is with its arguments beside it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any

__all__ = ["JsonFormatter", "TextFormatter", "bind_log_context", "log_context", "setup_logging"]

# Fields added to every record logged in the current context (asyncio task). A call's task
# binds its call_id once, and every line it logs carries it without passing extra= each time.
_context: ContextVar[Mapping[str, object] | None] = ContextVar("mediasrv_log_context", default=None)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every record logged inside the ``with`` block (this task only)."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_context(**fields: object) -> None:
    """Add ``fields`` for the rest of the current task (each asyncio task has its own copy)."""
    _context.set({**(_context.get() or {}), **fields})


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        fields = _context.get()
        if fields:
            for key, value in fields.items():
                if key not in record.__dict__:  # an explicit extra= wins
                    record.__dict__[key] = value
        return True


# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_HANDLER_MARK = "_mediasrv_handler"


def _timestamp(created: float) -> str:
    t = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(created % 1 * 1000):03d}Z"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return f"{record.msg!s} {_safe_repr(record.args)}"


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _exception(record: logging.LogRecord) -> str | None:
    if record.exc_info and record.exc_info[0] is not None:
        try:
            return "".join(traceback.format_exception(*record.exc_info)).rstrip()
        except Exception:
            return _safe_repr(record.exc_info[1])
    return None


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., <extras>, "exc": ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            out: dict[str, Any] = {
                "ts": _timestamp(record.created),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": _message(record),
            }
            for key, value in _extras(record).items():
                out.setdefault(key, value)  # an extra never hides a standard field
            exc = _exception(record)
            if exc:
                out["exc"] = exc
            if record.stack_info:
                out["stack"] = record.stack_info
            return json.dumps(out, default=_safe_repr, ensure_ascii=False)
        except Exception as e:  # e.g. a circular extra: still one valid line
            return json.dumps(
                {
                    "ts": _timestamp(time.time()),
                    "level": "error",
                    "logger": "mediasrv.log",
                    "msg": f"unformattable log record: {_safe_repr(e)}",
                    "original": _safe_repr(getattr(record, "msg", None)),
                }
            )


class TextFormatter(logging.Formatter):
    """``2026-11-22T03:11:41.123Z info mediasrv.sip: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            parts = [
                _timestamp(record.created),
                record.levelname.lower(),
                f"{record.name}:",
                _message(record),
            ]
            parts += [f"{k}={_text_value(v)}" for k, v in _extras(record).items()]
            line = " ".join(parts)
            exc = _exception(record)
            return f"{line}\n{exc}" if exc else line
        except Exception as e:
            return f"{_timestamp(time.time())} error mediasrv.log: unformattable log record: {_safe_repr(e)}"


def _text_value(value: object) -> str:
    if isinstance(value, str) and value and " " not in value and "=" not in value:
        return value
    try:
        return json.dumps(value, default=_safe_repr, ensure_ascii=False)
    except Exception:
        return _safe_repr(value)


def setup_logging(fmt: str = "json", level: str = "info", stream: IO[str] | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) as ``fmt``.

    Safe to call again (e.g. after the config is read): it replaces its own handler and leaves
    handlers that others installed (pytest's capture, say) alone.
    """
    fmt_name = str(getattr(fmt, "value", fmt)).lower()
    level_name = str(getattr(level, "value", level)).lower()
    if fmt_name not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', got {fmt!r}")
    if level_name not in _LEVELS:
        raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, got {level!r}")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
            h.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt_name == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level_name])
    # aiosqlite logs every statement at DEBUG; that drowns the server's own debug lines.
    logging.getLogger("aiosqlite").setLevel(max(_LEVELS[level_name], logging.INFO))
