"""Notifications wired for the server: the outbox store, its dispatcher, the call events a
call-log change causes, and their metrics (F21, F22, F28).

The server asks :meth:`Notifier.statements` for the outbox statements of a change and hands
them to the call log with the row (one transaction), then calls :meth:`Notifier.committed`
to wake the dispatcher. A business with no enabled endpoint costs nothing: no event rows.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mediasrv.config import NotifyConfig
from mediasrv.outputs.call_events import call_event_statements
from mediasrv.outputs.calllog import CallRecord, SqlStatement
from mediasrv.outputs.mailer import Mailer, MailSettings
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.outbox import CallbackNumber, OutboxStore, WebhookDispatcher
from mediasrv.outputs.sqlite import Synchronous

__all__ = ["Notifier"]

log = logging.getLogger(__name__)

REFRESH_S = 5.0  # endpoints added by another process (CLI, another node) are seen this late


class _MetricHooks:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def on_attempt(self, event_type: str, result: str, latency_s: float, channel: str) -> None:
        self._metrics.notify_deliveries_total.labels(
            channel=channel, event=event_type, result=result
        ).inc()


class Notifier:
    def __init__(
        self,
        config: NotifyConfig,
        db_path: Path,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        synchronous: Synchronous = Synchronous.FULL,
        callback_number: CallbackNumber | None = None,
    ) -> None:
        self.config = config
        self.store = OutboxStore(db_path, synchronous, clock)
        self._clock = clock
        self._metrics = metrics
        smtp = config.smtp
        mailer = None
        if smtp.host:
            mailer = Mailer(
                MailSettings(
                    host=smtp.host,
                    port=smtp.port,
                    starttls=smtp.starttls,
                    tls=smtp.tls,
                    username=smtp.username or None,
                    password=smtp.password or None,
                    sender=smtp.sender,
                    timeout_s=smtp.timeout,
                )
            )
        self.dispatcher = WebhookDispatcher(
            self.store,
            node=config.node or socket.gethostname(),
            clock=clock,
            concurrency=config.concurrency,
            timeout_s=config.timeout,
            allow_private=config.allow_private_targets,
            hooks=_MetricHooks(metrics),
            mailer=mailer,
            callback_number=callback_number,
        )
        self._subscribed: frozenset[str] = frozenset()
        self._backlog = (0, 0.0)
        self._refresher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Migrate the outbox tables (before the call log writes any event with a row)."""
        await self.store.open()
        await self._refresh()

    async def start(self) -> None:
        if not self.config.enabled:
            return
        self._metrics.add_gauge_callback(
            "notify_backlog", "Webhook and email deliveries waiting", lambda: self._backlog[0]
        )
        self._metrics.add_gauge_callback(
            "notify_oldest_undelivered_seconds",
            "Age of the oldest event not yet delivered",
            lambda: self._backlog[1],
        )
        await self.dispatcher.start()
        self._refresher = asyncio.create_task(self._refresh_forever(), name="notify-refresh")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self.dispatcher.stop()
        await self.store.close()

    def statements(
        self,
        record: CallRecord,
        milestones: Sequence[str],
        extra: dict[str, object] | None = None,
        *,
        from_row: bool = False,
    ) -> list[SqlStatement]:
        """The outbox statements for this change of ``record`` (none when nobody listens).
        ``from_row``: duplicate / first-time come from the final call row (same transaction)."""
        if not self.config.enabled or record.business not in self._subscribed:
            return []
        return call_event_statements(record, milestones, self._clock(), extra, from_row=from_row)

    def committed(self) -> None:
        self.dispatcher.wake()

    async def _refresh(self) -> None:
        self._subscribed = frozenset(await self.store.subscribed_businesses())
        self._backlog = await self.store.backlog(self._clock())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                await self._refresh()
            except Exception:
                log.exception("notify: refreshing the endpoint list failed")
