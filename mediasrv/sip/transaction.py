"""SIP transactions, RFC 3261 §17, with the RFC 6026 "Accepted" state for INVITE 2xx.

Sans-IO: a transaction is given a ``send`` callable (bytes out to the peer), a ``Timers`` clock
(``call_later`` and ``time``; an asyncio loop is one, tests pass a fake one) and callbacks to its
transaction user. Timer names follow the RFC (A..M).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .message import Headers, Request, Response, serialize


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """The injected clock (an asyncio event loop satisfies it)."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle: ...

    def time(self) -> float: ...


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 timer values; T1 is the RTT estimate."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1/§7.2
    TERMINATED = "Terminated"


Send = Callable[[bytes], None]


class Transaction:
    """Common state: timers and the termination hook the transaction layer uses."""

    __slots__ = ("_on_terminated", "_timers", "branch", "cfg", "key", "reliable", "send", "state")

    kind = "transaction"

    def __init__(
        self,
        key: tuple[str, ...],
        branch: str,
        send: Send,
        timers: Timers,
        cfg: TimerConfig,
        reliable: bool,
        on_terminated: Callable[[Transaction], None],
    ) -> None:
        self.key = key
        self.branch = branch
        self.send = send
        self._timers = timers
        self.cfg = cfg
        self.reliable = reliable
        self._on_terminated = on_terminated
        self.state = State.TRYING

    def _terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self.state = State.TERMINATED
        self._cancel_timers()
        self._on_terminated(self)
        self._release()

    def _release(self) -> None:
        """Drop the references to our transaction user: they form reference cycles (the leg
        holds us, we hold its bound methods) that would otherwise wait for the cyclic GC,
        whose pauses at thousands of calls show up as retransmissions."""

    def _cancel_timers(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Client transactions (§17.1)
# ---------------------------------------------------------------------------------------------


class ClientTransaction(Transaction):
    """Base of client transactions: the request, its TU callbacks, and the timeout timer."""

    __slots__ = (
        "_retransmit",
        "_timeout",
        "interval",
        "on_response",
        "on_timeout",
        "raw",
        "request",
    )

    def __init__(
        self,
        request: Request,
        send: Send,
        timers: Timers,
        cfg: TimerConfig,
        reliable: bool,
        on_terminated: Callable[[Transaction], None],
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None],
    ) -> None:
        branch = request.branch or ""
        super().__init__(
            (branch, request.cseq[1]), branch, send, timers, cfg, reliable, on_terminated
        )
        self.request: Request | None = request
        self.raw = serialize(request)
        self.on_response = on_response
        self.on_timeout = on_timeout
        self._retransmit: TimerHandle | None = None
        self._timeout: TimerHandle | None = None
        self.interval = cfg.t1

    def _cancel_timers(self) -> None:
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    def receive(self, response: Response) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        self.on_response = _ignore_response
        self.on_timeout = _nothing

    def _quiesce(self) -> None:
        """The TU has its final answer; what is left (absorbing retransmissions until the
        timer ends the transaction) needs neither the request nor the TU. Letting go now
        frees the call's objects at once instead of 64*T1 later."""
        self.request = None
        self._release()


def _ignore_response(_response: Response) -> None:
    return None


def _nothing() -> None:
    return None


class InviteClientTransaction(ClientTransaction):
    """§17.1.1 (figure 5), with RFC 6026 §7.2 Accepted state absorbing 2xx retransmissions."""

    __slots__ = ("ack_2xx_raw", "ack_raw")

    kind = "invite_client"

    def __init__(
        self,
        request: Request,
        send: Send,
        timers: Timers,
        cfg: TimerConfig,
        reliable: bool,
        on_terminated: Callable[[Transaction], None],
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None],
    ) -> None:
        super().__init__(
            request, send, timers, cfg, reliable, on_terminated, on_response, on_timeout
        )
        self.state = State.CALLING
        self.ack_raw: bytes | None = None
        self.ack_2xx_raw: bytes | None = None

    def start(self) -> None:
        self.send(self.raw)
        if not self.reliable:
            self._retransmit = self._timers.call_later(self.interval, self.timer_a)
        self._timeout = self._timers.call_later(64 * self.cfg.t1, self.timer_b)

    def timer_a(self) -> None:
        """§17.1.1.2: retransmit the INVITE, doubling the interval each time."""
        if self.state is not State.CALLING:
            return
        self.send(self.raw)
        self.interval *= 2
        self._retransmit = self._timers.call_later(self.interval, self.timer_a)

    def timer_b(self) -> None:
        """§17.1.1.2: no final response within 64*T1: inform the TU of a timeout."""
        self._timeout = None
        if self.state in (State.CALLING, State.PROCEEDING):
            on_timeout = self.on_timeout
            self._terminate()
            on_timeout()

    def timer_d(self) -> None:
        """§17.1.1.2: the wait for response retransmissions is over."""
        self._timeout = None
        self._terminate()

    def timer_m(self) -> None:
        """RFC 6026 §7.2: leave Accepted."""
        self._timeout = None
        self._terminate()

    def receive(self, response: Response) -> None:
        code = response.status
        state = self.state
        if state in (State.CALLING, State.PROCEEDING):
            if self._retransmit is not None:
                self._retransmit.cancel()
                self._retransmit = None
            if code < 200:
                self.state = State.PROCEEDING
                self.on_response(response)
            elif code < 300:
                self._enter_accepted()
                self.on_response(response)
            else:
                on_response = self.on_response  # _enter_completed may terminate (TCP)
                self._enter_completed(response)
                on_response(response)
                self._quiesce()
        elif state is State.ACCEPTED:
            if 200 <= code < 300:
                # 2xx retransmission: ACK it again (§13.2.2.4); before the TU gave us its
                # ACK, the TU handles it.
                if self.ack_2xx_raw is not None:
                    self.send(self.ack_2xx_raw)
                else:
                    self.on_response(response)
        elif state is State.COMPLETED:
            if code >= 300 and self.ack_raw is not None:
                self.send(self.ack_raw)  # §17.1.1.2: ACK each retransmitted final response

    def set_2xx_ack(self, raw: bytes) -> None:
        """The TU's ACK for our 2xx: we resend it on retransmitted 2xx from now on."""
        self.ack_2xx_raw = raw
        if self.state is State.ACCEPTED:
            self._quiesce()

    def _enter_accepted(self) -> None:
        self.state = State.ACCEPTED
        if self._timeout is not None:
            self._timeout.cancel()
        self._timeout = self._timers.call_later(64 * self.cfg.t1, self.timer_m)

    def _enter_completed(self, response: Response) -> None:
        self.state = State.COMPLETED
        assert self.request is not None
        self.ack_raw = serialize(make_non2xx_ack(self.request, response))
        self.send(self.ack_raw)
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if self.reliable:
            self._terminate()
        else:
            # Timer D: "> 32 s" for unreliable transports (§17.1.1.2); 64*T1 is 32 s at the
            # default T1 and scales with a configured T1 like every other timer here.
            self._timeout = self._timers.call_later(64 * self.cfg.t1, self.timer_d)


def make_non2xx_ack(request: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK for a non-2xx final response is part of the INVITE transaction."""
    headers = Headers()
    top_via = request.headers.get("Via")
    if top_via is not None:
        headers.add("Via", top_via)
    for name in ("Route",):
        for value in request.headers.get_all(name):
            headers.add(name, value)
    headers.add("Max-Forwards", request.headers.get("Max-Forwards") or "70")
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq[0]} ACK")
    return Request("ACK", request.uri, headers)


class NonInviteClientTransaction(ClientTransaction):
    """§17.1.2 (figure 6)."""

    __slots__ = ()

    kind = "non_invite_client"

    def start(self) -> None:
        self.send(self.raw)
        if not self.reliable:
            self._retransmit = self._timers.call_later(self.interval, self.timer_e)
        self._timeout = self._timers.call_later(64 * self.cfg.t1, self.timer_f)

    def timer_e(self) -> None:
        """§17.1.2.2: retransmit; the interval doubles up to T2 (stays T2 in Proceeding)."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self.send(self.raw)
        if self.state is State.TRYING:
            self.interval = min(self.interval * 2, self.cfg.t2)
        else:
            self.interval = self.cfg.t2
        self._retransmit = self._timers.call_later(self.interval, self.timer_e)

    def timer_f(self) -> None:
        self._timeout = None
        if self.state in (State.TRYING, State.PROCEEDING):
            on_timeout = self.on_timeout
            self._terminate()
            on_timeout()

    def timer_k(self) -> None:
        self._timeout = None
        self._terminate()

    def receive(self, response: Response) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return  # Completed: absorb retransmitted final responses
        if response.status < 200:
            self.state = State.PROCEEDING
            self.on_response(response)
            return
        self.state = State.COMPLETED
        self._cancel_timers()
        self.on_response(response)
        self._quiesce()
        if self.reliable:
            self._terminate()
        else:
            self._timeout = self._timers.call_later(self.cfg.t4, self.timer_k)


# ---------------------------------------------------------------------------------------------
# Server transactions (§17.2)
# ---------------------------------------------------------------------------------------------


class ServerTransaction(Transaction):
    __slots__ = ("_retransmit", "_timeout", "interval", "last_response", "request")

    def __init__(
        self,
        key: tuple[str, ...],
        request: Request,
        send: Send,
        timers: Timers,
        cfg: TimerConfig,
        reliable: bool,
        on_terminated: Callable[[Transaction], None],
    ) -> None:
        super().__init__(key, request.branch or "", send, timers, cfg, reliable, on_terminated)
        self.request: Request | None = request
        self.last_response: bytes | None = None
        self._retransmit: TimerHandle | None = None
        self._timeout: TimerHandle | None = None
        self.interval = cfg.t1

    def _cancel_timers(self) -> None:
        if self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    @property
    def final_sent(self) -> bool:
        return self.state not in (State.TRYING, State.PROCEEDING)

    def respond(self, response: Response) -> None:
        raise NotImplementedError

    def retransmission(self) -> None:
        raise NotImplementedError


class InviteServerTransaction(ServerTransaction):
    """§17.2.1 (figure 7), with RFC 6026 §7.1 Accepted state: 2xx is retransmitted (§13.3.1.4)
    until the ACK arrives (the UA core tells us via :meth:`ack_2xx`), or timer L fires."""

    __slots__ = ("on_ack_timeout", "status")

    kind = "invite_server"

    def __init__(
        self,
        key: tuple[str, ...],
        request: Request,
        send: Send,
        timers: Timers,
        cfg: TimerConfig,
        reliable: bool,
        on_terminated: Callable[[Transaction], None],
        on_ack_timeout: Callable[[], None],
    ) -> None:
        super().__init__(key, request, send, timers, cfg, reliable, on_terminated)
        self.state = State.PROCEEDING
        self.status = 0
        self.on_ack_timeout = on_ack_timeout

    def respond(self, response: Response) -> None:
        if self.state is not State.PROCEEDING:
            return  # a final response went already
        raw = serialize(response)
        self.last_response = raw
        self.status = response.status
        self.send(raw)
        if response.status < 200:
            return
        self.interval = self.cfg.t1
        if response.status < 300:
            self.state = State.ACCEPTED
            # §13.3.1.4: the UAS core retransmits 2xx with T1 doubling up to T2 until ACK,
            # over unreliable and reliable transports alike.
            self._retransmit = self._timers.call_later(self.interval, self.timer_g)
            self._timeout = self._timers.call_later(64 * self.cfg.t1, self.timer_l)
        else:
            self.state = State.COMPLETED
            self.request = None  # ACKs match on the key; the request is no longer needed
            self.on_ack_timeout = _nothing
            if not self.reliable:
                self._retransmit = self._timers.call_later(self.interval, self.timer_g)
            self._timeout = self._timers.call_later(64 * self.cfg.t1, self.timer_h)

    def retransmission(self) -> None:
        """§17.2.1: a retransmitted INVITE gets the last response again."""
        if self.last_response is not None and self.state in (
            State.PROCEEDING,
            State.COMPLETED,
            State.ACCEPTED,
        ):
            self.send(self.last_response)

    def timer_g(self) -> None:
        if self.state not in (State.COMPLETED, State.ACCEPTED) or self.last_response is None:
            return
        self.send(self.last_response)
        self.interval = min(self.interval * 2, self.cfg.t2)
        self._retransmit = self._timers.call_later(self.interval, self.timer_g)

    def timer_h(self) -> None:
        """No ACK for our non-2xx final response: give up (§17.2.1)."""
        self._timeout = None
        self._terminate()

    def timer_l(self) -> None:
        """RFC 6026 §7.1: leave Accepted; if the 2xx was never ACKed the dialog must end
        (§13.3.1.4: the UAS SHOULD send BYE)."""
        self._timeout = None
        acked = self._retransmit is None
        if not acked:
            self.on_ack_timeout()
        self._terminate()

    def timer_i(self) -> None:
        self._timeout = None
        self._terminate()

    def ack(self) -> None:
        """The ACK for a non-2xx final response (same branch): Confirmed, then timer I."""
        if self.state is not State.COMPLETED:
            return
        self.state = State.CONFIRMED
        self._cancel_timers()
        if self.reliable:
            self._terminate()
        else:
            self._timeout = self._timers.call_later(self.cfg.t4, self.timer_i)

    def _release(self) -> None:
        self.on_ack_timeout = _nothing

    def ack_2xx(self) -> None:
        """The ACK for our 2xx arrived (matched by the dialog): stop retransmitting."""
        if self.state is State.ACCEPTED and self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
            self.request = None
            self.on_ack_timeout = _nothing


class NonInviteServerTransaction(ServerTransaction):
    """§17.2.2 (figure 8)."""

    __slots__ = ()

    kind = "non_invite_server"

    def respond(self, response: Response) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        raw = serialize(response)
        self.last_response = raw
        self.send(raw)
        if response.status < 200:
            self.state = State.PROCEEDING
            return
        self.state = State.COMPLETED
        self.request = None
        if self.reliable:
            self._terminate()
        else:
            self._timeout = self._timers.call_later(64 * self.cfg.t1, self.timer_j)

    def retransmission(self) -> None:
        if self.last_response is not None:
            self.send(self.last_response)

    def timer_j(self) -> None:
        self._timeout = None
        self._terminate()
