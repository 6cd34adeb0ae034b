"""What happens to a call's rows and events around its plan (issue 10 §6): one pipeline.

Every call (the plan interpreter is the one call path) hands its rows here, through
:class:`~mediasrv.flow_runtime.FlowCallLog`: the in-progress row when it arrives, the answered
row before the caller's 200 (committed before acknowledged, with a bounded wait), the final
row with its duplicate / first-time attributes (F15). Each row goes with its outbox events
(webhooks, email) in the same transaction, and to the live board; the final one is followed
by ``recording.ready`` and the analysis queue. Domain events of live calls (an operator
rung, the caller queued with a position, the caller out of the queue) go to the board.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from mediasrv.callback_routing import CALLBACK_FLAG, EXPIRED_FLAG
from mediasrv.calls.trace import Answered, CallTrace, DomainEvent, Queued, QueueLeft, Ringing
from mediasrv.media.api import MediaReport
from mediasrv.outputs.attributes import AttributePolicy
from mediasrv.outputs.calllog import CallLogStore, CallRecord, SqlStatement
from mediasrv.outputs.live_board import LiveBoard
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.notify import Notifier

log = logging.getLogger("mediasrv.app")

# How long a caller's 200 may wait for the row that says answered. A store that stalls
# longer (disk trouble) must not hold calls up: the answer goes out, the write still lands.
ANSWER_STORE_WAIT_S = 0.5

Enqueue = Callable[[str, Path | None, int, str], Awaitable[None]]  # call, file, bytes, business


def completion_events(trace: CallTrace) -> tuple[tuple[str, ...], dict[str, object] | None]:
    """The events a finished call causes (issue 12 §4): ``call.completed``, and
    ``voicemail.created`` when the caller left a message (F11), which carries its length and
    sends the voicemail email."""
    vm = trace.voicemail
    if vm is None:
        return ("call.completed",), None
    return ("call.completed", "voicemail.created"), {
        "voicemail_mailbox": vm.mailbox,
        "voicemail_seconds": round(vm.seconds, 1),
    }


class CallPipeline:
    """The server's :class:`~mediasrv.flow_runtime.FlowCallLog`."""

    def __init__(
        self,
        *,
        store: CallLogStore,
        notifier: Notifier,
        board: LiveBoard,
        metrics: Metrics,
        attributes: AttributePolicy,
        flush_media: Callable[[], Awaitable[None]],
        enqueue_analysis: Enqueue,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._board = board
        self._metrics = metrics
        self._attributes = attributes
        self._flush_media = flush_media
        self._enqueue_analysis = enqueue_analysis
        self._clock = clock
        self._answers_not_stored_in_time = 0
        self._slow_answers_logged_at = -1e9

    # -- FlowCallLog --------------------------------------------------------------------------
    def arrived(self, record: CallRecord) -> None:
        """On the board at once (live), before the plan rings an operator or queues it."""
        self._to_board(self._board.call_ringing, record)

    async def started(self, record: CallRecord) -> None:
        """The row exists from the first moment (in-progress), so that a crash mid-call
        leaves a trace that the next start marks as cut off (F13: nothing lost)."""
        also = self._notifier.statements(record, ("call.ringing",))
        try:
            await self._store.record_live(record, also)
        except Exception:
            log.exception("could not store in-progress call row", extra={"call": record.call_id})
        else:
            self._notified(also)

    async def answered(self, record: CallRecord) -> None:
        """The in-progress row now says answered (time, operator, recording): a crash from
        here on leaves an answered call. The caller's 200 waits for it, up to a bound."""
        self._to_board(self._board.call_answered, record)
        also = self._notifier.statements(record, ("call.answered",))
        try:
            async with asyncio.timeout(ANSWER_STORE_WAIT_S):
                await self._store.record_answer(record, also)
                self._notified(also)
        except TimeoutError:
            # The write is shielded in the store: it still lands, later.
            self._answers_not_stored_in_time += 1
            self._log_slow_answers()
        except Exception:
            log.exception("could not store the answer", extra={"call": record.call_id})

    async def finished(self, record: CallRecord, trace: CallTrace) -> None:
        self._count(record, trace.media)
        self._to_board(self._board.call_ended, record)
        self._count_callback(record)
        # from_row: duplicate / first-time come from the final row, in the same transaction
        milestones, extra = completion_events(trace)
        also = self._notifier.statements(record, milestones, extra, from_row=True)
        try:
            await self._store.record_final(
                record, self._attributes.duplicate_window(record.business), also
            )
            self._notified(also)
        except Exception:
            # Never lose a call row silently: it goes to the log in full.
            log.exception(
                "could not store call row", extra={"call": record.call_id, "row": repr(record)}
            )
        report = trace.media
        if report is not None and trace.recording is not None and report.recording_bytes:
            await self._recording_ready(record)
            await self._enqueue_analysis(
                trace.call_id, report.recording or trace.recording, report.recording_bytes,
                trace.business,
            )

    def event(self, business: str, event: DomainEvent) -> None:
        """Live calls' domain events the board shows (issue 10 §6, issue 13)."""
        board = self._board
        if isinstance(event, Ringing):
            self._to_board(board.operator_ringing, business, event.call_id, event.target)
        elif isinstance(event, Queued):
            self._to_board(
                board.call_queued, business, event.call_id, event.queue, event.position, event.at
            )
        elif isinstance(event, QueueLeft | Answered):
            self._to_board(board.call_unqueued, business, event.call_id)

    # -- internals ----------------------------------------------------------------------------
    def _count(self, record: CallRecord, report: MediaReport | None) -> None:
        metrics = self._metrics
        metrics.call_finished(record.disposition.value, record.ring_seconds, record.talk_seconds)
        if report is None:
            return
        if report.recording_bytes:
            metrics.recording_bytes_total.inc(report.recording_bytes)
        for stats in report.legs.values():
            metrics.leg_finished(
                stats.packets_in,
                stats.packets_out,
                stats.packets_lost,
                stats.jitter_ms,
                stats.foreign_dropped,
            )

    def _count_callback(self, record: CallRecord) -> None:
        """Calls to callback numbers (issue 12 §5): forwarded to the caller, or refused."""
        if CALLBACK_FLAG in record.flags:
            self._metrics.callback_calls_total.labels(result="forwarded").inc()
        elif EXPIRED_FLAG in record.flags:
            self._metrics.callback_calls_total.labels(result="refused").inc()
            log.info(
                "call to a callback number with no active lease refused",
                extra={"call": record.call_id, "number": record.tracking_number,
                       "sip_code": record.sip_code},
            )  # fmt: skip

    async def _recording_ready(self, record: CallRecord) -> None:
        """``recording.ready``: the file is complete on disk (after the media flush). Its own
        transaction: the call row was committed before the file was complete."""
        also = self._notifier.statements(record, ("recording.ready",), from_row=True)
        if not also:
            return
        await self._flush_media()
        try:
            await self._notifier.store.execute(also)
            self._notifier.committed()
        except Exception:
            log.exception("could not queue recording.ready", extra={"call": record.call_id})

    def _notified(self, statements: list[SqlStatement]) -> None:
        if statements:
            self._notifier.committed()

    def _to_board(self, update: Callable[..., None], *args: object) -> None:
        """A live board that fails must not cost the call its row: log it and go on."""
        try:
            update(*args)
        except Exception:
            log.exception("live board update failed")

    def _log_slow_answers(self, every_s: float = 10.0) -> None:
        """One line per ``every_s`` at most, however many answers were late."""
        now = self._clock()
        if now - self._slow_answers_logged_at < every_s:
            return
        self._slow_answers_logged_at = now
        log.warning(
            "call log slow: answers went out before they were stored",
            extra={"answers": self._answers_not_stored_in_time, "wait_s": ANSWER_STORE_WAIT_S},
        )
        self._answers_not_stored_in_time = 0
