"""The live board (F25, issue 13 §1): what each business's call centre looks like right now.

Fed by ``call_pipeline.py`` from the same three points that emit the call events (the call's row is
written ringing, answered, completed), it keeps per business: the operators (state, current
call, today's calls), the calls in progress, and the queue (callers waiting, each with its
queue, position and since when, from the flow's "queued with position" events; issue 10 §6).
Every change is an event with an id
``<boot>-<seq>`` in a bounded ring buffer per business, so a client that lost its connection
resumes from ``Last-Event-ID`` without loss, or gets a fresh snapshot when its id is too old
or from another run of the server (the boot part differs).

Operator state is derived from the calls seen (:class:`CallDerivedStates`) behind the small
:class:`OperatorStates` protocol, which the flow's operator state machine can replace.

Everything here runs on the event loop and does no I/O; time comes from an injected clock.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from mediasrv.calls.business import Business, OperatorKind
from mediasrv.outputs.calllog import CallRecord, Disposition

__all__ = [
    "BoardCall",
    "BoardEvent",
    "CallDerivedStates",
    "LiveBoard",
    "OperatorState",
    "OperatorStates",
    "RosterEntry",
    "roster_of",
    "softphone_reachable",
]

RING_EVENTS = 512  # events kept per business for Last-Event-ID replay
TODAY_CALLS_SHOWN = 20  # per operator, the latest ones (the count covers them all)
DEFAULT_TIME_ZONE = "Asia/Tokyo"

CallLater = Callable[[float, Callable[[], None]], object]


class OperatorState(enum.StrEnum):
    OFFLINE = "offline"  # cannot take a call (a softphone with no registration)
    IDLE = "idle"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"  # after a call, for the operator's wrap_up seconds


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """An operator of a business as the board shows it (from the business configuration)."""

    name: str
    target: str = ""  # SIP URI, E.164 number or softphone user name
    display_name: str = ""
    kind: str = "sip"  # "sip" | "phone" | "softphone"
    wrap_up: float = 0.0
    listed: bool = True  # False: not in the configuration, seen answering a call

    def matches(self, uri: str) -> bool:
        """Whether a dialled or answering URI is this operator's."""
        if not uri or not self.target:
            return False
        if _uri_key(uri) == _uri_key(self.target):
            return True
        return self.kind != "sip" and _uri_user(uri) == _uri_user(self.target)


def _uri_key(uri: str) -> str:
    """user@host[:port] of a SIP URI, without scheme, parameters and headers (RFC 3261 §19.1)."""
    text = uri.strip().strip("<>")
    for scheme in ("sips:", "sip:", "tel:"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
            break
    return text.split(";", 1)[0].split("?", 1)[0].lower()


def _uri_user(uri: str) -> str:
    key = _uri_key(uri)
    return key.split("@", 1)[0] if "@" in key else key


def roster_of(business: Business) -> list[RosterEntry]:
    """The board's operators of a business configuration (issue 10's ``[[operators]]``)."""
    return [
        RosterEntry(op.name, op.target, op.display_name, op.kind.value, op.wrap_up)
        for op in business.operators
    ]


def softphone_reachable(
    contacts_for: Callable[[str], Sequence[object]],
) -> Callable[[RosterEntry], bool]:
    """Offline = a softphone operator with no live registration; others count as reachable
    (nothing tells whether a SIP URI or a phone number would answer)."""

    def reachable(op: RosterEntry) -> bool:
        return op.kind != OperatorKind.SOFTPHONE.value or bool(contacts_for(op.target))

    return reachable


class OperatorStates(Protocol):
    """Where an operator's state comes from: the seam for the flow's operator state machine."""

    def state(self, business: str, operator: RosterEntry, now: float) -> OperatorState: ...

    def current_call(self, business: str, operator: str) -> str | None: ...


class CallDerivedStates:
    """Operator state derived from the calls the board sees (until the flow's state lands).

    Ringing while a call rings them, on a call from the answer to the end, wrap-up for their
    ``wrap_up`` seconds after it, else idle; offline when ``reachable`` says so.
    """

    def __init__(self, reachable: Callable[[RosterEntry], bool] = lambda _op: True) -> None:
        self._reachable = reachable
        self._ringing: dict[tuple[str, str], set[str]] = {}
        self._on_call: dict[tuple[str, str], str] = {}
        self._wrap_until: dict[tuple[str, str], float] = {}

    def ringing(self, business: str, operators: Iterable[str], call_id: str) -> None:
        for name in operators:
            self._ringing.setdefault((business, name), set()).add(call_id)

    def answered(self, business: str, operator: str, call_id: str) -> None:
        self._on_call[(business, operator)] = call_id
        self._wrap_until.pop((business, operator), None)

    def ended(self, business: str, call_id: str, wrap_up_until: dict[str, float]) -> None:
        for key, calls in list(self._ringing.items()):
            if key[0] == business:
                calls.discard(call_id)
                if not calls:
                    del self._ringing[key]
        for key, current in list(self._on_call.items()):
            if key[0] == business and current == call_id:
                del self._on_call[key]
        for name, until in wrap_up_until.items():
            self._wrap_until[(business, name)] = until

    def stop_ringing(self, business: str, call_id: str, except_: str) -> None:
        """The call was answered by ``except_``: the others stop ringing for it."""
        for key, calls in list(self._ringing.items()):
            if key[0] == business and key[1] != except_:
                calls.discard(call_id)
                if not calls:
                    del self._ringing[key]

    def state(self, business: str, operator: RosterEntry, now: float) -> OperatorState:
        key = (business, operator.name)
        if key in self._on_call:
            return OperatorState.ON_CALL
        if self._ringing.get(key):
            return OperatorState.RINGING
        if self._wrap_until.get(key, 0.0) > now:
            return OperatorState.WRAP_UP
        if not self._reachable(operator):
            return OperatorState.OFFLINE
        return OperatorState.IDLE

    def current_call(self, business: str, operator: str) -> str | None:
        key = (business, operator)
        if key in self._on_call:
            return self._on_call[key]
        ringing = self._ringing.get(key)
        return min(ringing) if ringing else None


@dataclass(slots=True)
class BoardCall:
    """A call in progress, as the board shows it."""

    call_id: str
    caller_number: str
    caller_display: str
    tracking_number: str
    medium: str
    campaign: str
    started: float
    answered: float | None = None
    operator: str = ""  # the roster name of who answered
    ringing: tuple[str, ...] = ()  # roster names being rung

    def to_dict(self) -> dict[str, object]:
        return {
            "call_id": self.call_id,
            "caller_number": self.caller_number,
            "caller_display": self.caller_display,
            "tracking_number": self.tracking_number,
            "medium": self.medium,
            "campaign": self.campaign,
            "started": self.started,
            "answered": self.answered,
            "state": "answered" if self.answered is not None else "ringing",
            "operator": self.operator,
            "ringing": list(self.ringing),
        }


@dataclass(frozen=True, slots=True)
class TodayCall:
    call_id: str
    caller_number: str
    tracking_number: str
    medium: str
    answered: float
    talk_seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "call_id": self.call_id,
            "caller_number": self.caller_number,
            "tracking_number": self.tracking_number,
            "medium": self.medium,
            "answered": self.answered,
            "talk_seconds": round(self.talk_seconds, 1),
        }


@dataclass(slots=True)
class QueuedCall:
    """A caller waiting in a queue (issue 10 §6 "queued with position"; F10)."""

    call_id: str
    queue: str
    position: int
    since: float  # when the caller joined the queue (wall clock)
    caller_number: str = ""
    caller_display: str = ""
    tracking_number: str = ""
    medium: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "call_id": self.call_id,
            "queue": self.queue,
            "position": self.position,
            "since": self.since,
            "caller_number": self.caller_number,
            "caller_display": self.caller_display,
            "tracking_number": self.tracking_number,
            "medium": self.medium,
        }


@dataclass(frozen=True, slots=True)
class BoardEvent:
    """One change: ``kind`` is ``call`` (upsert), ``call_gone``, ``operator`` (upsert),
    ``operator_gone``, ``queue`` (the whole queue list of the business) or ``snapshot``."""

    id: str
    kind: str
    data: dict[str, object]


@dataclass
class _Business:
    slug: str
    zone: ZoneInfo
    boot: str
    roster: dict[str, RosterEntry] = field(default_factory=dict)
    calls: dict[str, BoardCall] = field(default_factory=dict)
    queued: dict[str, QueuedCall] = field(default_factory=dict)  # call id -> its place
    today: dict[str, list[TodayCall]] = field(default_factory=dict)
    day: date | None = None
    seq: int = 0
    events: deque[tuple[int, str, dict[str, object]]] = field(
        default_factory=lambda: deque(maxlen=RING_EVENTS)
    )
    changed: asyncio.Event | None = None

    def event_id(self, seq: int) -> str:
        return f"{self.boot}-{seq}"


class LiveBoard:
    """The live state of every business, and the stream of its changes."""

    def __init__(
        self,
        clock: Callable[[], float],
        call_later: CallLater | None = None,
        states: OperatorStates | None = None,
        ring_events: int = RING_EVENTS,
        queue_available: bool = True,
    ) -> None:
        self._clock = clock
        self._queue_available = queue_available  # the flows' queue (F10) feeds call_queued
        self._call_later = call_later
        self._derived = states if isinstance(states, CallDerivedStates) else None
        if states is None:
            self._derived = CallDerivedStates()
            states = self._derived
        self._states: OperatorStates = states
        self._ring_events = ring_events
        self._boot = secrets.token_hex(4)  # event ids of another run are "too old"
        self._businesses: dict[str, _Business] = {}

    # ------------------------------------------------------------------ configuration

    def businesses(self) -> list[str]:
        return sorted(self._businesses)

    def set_roster(
        self, business: str, operators: Sequence[RosterEntry], time_zone: str = ""
    ) -> None:
        """The business's configured operators (at start and when its configuration changes)."""
        b = self._business(business)
        if time_zone:
            b.zone = _zone(time_zone)
        new = {op.name: op for op in operators}
        for name, old in list(b.roster.items()):
            if name not in new and old.listed:
                del b.roster[name]
                self._publish(b, "operator_gone", {"name": name})
        for name, op in new.items():
            if b.roster.get(name) != op:
                b.roster[name] = op
                self._publish_operator(b, name)

    def seed_today(self, records: Iterable[CallRecord]) -> None:
        """Today's answered calls from the call log (at start, so a restart keeps the counts)."""
        for record in records:
            if record.answer_time is None or record.disposition is Disposition.IN_PROGRESS:
                continue
            b = self._business(record.business)
            self._roll_day(b)
            if _local_day(record.answer_time, b.zone) != b.day:
                continue
            name = self._operator_for(b, record.operator_uri)
            if name and not any(c.call_id == record.call_id for c in b.today.get(name, ())):
                b.today.setdefault(name, []).append(_today_call(record))
        for b in self._businesses.values():
            for calls in b.today.values():
                calls.sort(key=lambda c: c.answered)

    # ------------------------------------------------------------------ call changes

    def call_ringing(self, record: CallRecord, dialled: Sequence[str] = ()) -> None:
        """The call arrived (its in-progress row): ``dialled`` are the URIs it rings."""
        b = self._business(record.business)
        self._roll_day(b)
        rung = tuple(n for n in (self._listed_operator(b, uri) for uri in dialled) if n)
        call = BoardCall(
            record.call_id,
            record.caller_number,
            record.caller_display,
            record.tracking_number,
            record.medium,
            record.campaign,
            record.start_time,
            ringing=rung,
        )
        b.calls[call.call_id] = call
        if self._derived is not None:
            self._derived.ringing(b.slug, rung, call.call_id)
        self._publish(b, "call", {"call": call.to_dict()})
        for name in rung:
            self._publish_operator(b, name)

    def call_answered(self, record: CallRecord) -> None:
        b = self._business(record.business)
        call = b.calls.get(record.call_id)
        if call is None:  # the ringing change was not seen (it cannot be: be safe anyway)
            self.call_ringing(record)
            call = b.calls[record.call_id]
        name = self._operator_for(b, record.operator_uri)
        call.answered = record.answer_time if record.answer_time is not None else self._clock()
        call.operator = name
        was_ringing, call.ringing = call.ringing, ()
        if self._derived is not None and name:
            self._derived.answered(b.slug, name, call.call_id)
            self._derived.stop_ringing(b.slug, call.call_id, except_=name)
        self._publish(b, "call", {"call": call.to_dict()})
        for op in dict.fromkeys((*was_ringing, name)):
            if op:
                self._publish_operator(b, op)

    def call_ended(self, record: CallRecord) -> None:
        b = self._business(record.business)
        self._roll_day(b)
        call = b.calls.pop(record.call_id, None)
        if b.queued.pop(record.call_id, None) is not None:
            self._publish_queue(b)
        touched = list(call.ringing) if call is not None else []
        name = call.operator if call is not None and call.operator else ""
        if not name and record.answer_time is not None:
            name = self._operator_for(b, record.operator_uri)
        wrap: dict[str, float] = {}
        if name and record.answer_time is not None:
            touched.append(name)
            if _local_day(record.answer_time, b.zone) == b.day:
                b.today.setdefault(name, []).append(_today_call(record))
            wrap_up = b.roster[name].wrap_up if name in b.roster else 0.0
            if wrap_up > 0:
                wrap[name] = self._clock() + wrap_up
                self._after(wrap_up, lambda: self._publish_operator(b, name))
        if self._derived is not None:
            self._derived.ended(b.slug, record.call_id, wrap)
        self._publish(b, "call_gone", {"call_id": record.call_id})
        for op in dict.fromkeys(touched):
            self._publish_operator(b, op)

    def operator_ringing(self, business: str, call_id: str, uri: str) -> None:
        """The flow rings ``uri`` for the call (a forwarding attempt, a queue's offer)."""
        b = self._business(business)
        call = b.calls.get(call_id)
        name = self._listed_operator(b, uri)
        if call is None or not name or name in call.ringing:
            return
        call.ringing = (*call.ringing, name)
        if self._derived is not None:
            self._derived.ringing(b.slug, (name,), call_id)
        self._publish(b, "call", {"call": call.to_dict()})
        self._publish_operator(b, name)

    def call_queued(
        self, business: str, call_id: str, queue: str, position: int, at: float
    ) -> None:
        """The call waits in ``queue`` at ``position`` (1 = next); a move keeps its ``since``."""
        b = self._business(business)
        entry = b.queued.get(call_id)
        if entry is None:
            call = b.calls.get(call_id)
            entry = QueuedCall(call_id, queue, position, at)
            if call is not None:
                entry.caller_number, entry.caller_display = call.caller_number, call.caller_display
                entry.tracking_number, entry.medium = call.tracking_number, call.medium
            b.queued[call_id] = entry
        elif (entry.queue, entry.position) == (queue, position):
            return
        entry.queue, entry.position = queue, position
        self._publish_queue(b)

    def call_unqueued(self, business: str, call_id: str) -> None:
        """The call left its queue (an operator took it, overflow, a hang-up)."""
        b = self._businesses.get(business)
        if b is not None and b.queued.pop(call_id, None) is not None:
            self._publish_queue(b)

    def drop_call(self, business: str, call_id: str) -> None:
        """A call that ended without its last row (its task failed): off the board."""
        b = self._businesses.get(business)
        if b is not None and call_id in b.calls:
            self.call_ended(CallRecord(call_id, "", "", "", business=business))

    def operator_changed(self, business: str, operator: str) -> None:
        """For an external :class:`OperatorStates`: its state of ``operator`` changed."""
        b = self._business(business)
        if operator in b.roster:
            self._publish_operator(b, operator)

    # ------------------------------------------------------------------ reading

    def snapshot(self, business: str) -> BoardEvent:
        """The whole board of ``business`` now, with the id of its latest change."""
        b = self._businesses.get(business)
        if b is None:
            empty = _empty_board(business, self._clock(), self._queue_available)
            return BoardEvent(f"{self._boot}-0", "snapshot", empty)
        self._roll_day(b)
        data: dict[str, object] = {
            "business": b.slug,
            "now": self._clock(),
            "time_zone": b.zone.key,
            "operators": [self._operator_dict(b, n) for n in sorted(b.roster)],
            "calls": [c.to_dict() for c in sorted(b.calls.values(), key=lambda c: c.started)],
            "queue": self._queue_list(b),
            "queue_available": self._queue_available,
        }
        return BoardEvent(b.event_id(b.seq), "snapshot", data)

    def since(self, business: str, last_event_id: str | None) -> list[BoardEvent] | None:
        """The changes after ``last_event_id``, or None when a snapshot is needed instead
        (no id, an id of another run, or older than the ring buffer holds)."""
        b = self._businesses.get(business)
        if last_event_id is None or b is None:
            return None
        boot, _, seq_text = last_event_id.strip().partition("-")
        if boot != b.boot or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > b.seq:
            return None
        oldest = b.events[0][0] if b.events else b.seq + 1
        if seq < oldest - 1:
            return None  # events after it fell out of the buffer
        return [BoardEvent(b.event_id(s), k, d) for s, k, d in b.events if s > seq]

    def last_id(self, business: str) -> str:
        b = self._businesses.get(business)
        return b.event_id(b.seq) if b is not None else f"{self._boot}-0"

    async def wait_change(self, business: str, timeout: float) -> bool:
        """Until the board of ``business`` changes (True) or ``timeout`` passes (False)."""
        b = self._business(business)
        if b.changed is None:
            b.changed = asyncio.Event()
        changed = b.changed
        try:
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ internals

    def _business(self, slug: str) -> _Business:
        b = self._businesses.get(slug)
        if b is None:
            b = _Business(slug, _zone(DEFAULT_TIME_ZONE), self._boot)
            b.events = deque(maxlen=self._ring_events)
            self._businesses[slug] = b
        return b

    def _after(self, delay: float, callback: Callable[[], None]) -> None:
        if self._call_later is not None:
            self._call_later(delay, callback)

    def _roll_day(self, b: _Business) -> None:
        today = _local_day(self._clock(), b.zone)
        if b.day != today:
            had = bool(b.today)
            b.day, b.today = today, {}
            if had:
                for name in list(b.roster):
                    self._publish_operator(b, name)

    def _listed_operator(self, b: _Business, uri: str) -> str:
        for op in b.roster.values():
            if op.listed and op.matches(uri):
                return op.name
        return ""

    def _operator_for(self, b: _Business, uri: str) -> str:
        """The roster name of ``uri``; an operator not in the configuration is added as seen."""
        if not uri:
            return ""
        found = self._listed_operator(b, uri) or next(
            (op.name for op in b.roster.values() if op.matches(uri)), ""
        )
        if found:
            return found
        entry = RosterEntry(uri, uri, _uri_user(uri), listed=False)
        b.roster[entry.name] = entry
        return entry.name

    def _operator_dict(self, b: _Business, name: str) -> dict[str, object]:
        op = b.roster[name]
        today = b.today.get(name, [])
        call_id = self._states.current_call(b.slug, name)
        return {
            "name": op.name,
            "display_name": op.display_name or op.name,
            "state": self._states.state(b.slug, op, self._clock()).value,
            "call_id": call_id if call_id in b.calls else None,
            "listed": op.listed,
            "today": {
                "count": len(today),
                "talk_seconds": round(sum(c.talk_seconds for c in today), 1),
                "calls": [c.to_dict() for c in today[-TODAY_CALLS_SHOWN:]],
            },
        }

    @staticmethod
    def _queue_list(b: _Business) -> list[dict[str, object]]:
        entries = sorted(b.queued.values(), key=lambda e: (e.queue, e.position, e.since))
        return [e.to_dict() for e in entries]

    def _publish_queue(self, b: _Business) -> None:
        self._publish(b, "queue", {"queue": self._queue_list(b)})

    def _publish_operator(self, b: _Business, name: str) -> None:
        if name in b.roster:
            self._publish(b, "operator", {"operator": self._operator_dict(b, name)})

    def _publish(self, b: _Business, kind: str, data: dict[str, object]) -> None:
        b.seq += 1
        b.events.append((b.seq, kind, data))
        if b.changed is not None:
            b.changed.set()
            b.changed = None  # the next waiter waits for the next change


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


def _local_day(ts: float, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(ts, zone).date()


def _today_call(record: CallRecord) -> TodayCall:
    return TodayCall(
        record.call_id,
        record.caller_number,
        record.tracking_number,
        record.medium,
        record.answer_time or record.start_time,
        record.talk_seconds,
    )


def _empty_board(business: str, now: float, queue_available: bool) -> dict[str, object]:
    return {
        "business": business,
        "now": now,
        "time_zone": DEFAULT_TIME_ZONE,
        "operators": [],
        "calls": [],
        "queue": [],
        "queue_available": queue_available,
    }
