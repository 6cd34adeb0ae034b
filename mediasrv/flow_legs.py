"""SIP legs as the call flow sees them: adapters from ``sip.legs`` to ``calls.legs``.

``calls/`` never imports ``sip/`` (issue 10 §3) and ``sip/`` never imports ``calls/``, so the
translation lives here, at the composition root's level: :class:`SipCallerLeg` wraps an
``InboundLeg``, :class:`SipDialer` places ``OutboundLeg`` s through ``UserAgent.
create_outbound``; each turns the SIP leg events (``sip.events``) into ``calls.legs`` signals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mediasrv.calls.legs import (
    CallerLeg,
    Dialer,
    DialRequest,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegInfoDigit,
    LegReOffer,
    LegRinging,
    LegSignal,
    LegSignalSink,
    OperatorLeg,
    ReInviteDone,
    TargetUnresolved,
)
from mediasrv.calls.peers import resolve_peer
from mediasrv.config import to_e164
from mediasrv.sip.dialog import Peer
from mediasrv.sip.digest import DigestCredentials
from mediasrv.sip.events import Answered, Dtmf, Failed, Hangup, LegEvent, ReOffer, Ringing
from mediasrv.sip.legs import InboundLeg, OutboundLeg

# User parts that mean "no number" (RFC 3323 §4.1.1.3 "anonymous"; Japanese carriers also
# mark payphones and numbers they could not deliver).
_WITHHELD = {
    "": "anonymous",
    "anonymous": "anonymous",
    "restricted": "anonymous",
    "private": "anonymous",
    "payphone": "payphone",
    "unavailable": "unavailable",
    "unknown": "unavailable",
}


def signal_of(event: LegEvent) -> LegSignal | None:
    """The flow's signal for a SIP leg event (None: nothing the flow needs)."""
    if isinstance(event, Ringing):
        return LegRinging(event.code, event.sdp)
    if isinstance(event, Answered):
        return LegAnswered(event.sdp)
    if isinstance(event, Failed):
        return LegFailed(event.code, event.reason)
    if isinstance(event, Hangup):
        return LegHungUp(event.reason)
    if isinstance(event, Dtmf):
        return LegInfoDigit(event.digit, event.duration_ms)
    if isinstance(event, ReOffer):
        return LegReOffer(event.sdp, event.respond)
    return None


def translating(sink: LegSignalSink) -> Callable[[LegEvent], None]:
    def deliver(event: LegEvent) -> None:
        signal = signal_of(event)
        if signal is not None:
            sink(signal)

    return deliver


class SipCallerLeg:
    """:class:`~mediasrv.calls.legs.CallerLeg` over an inbound SIP leg."""

    def __init__(self, leg: InboundLeg) -> None:
        self.leg = leg

    @property
    def call_id(self) -> str:
        return self.leg.call_id

    @property
    def called(self) -> str:
        return self.leg.called_user

    @property
    def caller(self) -> str:
        """E.164 when derivable (blocklists hold E.164 rules), else the user part as sent."""
        user = self.leg.caller_user
        if user.strip().lower() in _WITHHELD:
            return ""
        return to_e164(user) or user

    @property
    def withheld(self) -> str:
        return _WITHHELD.get(self.leg.caller_user.strip().lower(), "")

    @property
    def caller_display(self) -> str:
        return self.leg.caller_display

    @property
    def offer(self) -> bytes | None:
        return self.leg.offer

    @property
    def terminated(self) -> bool:
        return self.leg.terminated

    def listen(self, sink: LegSignalSink) -> None:
        self.leg.sink = translating(sink)

    def ring(self, code: int = 180, sdp: bytes | None = None) -> None:
        self.leg.ring(code, sdp)

    def answer(self, sdp: bytes) -> None:
        self.leg.answer(sdp)

    def reject(self, code: int) -> None:
        self.leg.reject(code)

    def end(self) -> None:
        self.leg.end()

    def reinvite(self, sdp: bytes, on_done: ReInviteDone) -> None:
        self.leg.reinvite(sdp, on_done)


class SipOperatorLeg:
    """:class:`~mediasrv.calls.legs.OperatorLeg` over an outbound SIP leg."""

    def __init__(self, leg: OutboundLeg) -> None:
        self.leg = leg

    def cancel(self) -> None:
        self.leg.cancel()

    def end(self) -> None:
        self.leg.end()

    def reinvite(self, sdp: bytes, on_done: ReInviteDone) -> None:
        self.leg.reinvite(sdp, on_done)


CreateOutbound = Callable[..., OutboundLeg]  # UserAgent.create_outbound
Resolve = Callable[[str], Awaitable[Peer]]


class SipDialer:
    """:class:`~mediasrv.calls.legs.Dialer` over ``UserAgent.create_outbound``.

    ``route_phone(number, trunk)`` turns a PHONE target (``tel:+81...``) into the SIP URI of
    the trunk that reaches it; ``credentials_for(uri, trunk)`` gives the trunk's digest
    credentials (401/407 toward it)."""

    def __init__(
        self,
        create_outbound: CreateOutbound,
        *,
        route_phone: Callable[[str, str], str | None] = lambda _n, _t: None,
        credentials_for: Callable[[str, str], DigestCredentials | None] = lambda _u, _t: None,
        resolve: Resolve = resolve_peer,
    ) -> None:
        self._create = create_outbound
        self._route_phone = route_phone
        self._credentials_for = credentials_for
        self._resolve = resolve

    async def dial(self, request: DialRequest, sink: LegSignalSink) -> SipOperatorLeg:
        uri = request.uri
        if uri.startswith("tel:"):
            routed = self._route_phone(uri[4:], request.trunk)
            if routed is None:
                raise TargetUnresolved(f"no trunk reaches {uri[4:]} ({request.trunk or 'default'})")
            uri = routed
        try:
            peer = await self._resolve(uri)
        except (ValueError, OSError) as exc:
            raise TargetUnresolved(str(exc)) from exc
        behalf = request.on_behalf_of
        inbound = behalf.leg if isinstance(behalf, SipCallerLeg) else None
        leg = self._create(
            target=uri,
            peer=peer,
            # the operator sees the caller as the network sent it (as the straight-line flow)
            from_user=inbound.caller_user if inbound is not None else request.caller,
            from_display=inbound.caller_display if inbound is not None else request.caller_display,
            sdp=request.sdp,
            sink=translating(sink),
            credentials=self._credentials_for(uri, request.trunk),
            # the caller's hop count, less ours: a routing loop ends in 483 (RFC 7332 §3)
            max_forwards=inbound.onward_max_forwards if inbound is not None else None,
        )
        return SipOperatorLeg(leg)


def _conforms(caller: SipCallerLeg, operator: SipOperatorLeg, dialer: SipDialer) -> None:
    """mypy checks here that the adapters are the protocols the flow uses."""
    _c: CallerLeg = caller
    _o: OperatorLeg = operator
    _d: Dialer = dialer
