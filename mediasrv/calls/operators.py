"""Operator state (F10): offline, idle, ringing, busy, wrap-up, tracked from calls and
registrations.

One :class:`OperatorBoard` serves every call of the process (built by the composition root and
passed in, never a module global). Operators reached by URI or phone number are idle until a
call makes them ringing or busy; softphones are offline until they register. After a call an
operator spends ``wrap_up`` seconds in wrap-up (Asterisk ``wrapuptime``) before the board calls
them idle again and tells its listeners (the queues) so the next caller can be offered.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .clock import Clock, TimerHandle

log = logging.getLogger("mediasrv.calls.operators")


class OperatorState(enum.Enum):
    OFFLINE = "offline"  # a softphone with no registration
    IDLE = "idle"
    RINGING = "ringing"
    BUSY = "busy"
    WRAP_UP = "wrap-up"


AVAILABLE = frozenset({OperatorState.IDLE})


@dataclass(slots=True)
class _Entry:
    state: OperatorState
    registered_only: bool  # a softphone: offline whenever it has no registration
    registered: bool = False
    timer: TimerHandle | None = None
    since: float = 0.0


IdleListener = Callable[[str], None]


class OperatorBoard:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._ops: dict[str, _Entry] = {}
        self._listeners: list[IdleListener] = []

    # An unnamed target (a bare URI: a PBX, a carrier number) may take many calls at once:
    # the board tracks named operators only, and "" is always idle.

    # -- queries ----------------------------------------------------------------------------
    def state(self, operator: str, *, softphone: bool = False) -> OperatorState:
        if not operator:
            return OperatorState.IDLE
        return self._entry(operator, softphone).state

    def snapshot(self) -> dict[str, OperatorState]:
        """Every known operator's state (the live board)."""
        return {name: e.state for name, e in self._ops.items()}

    def is_available(self, operator: str, *, softphone: bool = False) -> bool:
        return self.state(operator, softphone=softphone) in AVAILABLE

    def can_ever_answer(self, operator: str, *, softphone: bool = False) -> bool:
        """Not offline: busy and wrap-up operators will be free again."""
        return self.state(operator, softphone=softphone) is not OperatorState.OFFLINE

    # -- listeners (queues) -----------------------------------------------------------------
    def on_idle(self, listener: IdleListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: IdleListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- transitions ------------------------------------------------------------------------
    def registered(self, operator: str, up: bool) -> None:
        """A softphone registered (``up``) or its last binding went away."""
        if not operator:
            return
        e = self._entry(operator, True)
        e.registered = up
        if up and e.state is OperatorState.OFFLINE:
            self._set(operator, e, OperatorState.IDLE)
        elif not up and e.state in (OperatorState.IDLE, OperatorState.WRAP_UP):
            self._set(operator, e, OperatorState.OFFLINE)

    def ringing(self, operator: str, *, softphone: bool = False) -> None:
        if operator:
            self._set(operator, self._entry(operator, softphone), OperatorState.RINGING)

    def busy(self, operator: str, *, softphone: bool = False) -> None:
        if operator:
            self._set(operator, self._entry(operator, softphone), OperatorState.BUSY)

    def released(self, operator: str, *, softphone: bool = False) -> None:
        """An attempt that rang ended unanswered: back to idle (or offline)."""
        if not operator:
            return
        e = self._entry(operator, softphone)
        if e.state is OperatorState.RINGING:
            self._become_free(operator, e)

    def finished(self, operator: str, wrap_up: float, *, softphone: bool = False) -> None:
        """A call with this operator ended: wrap-up for ``wrap_up`` seconds, then idle."""
        if not operator:
            return
        e = self._entry(operator, softphone)
        if wrap_up <= 0:
            self._become_free(operator, e)
            return
        self._set(operator, e, OperatorState.WRAP_UP)
        e.timer = self._clock.call_later(wrap_up, lambda: self._wrap_up_over(operator))

    # -- internals --------------------------------------------------------------------------
    def _entry(self, operator: str, softphone: bool) -> _Entry:
        e = self._ops.get(operator)
        if e is None:
            first = OperatorState.OFFLINE if softphone else OperatorState.IDLE
            e = self._ops[operator] = _Entry(first, softphone, since=self._clock.now())
        return e

    def _wrap_up_over(self, operator: str) -> None:
        e = self._ops[operator]
        e.timer = None
        if e.state is OperatorState.WRAP_UP:
            self._become_free(operator, e)

    def _become_free(self, operator: str, e: _Entry) -> None:
        offline = e.registered_only and not e.registered
        self._set(operator, e, OperatorState.OFFLINE if offline else OperatorState.IDLE)

    def _set(self, operator: str, e: _Entry, state: OperatorState) -> None:
        if e.timer is not None and state is not OperatorState.WRAP_UP:
            e.timer.cancel()
            e.timer = None
        if e.state is state:
            return
        e.state, e.since = state, self._clock.now()
        log.debug("operator state", extra={"operator": operator, "state": state.value})
        if state is OperatorState.IDLE:
            for listener in list(self._listeners):
                listener(operator)
