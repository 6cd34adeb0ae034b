"""Call legs: the inbound (UAS) and outbound (UAC) halves of a B2BUA call.

A leg owns one INVITE transaction and, once established, one dialog. It turns SIP into the
events of :mod:`mediasrv.sip.events` and offers the few verbs a call flow needs (ring, answer,
reject, cancel, bye, re-INVITE, INFO). The :class:`~mediasrv.sip.ua.UserAgent` routes messages
to legs; legs reach the network only through it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

from .dialog import Dialog, DialogState, Peer
from .digest import DigestClient, DigestCredentials, DigestError, choose_challenge
from .events import Answered, Dtmf, Failed, Hangup, LegEvent, LegEventSink, ReOffer, Ringing
from .message import (
    Headers,
    Request,
    Response,
    make_response,
    new_branch,
    new_tag,
    onward_max_forwards,
    parse_max_forwards,
    serialize,
)
from .transaction import InviteClientTransaction, InviteServerTransaction
from .uri import SipParseError, parse_name_addr, parse_uri, split_list, unquote

if TYPE_CHECKING:
    from .ua import UserAgent

SDP = "application/sdp"


class LegState(enum.Enum):
    INIT = "init"
    PROCEEDING = "proceeding"  # provisional sent/received
    CONFIRMED = "confirmed"  # 2xx sent/received
    TERMINATING = "terminating"  # BYE or CANCEL under way
    TERMINATED = "terminated"


def _ignore(_: LegEvent) -> None:
    return None


MAX_INFO_DURATION_MS = 5000  # longer key presses in an INFO body are taken as this


def parse_dtmf_info(content_type: str, body: bytes) -> Dtmf | None:
    """INFO bodies: application/dtmf-relay ("Signal=5\\r\\nDuration=160") or application/dtmf."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace")
    if ctype == "application/dtmf-relay":
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip().lower()] = value.strip()
        signal = fields.get("signal", "")
        duration = fields.get("duration", "160")
    elif ctype == "application/dtmf":
        signal, duration = text.strip(), "160"
    else:
        return None
    signal = {"10": "*", "11": "#"}.get(signal, signal).upper()
    if len(signal) != 1 or signal not in "0123456789*#ABCD":
        return None
    # A nonsense Duration (none, not a number, hours) is taken as the usual 160 ms or capped:
    # the media side holds the digit until its end to merge it with RFC 4733 (issue 9 §4).
    ms = int(duration) if duration.isascii() and duration.isdigit() and len(duration) < 7 else 160
    return Dtmf(signal, min(ms, MAX_INFO_DURATION_MS))


class Leg:
    """What both leg kinds share: the dialog, in-dialog requests, and event delivery."""

    role = "leg"

    def __init__(self, ua: UserAgent, sink: LegEventSink | None) -> None:
        self.ua = ua
        self.sink: LegEventSink = sink or _ignore
        self.state = LegState.INIT
        self.dialog: Dialog | None = None
        self.end_reason = ""
        self._reinvite_pending: Callable[[int, bytes | None], None] | None = None
        self._reinvite_ist: InviteServerTransaction | None = None

    # -- events -------------------------------------------------------------------------------
    def emit(self, event: LegEvent) -> None:
        self.sink(event)

    @property
    def terminated(self) -> bool:
        return self.state is LegState.TERMINATED

    def _finish(self, reason: str) -> None:
        if self.state is LegState.TERMINATED:
            return
        self.state = LegState.TERMINATED
        if not self.end_reason:
            self.end_reason = reason
        if self.dialog is not None:
            self.dialog.state = DialogState.TERMINATED
            self.ua.forget_dialog(self.dialog)

    # -- verbs --------------------------------------------------------------------------------
    def bye(self) -> None:
        """End a confirmed dialog (§15.1.1). The leg is over once the BYE is sent."""
        if self.state is not LegState.CONFIRMED or self.dialog is None:
            return
        request = self.dialog.request("BYE", self.ua.local)
        self.state = LegState.TERMINATING
        self.ua.send_request(request, self.dialog.peer, lambda _r: None, lambda: None)
        self._finish("local-bye")

    def send_dtmf_info(self, digit: str, duration_ms: int = 160) -> None:
        if self.state is not LegState.CONFIRMED or self.dialog is None:
            return
        body = f"Signal={digit}\r\nDuration={duration_ms}\r\n".encode()
        request = self.dialog.request(
            "INFO", self.ua.local, body, content_type="application/dtmf-relay"
        )
        self.ua.send_request(request, self.dialog.peer, lambda _r: None, lambda: None)

    def reinvite(self, sdp: bytes, on_done: Callable[[int, bytes | None], None]) -> None:
        """Send a re-INVITE with a new offer (§14.1); ``on_done(code, answer_sdp)``."""
        if self.state is not LegState.CONFIRMED or self.dialog is None:
            on_done(481, None)
            return
        dialog = self.dialog
        request = dialog.request("INVITE", self.ua.local, sdp, SDP)

        def on_response(response: Response) -> None:
            if response.status < 200:
                return
            if response.status < 300:
                self.ua.send_ack(dialog, request.cseq[0])
            on_done(response.status, response.body or None)

        self.ua.send_invite(request, dialog.peer, on_response, lambda: on_done(408, None))

    # -- requests inside the dialog -------------------------------------------------------------
    def on_request(self, request: Request, peer: Peer) -> None:
        method = request.method
        if method == "BYE":
            self.ua.respond_stateless_ok(request, peer)
            self._finish("bye")
            self.emit(Hangup("bye"))
        elif method == "INVITE":
            self._on_reinvite(request, peer)
        elif method == "INFO":
            dtmf = parse_dtmf_info(request.headers.get("Content-Type") or "", request.body)
            self.ua.respond_stateless_ok(request, peer)
            if dtmf is not None:
                self.emit(dtmf)
        elif method in ("OPTIONS", "UPDATE", "NOTIFY"):
            self.ua.respond_stateless_ok(request, peer)
        else:
            self.ua.reply(request, peer, 405)

    def _on_reinvite(self, request: Request, peer: Peer) -> None:
        if parse_max_forwards(request.headers.get("Max-Forwards")) == 0:
            # we would pass it on to the other leg: not with no hops left (RFC 3261 §16.3)
            self.ua.reply(request, peer, 483)
            return
        if self._reinvite_pending is not None:
            self.ua.reply(request, peer, 491)  # §14.2: a re-INVITE is already in progress
            return
        ist = self.ua.create_server_invite(request, peer)
        self._reinvite_ist = ist
        dialog = self.dialog
        assert dialog is not None
        dialog.remote_seq = request.cseq[0]

        def respond(code: int, sdp: bytes | None) -> None:
            self._reinvite_pending = None
            response = make_response(request, code, to_tag=dialog.local_tag)
            if code < 300:
                response.headers.add("Contact", self.ua.local.contact(peer.transport))
                if sdp:
                    response.headers.add("Content-Type", SDP)
                    response.body = sdp
            self.ua.finish_response(response)
            ist.respond(response)

        self._reinvite_pending = respond
        self.emit(ReOffer(request.body or None, respond))

    def on_ack(self) -> None:
        """An ACK matched our dialog: it acknowledges the 2xx of a re-INVITE we answered."""
        if self._reinvite_ist is not None:
            self._reinvite_ist.ack_2xx()
            self._reinvite_ist = None


class InboundLeg(Leg):
    """The caller's leg: we are the UAS (§8.2, §13.3)."""

    role = "inbound"

    def __init__(
        self, ua: UserAgent, request: Request, peer: Peer, ist: InviteServerTransaction
    ) -> None:
        super().__init__(ua, None)
        self.request = request
        self.peer = peer
        self.ist = ist
        self.local_tag = new_tag()
        self.offer = request.body or None
        self.final_code = 0
        from_addr = parse_name_addr(request.headers.get("From") or "")
        to_addr = parse_name_addr(request.headers.get("To") or "")
        self.caller_user = from_addr.uri.user or ""
        self.caller_display = display_text(from_addr.display)
        # Caller identity (issue 11): calls/ decides whom to believe (trusted trunks only).
        self.asserted_identities = asserted_identities(request.headers.get_lines(PAI))
        self.privacy = privacy_tokens(request.headers.get_lines("Privacy"))
        self.called_user = parse_request_user(request.uri) or (to_addr.uri.user or "")
        self._from_tag = from_addr.tag or ""
        # The hop count that stays inside sip/: calls/ passes it, as an opaque int, to the
        # outbound leg it creates for this call (UserAgent.create_outbound(max_forwards=)).
        received = parse_max_forwards(request.headers.get("Max-Forwards"))
        self.onward_max_forwards = onward_max_forwards(received, ua.local.max_forwards)

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def _response(self, code: int, reason: str | None = None, sdp: bytes | None = None) -> Response:
        response = make_response(self.request, code, reason, to_tag=self.local_tag)
        if 100 < code < 300:
            response.headers.add("Contact", self.ua.local.contact(self.peer.transport))
        if sdp:
            response.headers.add("Content-Type", SDP)
            response.body = sdp
        self.ua.finish_response(response)
        return response

    def _ensure_dialog(self) -> Dialog:
        if self.dialog is None:
            request = self.request
            contact = request.headers.get("Contact")
            target = parse_name_addr(contact).uri if contact else None
            to_value = request.headers.get("To") or ""
            self.dialog = Dialog(
                call_id=request.call_id,
                local_tag=self.local_tag,
                remote_tag=self._from_tag,
                local_uri=strip_tag(to_value),
                remote_uri=strip_tag(request.headers.get("From") or ""),
                remote_target=str(target) if target is not None else request.uri,
                peer=self.peer,
                local_seq=0,
                remote_seq=request.cseq[0],
                # §12.1.1: the UAS route set is the Record-Route list in order.
                route_set=request.headers.get_all("Record-Route"),
            )
            self.ua.remember_dialog(self.dialog, self)
        return self.dialog

    def ring(self, code: int = 180, sdp: bytes | None = None) -> None:
        if self.state not in (LegState.INIT, LegState.PROCEEDING):
            return
        self._ensure_dialog()
        self.state = LegState.PROCEEDING
        self.ist.respond(self._response(code, sdp=sdp))

    def answer(self, sdp: bytes | None) -> None:
        if self.state not in (LegState.INIT, LegState.PROCEEDING):
            return
        dialog = self._ensure_dialog()
        dialog.state = DialogState.CONFIRMED
        self.state = LegState.CONFIRMED
        self.final_code = 200
        self.ist.respond(self._response(200, sdp=sdp))

    def reject(self, code: int, reason: str | None = None) -> None:
        if self.state not in (LegState.INIT, LegState.PROCEEDING):
            return
        self.final_code = code
        self.ist.respond(self._response(code, reason))
        self.ua.forget_inbound(self.ist)
        self._finish(f"rejected-{code}")

    def end(self) -> None:
        """Whatever the state: reject if unanswered, BYE if answered."""
        if self.state in (LegState.INIT, LegState.PROCEEDING):
            self.reject(487 if self.end_reason == "cancel" else 480)
        else:
            self.bye()

    def on_cancel(self) -> None:
        """§9.2: CANCEL matched our INVITE before a final response: 487 the INVITE."""
        if self.state not in (LegState.INIT, LegState.PROCEEDING):
            return
        self.end_reason = "cancel"
        self.final_code = 487
        self.ist.respond(self._response(487))
        self.ua.forget_inbound(self.ist)
        self._finish("cancel")
        self.emit(Hangup("cancel"))

    def on_ack(self) -> None:
        self.ist.ack_2xx()
        self.ua.forget_inbound(self.ist)
        super().on_ack()

    def on_ack_timeout(self) -> None:
        """§13.3.1.4: no ACK for our 2xx in 64*T1: end the dialog with BYE."""
        if self.state is LegState.CONFIRMED:
            self.bye()
            self.end_reason = "ack-timeout"
            self.emit(Hangup("ack-timeout"))


class OutboundLeg(Leg):
    """A leg toward an operator: we are the UAC (§8.1, §13.2)."""

    role = "outbound"

    def __init__(
        self,
        ua: UserAgent,
        request: Request,
        peer: Peer,
        sink: LegEventSink,
        credentials: DigestCredentials | None = None,
    ) -> None:
        super().__init__(ua, sink)
        self.request = request
        self.peer = peer
        self.credentials = credentials
        self.ict: InviteClientTransaction | None = None
        self._cancel_wanted = False
        self._cancel_sent = False
        self._auth_tried = False
        self._ack: Request | None = None
        self.final_code = 0
        self.local_tag = request.from_tag or ""

    @property
    def call_id(self) -> str:
        return self.request.call_id

    def start(self) -> None:
        self.ict = self.ua.send_invite(self.request, self.peer, self._on_response, self._on_timeout)

    def cancel(self) -> None:
        """§9.1: CANCEL only after a provisional response; before that, remember to."""
        if self.state is LegState.INIT:
            self._cancel_wanted = True
            self.end_reason = "cancel"
        elif self.state is LegState.PROCEEDING:
            self._send_cancel()
        elif self.state is LegState.CONFIRMED:
            self.bye()

    def end(self) -> None:
        if self.state is LegState.CONFIRMED:
            self.bye()
        else:
            self.cancel()

    def _send_cancel(self) -> None:
        if self._cancel_sent:
            return
        self._cancel_sent = True
        self.end_reason = self.end_reason or "cancel"
        self.state = LegState.TERMINATING
        request = self.request
        headers = Headers()
        headers.add("Via", request.headers.get("Via") or "")  # same branch (§9.1)
        for route in request.headers.get_all("Route"):
            headers.add("Route", route)
        # the INVITE's hop budget (§9.1: the CANCEL follows the INVITE's path)
        headers.add("Max-Forwards", request.headers.get("Max-Forwards") or "70")
        headers.add("From", request.headers.get("From") or "")
        headers.add("To", request.headers.get("To") or "")
        headers.add("Call-ID", request.call_id)
        headers.add("CSeq", f"{request.cseq[0]} CANCEL")
        headers.add("User-Agent", self.ua.local.user_agent)
        cancel = Request("CANCEL", request.uri, headers)
        self.ua.send_request(cancel, self.peer, lambda _r: None, lambda: None)

    def _on_timeout(self) -> None:
        if self.state in (LegState.INIT, LegState.PROCEEDING, LegState.TERMINATING):
            self.final_code = 408
            self._finish("timeout")
            self.emit(Failed(408, "Request Timeout"))

    def _on_response(self, response: Response) -> None:
        code = response.status
        if code < 200:
            self._on_provisional(response)
        elif code < 300:
            self._on_success(response)
        else:
            self._on_failure(response)

    def _on_provisional(self, response: Response) -> None:
        if self.state is LegState.INIT:
            self.state = LegState.PROCEEDING
            if self._cancel_wanted:
                self._send_cancel()
                return
        if self.state is not LegState.PROCEEDING or response.status == 100:
            return
        to_tag = response.to_tag
        if to_tag and self.dialog is None:
            self._make_dialog(response, DialogState.EARLY)
        self.emit(Ringing(response.status, response.body or None))

    def _on_success(self, response: Response) -> None:
        if self._ack is not None:
            # A retransmitted 2xx: the ACK got lost (§13.2.2.4), send it again.
            self.ua.send_raw_request(self._ack, self.peer)
            return
        dialog = self._make_dialog(response, DialogState.CONFIRMED)
        dialog.state = DialogState.CONFIRMED
        self._ack = self.ua.send_ack(dialog, self.request.cseq[0])
        if self.ict is not None:
            self.ict.set_2xx_ack(serialize(self._ack))  # it re-ACKs retransmitted 2xx itself
        self.final_code = response.status
        if self.state in (LegState.INIT, LegState.PROCEEDING):
            self.state = LegState.CONFIRMED
            contact = response.headers.get("Contact") or ""
            self.emit(Answered(response.body or None, contact))
        else:
            # The 200 raced our CANCEL (or the flow gave up): ACK it, then BYE (§9.1 note).
            self.state = LegState.CONFIRMED
            self.bye()

    def _on_failure(self, response: Response) -> None:
        code = response.status
        if code in (401, 407) and self._retry_with_auth(response):
            return
        self.final_code = code
        was_cancelled = self._cancel_sent or self._cancel_wanted
        self._finish("cancel" if was_cancelled else f"failed-{code}")
        self.emit(Failed(code, response.reason))

    def _retry_with_auth(self, response: Response) -> bool:
        """§22.2: resend the INVITE with credentials, once, with CSeq + 1 (§8.1.3.5)."""
        if self.credentials is None or self._auth_tried or self._cancel_wanted or self._cancel_sent:
            return False
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        # RFC 8760 §2.4: of several challenges, answer the strongest algorithm we support.
        challenge = choose_challenge(response.headers.get_all(name))
        if not challenge or self.credentials is None:
            return False
        self._auth_tried = True
        request = self.request
        try:
            authorization = DigestClient().authorization(
                challenge, "INVITE", request.uri, self.credentials
            )
        except DigestError:
            return False  # a challenge we cannot answer: the failure goes to the flow
        headers = request.headers.copy()
        headers.set("Via", self.ua.local.via(self.peer.transport, new_branch()))
        headers.set("CSeq", f"{request.cseq[0] + 1} INVITE")
        headers.set(
            "Authorization" if response.status == 401 else "Proxy-Authorization", authorization
        )
        self.request = Request("INVITE", request.uri, headers, request.body)
        self.state = LegState.INIT
        self.start()
        return True

    def _make_dialog(self, response: Response, state: DialogState) -> Dialog:
        contact = response.headers.get("Contact")
        target = str(parse_name_addr(contact).uri) if contact else self.request.uri
        remote_tag = response.to_tag or ""
        if self.dialog is not None:
            if self.dialog.remote_tag != remote_tag:
                self.ua.forget_dialog(self.dialog)
                self.dialog.remote_tag = remote_tag
                self.ua.remember_dialog(self.dialog, self)
            self.dialog.remote_target = target
            self.dialog.state = state
            return self.dialog
        # §12.1.2: the UAC route set is the Record-Route list in reverse order.
        route_set = list(reversed(response.headers.get_all("Record-Route")))
        self.dialog = Dialog(
            call_id=self.request.call_id,
            local_tag=self.local_tag,
            remote_tag=remote_tag,
            local_uri=strip_tag(self.request.headers.get("From") or ""),
            remote_uri=strip_tag(response.headers.get("To") or ""),
            remote_target=target,
            peer=self.peer,
            local_seq=self.request.cseq[0],
            route_set=route_set,
            state=state,
        )
        self.ua.remember_dialog(self.dialog, self)
        return self.dialog


PAI = "P-Asserted-Identity"


def display_text(display: str | None) -> str:
    """A display name as text: quotes and quoted-pairs removed (RFC 3261 §25.1), any script."""
    if not display:
        return ""
    display = display.strip()
    if len(display) >= 2 and display[0] == display[-1] == '"':
        return unquote(display)
    return display


def asserted_identities(lines: list[str]) -> list[tuple[str, str]]:
    """P-Asserted-Identity values as (user part or tel number, display name), in order.

    RFC 3325 §9.1: one or two values (a sip: and/or a tel: URI), in one header line as a
    comma list or in several lines. A value that does not parse is skipped, never fatal.
    """
    out: list[tuple[str, str]] = []
    for line in lines:
        for value in split_list(line):
            try:
                addr = parse_name_addr(value)
            except SipParseError:
                continue
            if addr.uri.user:
                out.append((addr.uri.user, display_text(addr.display)))
    return out


def privacy_tokens(lines: list[str]) -> list[str]:
    """The Privacy header's priv-values (RFC 3323 §4.2: ``;``-separated, e.g. ``id;critical``)."""
    return [t.strip().lower() for line in lines for t in line.split(";") if t.strip()]


def strip_tag(value: str) -> str:
    """A From/To value without its tag parameter (the dialog stores tags separately)."""
    head, bracket, params = value.rpartition(">")
    if not bracket:  # addr-spec form: let the parser tell URI and header parameters apart
        addr = parse_name_addr(value)
        addr.params.pop("tag", None)
        return str(addr)
    kept = [p for p in params.split(";") if p.strip() and p.strip()[:4].lower() != "tag="]
    return head + bracket + "".join(";" + p.strip() for p in kept)


def parse_request_user(uri: str) -> str | None:
    try:
        return parse_uri(uri).user
    except ValueError:
        return None
