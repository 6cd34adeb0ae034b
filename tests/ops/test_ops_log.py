"""Structured logging: JSON lines with extras, text lines, never an exception."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from mediasrv.log import (
    JsonFormatter,
    TextFormatter,
    bind_log_context,
    log_context,
    setup_logging,
)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_lines_carry_extras() -> None:
    buf = io.StringIO()
    setup_logging("json", "info", stream=buf)
    log = logging.getLogger("mediasrv.test")
    log.info("call %s answered", "c1", extra={"call_id": "c1", "method": "INVITE", "code": 200})
    log.debug("hidden at info level")
    (rec,) = lines(buf)
    assert rec["msg"] == "call c1 answered"
    assert rec["level"] == "info" and rec["logger"] == "mediasrv.test"
    assert rec["call_id"] == "c1" and rec["method"] == "INVITE" and rec["code"] == 200
    assert isinstance(rec["ts"], str) and rec["ts"].endswith("Z")


def test_odd_extras_and_bad_arguments_never_raise() -> None:
    buf = io.StringIO()
    setup_logging("json", "debug", stream=buf)
    log = logging.getLogger("mediasrv.test")

    class Unrepr:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    circular: list[object] = []
    circular.append(circular)
    log.info("odd", extra={"obj": object(), "bytes": b"\x00\xff", "set": {1}, "bad": Unrepr()})
    log.info("circular", extra={"loop": circular})
    # pytest's own capture handler re-raises on bad %-args, so format this record directly
    bad = logging.LogRecord("mediasrv.test", logging.INFO, "f", 1, "wrong %d args", ("x", 2), None)
    buf.write(JsonFormatter().format(bad) + "\n")
    log.info("standard names", extra={"msg_id": 5, "ts_local": "x"})
    recs = lines(buf)
    assert [r["level"] for r in recs][:1] == ["info"]
    assert recs[0]["msg"] == "odd" and "object" in str(recs[0]["obj"])
    assert "unrepresentable" in str(recs[0]["bad"])
    assert "unformattable" in str(recs[1]["msg"])  # the circular extra: still one JSON line
    assert str(recs[2]["msg"]).startswith("wrong %d args")
    assert recs[3]["msg_id"] == 5


def test_exceptions_are_included() -> None:
    buf = io.StringIO()
    setup_logging("json", "info", stream=buf)
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("mediasrv.test").exception("failed", extra={"call_id": "c2"})
    (rec,) = lines(buf)
    assert "ValueError: bad thing" in str(rec["exc"]) and rec["call_id"] == "c2"


def test_text_format_and_reconfiguration() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("json", "info", stream=first)
    setup_logging("text", "warning", stream=second)  # replaces our handler, not add a second
    log = logging.getLogger("mediasrv.test")
    log.info("not shown")
    log.warning("no rtp", extra={"call_id": "c3", "reason": "no rtp for 60 s"})
    assert first.getvalue() == ""
    (line,) = second.getvalue().splitlines()
    assert " warning mediasrv.test: no rtp call_id=c3 " in line
    assert 'reason="no rtp for 60 s"' in line


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        setup_logging("xml")
    with pytest.raises(ValueError):
        setup_logging("json", "loud")


def test_text_formatter_survives_bad_arguments() -> None:
    bad = logging.LogRecord("mediasrv.test", logging.INFO, "f", 1, "wrong %d", ("x",), None)
    assert "wrong %d ('x',)" in TextFormatter().format(bad)


async def test_context_fields_follow_each_task() -> None:
    buf = io.StringIO()
    setup_logging("json", "info", stream=buf)
    log = logging.getLogger("mediasrv.test")

    async def call_task(cid: str) -> None:
        bind_log_context(call_id=cid)
        await asyncio.sleep(0)
        log.info("ringing")
        with log_context(leg="operator"):
            log.info("answered")
            log.info("explicit", extra={"call_id": "override"})
        log.info("after")

    await asyncio.gather(call_task("a"), call_task("b"))
    log.info("outside")
    recs = lines(buf)
    by_call: dict[object, list[tuple[object, object]]] = {}
    for r in recs:
        by_call.setdefault(r.get("call_id"), []).append((r["msg"], r.get("leg")))
    for cid in ("a", "b"):
        assert by_call[cid] == [("ringing", None), ("answered", "operator"), ("after", None)]
    assert by_call["override"] == [("explicit", "operator"), ("explicit", "operator")]
    assert by_call[None] == [("outside", None)]
