"""Webhooks from a real server: a real pjsua2 call produces call.ringing, call.answered,
call.completed, recording.ready and the call.updated revisions, each verified by the
``standardwebhooks`` library, in order; and the server killed with SIGKILL while the
receiver is down loses no event: after the restart every one arrives."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import StartServer
from jsonschema import Draft202012Validator
from peers_plugin import StartPhone, needs_sipp

from mediasrv.api.call_schema import CALL_EVENT_DATA
from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import SippOptions, SippRun, free_port

sys.path.insert(0, str(Path(__file__).parent.parent / "notify"))
from receiver import Receiver

pytestmark = [pytest.mark.e2e]

NUMBER = "0312345678"
NOTIFY = {"notify": {"allow_private_targets": True}}


def add_endpoint(data_dir: Path, url: str) -> str:
    """`mediasrv webhooks add` before the server starts; returns the secret."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mediasrv",
            "webhooks",
            "add",
            "--data-dir",
            str(data_dir),
            "--business",
            "acme",
            "--url",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split("secret:", 1)[1].strip()


def _summary(receiver: Receiver) -> str:
    types: dict[str, int] = {}
    for r in {r.webhook_id: r for r in receiver.requests}.values():
        types[r.type] = types.get(r.type, 0) + 1
    return f"{len(receiver.requests)} requests, distinct by type {types}"


async def _wait(cond, timeout: float, what) -> None:  # type: ignore[no-untyped-def]
    """Poll ``cond`` until true; ``what()`` says what failed (evaluated at the failure)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.1)


async def test_a_real_call_sends_signed_ordered_webhooks(
    tmp_path: Path, start_server: StartServer, start_phone: StartPhone
) -> None:
    receiver = Receiver([])
    await receiver.start()
    workdir = tmp_path / "srv"
    receiver.secrets.append(add_endpoint(workdir / "var", receiver.url))
    operator = await start_phone("operator", auto_answer="200")
    caller = await start_phone("caller")
    numbers = [
        {
            "number": NUMBER,
            "business": "acme",
            "medium": "新聞",
            "campaign": "冬",
            "destinations": [operator.uri],
        }
    ]
    server = start_server(numbers=numbers, extra_sections=NOTIFY, workdir=workdir)
    try:
        await caller.dial(f"sip:{NUMBER}@{server.sip_uri_host}")
        await caller.wait_event("state", state="CONFIRMED", timeout=10)
        await asyncio.sleep(0.5)
        await caller.command("hangup")
        await caller.wait_event("disconnected", timeout=10)
        await receiver.wait_for(8, timeout=20)
    finally:
        await receiver.stop()
    assert receiver.rejected == []
    got = [(r.subject_seq, r.type) for r in receiver.requests]
    assert got == [
        (1, "call.ringing"),
        (2, "call.updated"),
        (3, "call.answered"),
        (4, "call.updated"),
        (5, "call.completed"),
        (6, "call.updated"),
        (7, "recording.ready"),
        (8, "call.updated"),
    ]
    # every real payload matches the one call schema the OpenAPI document publishes
    event_schema = Draft202012Validator(CALL_EVENT_DATA)
    for r in receiver.requests:
        assert [e.message for e in event_schema.iter_errors(r.data)] == [], r.type
    done = receiver.requests[4].data
    assert done["disposition"] == "answered" and done["medium"] == "新聞"
    assert done["caller_number"] and float(done["talk_seconds"]) > 0  # type: ignore[arg-type]
    assert {r.data["call_id"] for r in receiver.requests} == {done["call_id"]}
    rows = server.calls(10)
    assert rows[0]["call_id"] == done["call_id"]
    metrics = server.metrics()
    assert (
        metrics[
            'mediasrv_notify_deliveries_total{channel="webhook",event="call.completed",result="delivered"}'
        ]
        == 1.0
    )


@needs_sipp
async def test_sigkill_with_events_pending_loses_none(
    tmp_path: Path, start_server: StartServer
) -> None:
    calls = 20
    tried: set[str] = set()

    def first_try_fails(_n: int, webhook_id: str) -> tuple[int, dict[str, str]]:
        # Every event's first attempt is refused: all are pending (retry due in ~5 s) when
        # the server is killed.
        if webhook_id in tried:
            return 200, {}
        tried.add(webhook_id)
        return 503, {"Retry-After": "1"}

    receiver = Receiver([], script=first_try_fails)
    await receiver.start()
    workdir = tmp_path / "srv"
    receiver.secrets.append(add_endpoint(workdir / "var", receiver.url))
    uas_port = free_port()
    numbers = [
        {
            "number": NUMBER,
            "business": "acme",
            "destinations": [f"sip:op@127.0.0.1:{uas_port}"],
            "record": "off",
        }
    ]
    server = start_server(numbers=numbers, extra_sections=NOTIFY, workdir=workdir)
    uas = await SippRun.start(
        SippOptions(scenario="uas", name="uas", local_port=uas_port, calls=calls, timeout_s=60),
        tmp_path / "uas",
    )
    uac = await SippRun.start(
        SippOptions(
            scenario="uac",
            name="uac",
            remote=server.sip_uri_host,
            service=NUMBER,
            calls=calls,
            rate=20,
            hold_ms=300,
            timeout_s=60,
        ),
        tmp_path / "uac",
    )
    restarted: ServerProcess | None = None
    try:
        await uac.wait(60)
        await _wait(
            lambda: len({r.webhook_id for r in receiver.requests}) >= 5,
            20,
            lambda: "the first webhooks (answered 503) did not arrive",
        )
        server.kill()  # SIGKILL with events still pending (the receiver said 503)
        restarted = start_server(numbers=numbers, extra_sections=NOTIFY, workdir=workdir)
        # Every call: ringing, answered, completed, each with its revision = 6 events.
        await _wait(
            lambda: len({r.webhook_id for r in receiver.requests}) >= 6 * calls,
            60,
            lambda: f"not every event was delivered after the restart: {_summary(receiver)}",
        )
    finally:
        await uas.stop()
        await uac.stop()
        await receiver.stop()
    assert receiver.rejected == []
    first: dict[str, list[tuple[int, str]]] = {}
    seen: set[str] = set()
    for r in receiver.requests:
        if r.webhook_id in seen:
            continue  # a retry of one already logged (same id)
        seen.add(r.webhook_id)
        first.setdefault(str(r.data["call_id"]), []).append((r.subject_seq, r.type))
    assert restarted is not None
    assert set(first) == {str(row["call_id"]) for row in restarted.calls(100)}
    for events in first.values():
        assert events == [
            (1, "call.ringing"),
            (2, "call.updated"),
            (3, "call.answered"),
            (4, "call.updated"),
            (5, "call.completed"),
            (6, "call.updated"),
        ]
