"""Notification email (F22) through the outbox to a real SMTP server (aiosmtpd) on loopback:
Japanese subject and body read back intact with Python's email parser, HTML autoescaped,
retried after a temporary SMTP failure, dead at once on a permanent one."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mediasrv.outputs.mailer import Mailer, MailSettings, MailTarget, parse_mailto, template_for
from mediasrv.outputs.outbox import DeliveryState, OutboxEvent, OutboxStore, WebhookDispatcher


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail_next: list[str] = []  # SMTP replies to give before accepting

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_next:
            return self.fail_next.pop(0)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    with socket.socket() as probe:  # aiosmtpd's start() connects to its port: pick one first
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OutboxStore]:
    s = OutboxStore(tmp_path / "mediasrv.db")
    await s.open()
    yield s
    await s.close()


CALL = {
    "call_id": "c-1",
    "caller_number": "+81112345678",
    "caller_display": "山田 <b>太郎</b>",
    "tracking_number": "+81312345678",
    "medium": "Web広告",
    "campaign": "春の<キャンペーン>",
    "start_time": 1_767_225_600.0,  # 2026-01-01 09:00 JST
    "talk_seconds": 125.4,
    "operator": "佐藤",
    "disposition": "answered",
}


async def _deliver(store: OutboxStore, port: int, events: list[OutboxEvent]) -> None:
    mailer = Mailer(MailSettings(host="127.0.0.1", port=port, sender="calls@example.com"))
    await store.enqueue(events)
    d = WebhookDispatcher(store, mailer=mailer, schedule=(0.05, 0.05), idle_poll_s=0.05)
    await d.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            rows = await store.deliveries("acme")
            if all(r["state"] != DeliveryState.PENDING for r in rows):
                return
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.05)
    finally:
        await d.stop()


async def test_japanese_email_arrives_intact(store: OutboxStore, smtp: tuple[_Inbox, int]) -> None:
    inbox, port = smtp
    await store.add_endpoint("acme", "mailto:lead@example.com,owner@example.com?lang=ja")
    await _deliver(store, port, [OutboxEvent("acme", "c-1", "call.completed", CALL, time.time())])
    (msg,) = inbox.messages
    assert msg["Subject"] == "【着信】Web広告: 山田 <b>太郎</b> (2:05)"
    assert msg["From"] == "calls@example.com"
    assert inbox.envelopes[0][1] == ["lead@example.com", "owner@example.com"]
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "応答者: 佐藤" in text and "通話時間: 2:05" in text
    assert "2026-01-01 09:00:00 JST" in text
    assert "春の<キャンペーン>" in text  # plain text is not escaped
    assert "春の&lt;キャンペーン&gt;" in html and "<b>太郎</b>" not in html  # HTML is
    assert msg["Message-ID"].startswith("<msg_")


async def test_english_and_every_outcome_template(
    store: OutboxStore, smtp: tuple[_Inbox, int]
) -> None:
    inbox, port = smtp
    await store.add_endpoint("acme", "mailto:lead@example.com?lang=en")
    events = [
        OutboxEvent("acme", f"c-{d}", "call.completed", {**CALL, "disposition": d}, time.time())
        for d in ("answered", "after-hours", "busy", "no-answer")
    ]
    events.append(
        OutboxEvent(
            "acme",
            "c-v",
            "voicemail.created",
            {**CALL, "voicemail_seconds": 12, "link": "https://x/v.wav"},
            time.time(),
        )
    )
    transcript = [{"speaker": "caller", "start": 0.5, "text": "予約したいのですが"}]
    events.append(
        OutboxEvent(
            "acme",
            "c-a",
            "analysis.completed",
            {**CALL, "outcome": "booking", "transcript": transcript},
            time.time(),
        )
    )
    events.append(OutboxEvent("acme", "c-x", "call.ringing", CALL, time.time()))  # no email
    await _deliver(store, port, events)
    subjects = sorted(m["Subject"] for m in inbox.messages)
    assert subjects == sorted(
        [
            "[Call] Web広告: 山田 <b>太郎</b> (2:05)",
            "[After hours] Web広告: 山田 <b>太郎</b>",
            "[Busy] Web広告: 山田 <b>太郎</b>",
            "[Missed call] Web広告: 山田 <b>太郎</b>",
            "[Voicemail] Web広告: 山田 <b>太郎</b> (12 s)",
            "[Call analysis] Web広告: 山田 <b>太郎</b>",
        ]
    )
    analysis = next(m for m in inbox.messages if m["Subject"].startswith("[Call analysis]"))
    assert "caller 0.5s: 予約したいのですが" in analysis.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_temporary_failure_is_retried_permanent_is_dead(
    store: OutboxStore, smtp: tuple[_Inbox, int]
) -> None:
    inbox, port = smtp
    await store.add_endpoint("acme", "mailto:lead@example.com")
    inbox.fail_next = ["451 try again later"]
    await _deliver(store, port, [OutboxEvent("acme", "c-1", "call.completed", CALL, time.time())])
    assert len(inbox.messages) == 1
    (row,) = await store.deliveries("acme")
    assert [a.status for a in await store.attempts("acme", row["delivery_id"])] == [451, 250]
    inbox.fail_next = ["550 no such user"]
    await _deliver(store, port, [OutboxEvent("acme", "c-2", "call.completed", CALL, time.time())])
    dead = [r for r in await store.deliveries("acme") if r["state"] == DeliveryState.DEAD]
    assert len(dead) == 1 and dead[0]["last_status"] == 550 and dead[0]["attempts"] == 1


def test_mailto_parsing_and_header_injection() -> None:
    assert parse_mailto("mailto:a@example.com?lang=en") == MailTarget(("a@example.com",), "en")
    for bad in (
        "mailto:",
        "mailto:nobody",
        "http://x",
        "mailto:a@x?lang=fr",
        "mailto:a@x%0d%0aBcc:b@y",
    ):
        with pytest.raises(ValueError):
            parse_mailto(bad)
    mailer = Mailer(MailSettings())
    msg = mailer.render(
        "call.completed",
        {**CALL, "caller_display": "x\r\nBcc: evil@example.com"},
        MailTarget(("a@example.com",), "ja"),
        "msg_1",
    )
    assert msg is not None and msg["Bcc"] is None and "\n" not in msg["Subject"]
    assert template_for("call.completed", {"disposition": "voicemail"}) is None
