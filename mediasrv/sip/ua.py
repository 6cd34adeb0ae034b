"""The user agent core of the B2BUA: routes every SIP message to a transaction, a dialog or a
new call, and keeps the tables (transactions, dialogs) whose sizes the leak checks watch.

Sans-IO except for the injected ``Timers`` (an event loop) and the ``SendTo`` callable the
transport provides. RFC 3261 §8.2 (UAS behaviour), §17.1.3 / §17.2.3 (transaction matching),
§12.2 (requests within a dialog), §9.2 (CANCEL).
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .dialog import Dialog, LocalContact, Peer
from .digest import DigestCredentials
from .events import LegEventSink
from .legs import InboundLeg, Leg, OutboundLeg
from .message import (
    Headers,
    Request,
    Response,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_max_forwards,
    serialize,
)
from .parser import SipParseError, parse_message
from .registrar import RegisterReply
from .screening import Screen, stateless_tag
from .transaction import (
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    TimerConfig,
    Timers,
    Transaction,
)

log = logging.getLogger("mediasrv.sip")

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
# Methods we recognise but do not serve: 405 with Allow (§8.2.1); anything else is 501.
KNOWN_UNSUPPORTED = frozenset(
    ("REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH", "UPDATE", "PRACK")
)

SendTo = Callable[[bytes, Peer], None]
ClientT = TypeVar("ClientT", InviteClientTransaction, NonInviteClientTransaction)


class RegisterHandler(Protocol):
    """The registrar as the user agent sees it (sip/registrar.py; app.py passes it in)."""

    def handle(self, request: Request, peer: Peer) -> RegisterReply | None: ...


class SipObserver(Protocol):
    """Counting hooks (metrics live above sip/; app.py passes an implementation in)."""

    def message_in(self, msg: Request | Response) -> None: ...

    def message_out(self, msg: Request | Response) -> None: ...

    def malformed(self, transport: str) -> None: ...

    def transaction_timeout(self, kind: str) -> None: ...


class NullObserver:
    def message_in(self, msg: Request | Response) -> None:
        return None

    def message_out(self, msg: Request | Response) -> None:
        return None

    def malformed(self, transport: str) -> None:
        return None

    def transaction_timeout(self, kind: str) -> None:
        return None


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"  # answered once, statelessly (RFC 3261 §8.2.7)
    DROP = "drop"  # not answered at all (no 100 Trying either)


@dataclass(frozen=True, slots=True)
class Admission:
    """What the admission policy says about a new INVITE (ACL, digest, drain)."""

    verdict: Verdict
    code: int = 0
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    trunk: str = ""

    @classmethod
    def accept(cls, trunk: str = "") -> Admission:
        return cls(Verdict.ACCEPT, trunk=trunk)

    @classmethod
    def reject(
        cls, code: int, reason: str | None = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> Admission:
        return cls(Verdict.REJECT, code, reason, headers)

    @classmethod
    def drop(cls, reason: str = "") -> Admission:
        return cls(Verdict.DROP, reason=reason)


AdmissionPolicy = Callable[[Request, Peer], Admission]
ScreenPolicy = Callable[[Request, Peer], Screen]
IncomingCall = Callable[[InboundLeg, str], None]


def _admit_all(_request: Request, _peer: Peer) -> Admission:
    return Admission.accept()


def _pass_all(_request: Request, _peer: Peer) -> Screen:
    return Screen.PASS


class UserAgent:
    """One per process: every SIP message in and out goes through here."""

    def __init__(
        self,
        timers: Timers,
        send_to: SendTo,
        local: LocalContact,
        on_incoming: IncomingCall,
        admission: AdmissionPolicy = _admit_all,
        cfg: TimerConfig | None = None,
        observer: SipObserver | None = None,
        screen: ScreenPolicy = _pass_all,
        registrar: RegisterHandler | None = None,
    ) -> None:
        self.timers = timers
        # Operators' phones REGISTER here when a registrar is configured; else 405 (§8.2.1).
        self.registrar = registrar
        self.allow = ALLOW + ", REGISTER" if registrar is not None else ALLOW
        self._send_to = send_to
        self.local = local
        self.on_incoming = on_incoming
        self.admission = admission
        self.cfg = cfg or TimerConfig()
        self.observer: SipObserver = observer or NullObserver()
        self.server_transactions: dict[tuple[str, ...], ServerTransaction] = {}
        self.client_transactions: dict[tuple[str, ...], ClientTransaction] = {}
        self.dialogs: dict[tuple[str, str, str], Leg] = {}
        # INVITE server transaction (by id) -> its inbound leg, for CANCEL and ACK timeouts.
        self._inbound_by_ist: dict[int, InboundLeg] = {}
        self.draining = False
        # Out-of-dialog requests from sources in no trunk: 403 once, or silence (issue 8).
        self.screen = screen
        # Addresses we have a client transaction or a dialog with, counted: their messages
        # pass the pre-parse source gate even when they are in no trunk (operators' phones).
        self._peer_hosts: dict[str, int] = {}
        self._client_hosts: dict[tuple[str, ...], str] = {}

    # -- counts for leak checks and metrics ------------------------------------------------------
    def transaction_count(self) -> int:
        return len(self.server_transactions) + len(self.client_transactions)

    def dialog_count(self) -> int:
        return len(self.dialogs)

    def peers_in_use(self) -> list[Peer]:
        """Peers of live dialogs (early or confirmed) and of INVITEs not yet answered.

        Their TCP connections are not idle however long they are silent: an in-dialog
        request (BYE) or the final response must go back over them (RFC 3261 §18.2.2).
        """
        peers = [leg.dialog.peer for leg in self.dialogs.values() if leg.dialog is not None]
        peers.extend(leg.peer for leg in self._inbound_by_ist.values())
        return peers
    def is_peer(self, host: str) -> bool:
        """True while we have a client transaction or a dialog with ``host``."""
        return host in self._peer_hosts

    def _hold_peer(self, host: str) -> None:
        self._peer_hosts[host] = self._peer_hosts.get(host, 0) + 1

    def _release_peer(self, host: str) -> None:
        left = self._peer_hosts.get(host, 0) - 1
        if left > 0:
            self._peer_hosts[host] = left
        else:
            self._peer_hosts.pop(host, None)

    # -- input -----------------------------------------------------------------------------------
    def receive(self, data: bytes, peer: Peer) -> None:
        """Entry point for the transport: one whole message from ``peer``."""
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self._on_malformed(exc, peer)
            return
        self.observer.message_in(msg)
        try:
            if isinstance(msg, Request):
                self._on_request(msg, peer)
            else:
                self._on_response(msg)
        except (ValueError, LookupError) as exc:
            # A message that parsed but is semantically unusable (bad CSeq, bad URI...).
            log.warning("dropping unusable SIP message", extra={"error": str(exc)})
            self.observer.malformed(peer.transport)
            if isinstance(msg, Request) and msg.method != "ACK":
                self._reply_raw(msg, peer, 400, str(exc)[:80] or None)
        except Exception:
            # A bug of ours must cost one message, never the server: log it with the stack
            # and answer 500 where a response can be formed (§21.5.1).
            log.exception("internal error handling SIP message", extra={"peer": peer.host})
            if isinstance(msg, Request) and msg.method != "ACK":
                self._fail_request(msg, peer)

    def _on_malformed(self, exc: SipParseError, peer: Peer) -> None:
        self.observer.malformed(peer.transport)
        partial = exc.partial
        log.info("malformed SIP message", extra={"error": exc.reason, "peer": peer.host})
        if partial is not None and partial.method != "ACK":
            # §21.4.1: 400 Bad Request, with the reason in the phrase (505 for a version).
            if exc.status == 400:
                self._reply_raw(partial, peer, 400, f"Bad Request ({exc.reason[:60]})")
            else:
                self._reply_raw(partial, peer, exc.status, None)

    def _fail_request(self, request: Request, peer: Peer) -> None:
        """500 through the request's transaction if one was created, so none is left behind."""
        try:
            txn = self.server_transactions.get(self._server_key(request, request.method))
        except (ValueError, LookupError):
            txn = None
        if txn is not None and not txn.final_sent:
            response = make_response(request, 500, "Server Internal Error", to_tag=new_tag())
            txn_respond(txn, self.finish_response(response))
        elif txn is None:
            self._reply_raw(request, peer, 500, "Server Internal Error")

    def _reply_stateless(
        self,
        request: Request,
        peer: Peer,
        code: int,
        reason: str | None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """§8.2.7: one response, no transaction; a retransmitted request gets it again."""
        try:
            response = make_response(request, code, reason, to_tag=stateless_tag(request))
        except (ValueError, LookupError):
            return
        for name, value in headers:
            response.headers.add(name, value)
        self._send(self.finish_response(response), peer)

    def _reply_raw(self, request: Request, peer: Peer, code: int, reason: str | None) -> None:
        try:
            response = make_response(request, code, reason, to_tag=new_tag())
            self.finish_response(response)
            self._send(response, peer)
        except (ValueError, LookupError):
            return  # not even enough to answer: dropped (and counted by the caller)

    # -- requests --------------------------------------------------------------------------------
    def _server_key(self, request: Request, method: str) -> tuple[str, ...]:
        via = request.top_via
        branch = via.branch or ""
        if branch.startswith("z9hG4bK"):
            return (branch, via.sent_by, method)
        # §17.2.3: pre-RFC 3261 peers: match on the request's identifying fields instead.
        return (
            request.call_id,
            str(request.cseq[0]),
            request.from_tag or "",
            via.sent_by,
            method,
        )

    def _on_request(self, request: Request, peer: Peer) -> None:
        method = request.method
        if method == "ACK":
            self._on_ack(request)
            return
        key = self._server_key(request, method)
        existing = self.server_transactions.get(key)
        if existing is not None:
            existing.retransmission()  # §17.2.1 / §17.2.2: resend the last response
            return
        if method == "CANCEL":
            self._on_cancel(request, peer, key)
            return
        refusal = None if method == "INVITE" else _uas_refusal(request)
        if refusal is not None:
            code, extra = refusal
            self.reply(request, peer, code, extra=extra)
            return
        to_tag = request.to_tag
        if to_tag:
            self._on_in_dialog(request, peer, to_tag)
            return
        if method == "REGISTER" and self.registrar is not None:
            # Phones are in no trunk: digest authentication and the auth guard screen them.
            self._on_register(request, peer)
            return
        if not self._screened_in(request, peer):
            return
        if method == "INVITE":
            self._on_initial_invite(request, peer, key)
        elif method == "OPTIONS":
            self._reply_options(request, peer)
        elif method == "BYE" or method == "INFO":
            self.reply(request, peer, 481)
        elif method in KNOWN_UNSUPPORTED:
            self.reply(request, peer, 405, extra=(("Allow", self.allow),))
        else:
            self.reply(request, peer, 501)

    def _on_register(self, request: Request, peer: Peer) -> None:
        """RFC 3261 §10.3, through a non-INVITE server transaction (retransmissions absorbed)."""
        assert self.registrar is not None
        answer = self.registrar.handle(request, peer)
        if answer is not None:
            self.reply(request, peer, answer.code, answer.reason, answer.headers)

    def _screened_in(self, request: Request, peer: Peer) -> bool:
        """Out-of-dialog requests from sources the policy refuses: 403 once, or nothing."""
        verdict = self.screen(request, peer)
        if verdict is Screen.PASS:
            return True
        if verdict is Screen.REJECT:
            self._reply_stateless(request, peer, 403, "Forbidden")
        return False

    def _on_in_dialog(self, request: Request, peer: Peer, to_tag: str) -> None:
        leg = self.dialogs.get((request.call_id, to_tag, request.from_tag or ""))
        if leg is None:
            if self._screened_in(request, peer):
                self.reply(request, peer, 481)  # §12.2.2
            return
        dialog = leg.dialog
        if dialog is not None and request.method != "INVITE":
            cseq = request.cseq[0]
            if dialog.remote_seq and cseq < dialog.remote_seq:
                self.reply(request, peer, 500, "Out of order CSeq")  # §12.2.2
                return
            dialog.remote_seq = cseq
        leg.on_request(request, peer)

    def _on_ack(self, request: Request) -> None:
        leg = self.dialogs.get((request.call_id, request.to_tag or "", request.from_tag or ""))
        if leg is not None:
            leg.on_ack()  # the ACK for a 2xx we sent (a new transaction, §13.2.2.4)
        # The ACK for a non-2xx final response shares the INVITE's branch (§17.1.1.3).
        ist = self.server_transactions.get(self._server_key(request, "INVITE"))
        if isinstance(ist, InviteServerTransaction):
            ist.ack()

    def _on_cancel(self, request: Request, peer: Peer, key: tuple[str, ...]) -> None:
        """§9.2: answer the CANCEL itself, then 487 the INVITE if it is still pending."""
        invite_key = (*key[:-1], "INVITE")
        ist = self.server_transactions.get(invite_key)
        if not isinstance(ist, InviteServerTransaction) and not self._screened_in(request, peer):
            return
        nist = self._new_server_transaction(NonInviteServerTransaction, request, peer, key)
        if not isinstance(ist, InviteServerTransaction):
            nist.respond(self.finish_response(make_response(request, 481, to_tag=new_tag())))
            return
        leg = self._leg_for_ist(ist)
        to_tag = leg.local_tag if leg is not None else new_tag()
        nist.respond(self.finish_response(make_response(request, 200, to_tag=to_tag)))
        if leg is not None:
            leg.on_cancel()
        elif not ist.final_sent and ist.request is not None:
            ist.respond(self.finish_response(make_response(ist.request, 487, to_tag=to_tag)))

    def forget_inbound(self, ist: InviteServerTransaction) -> None:
        """The INVITE is settled (non-2xx sent, or our 2xx ACKed): no CANCEL or ACK timeout
        can concern its leg any more, so stop holding the leg for the transaction's life."""
        self._inbound_by_ist.pop(id(ist), None)

    def _leg_for_ist(self, ist: InviteServerTransaction) -> InboundLeg | None:
        return self._inbound_by_ist.get(id(ist))

    def _on_initial_invite(self, request: Request, peer: Peer, key: tuple[str, ...]) -> None:
        # Admission (ACL, digest, known number) comes first and needs no state: a refusal is
        # answered once and statelessly (§8.2.7: no 100, no retransmission per Timer G), so
        # a spoofed INVITE brings back one response at most, never a dozen (issue 8, F8).
        verdict = self.admission(request, peer)
        if verdict.verdict is Verdict.DROP:
            return
        if verdict.verdict is Verdict.REJECT:
            self._reply_stateless(request, peer, verdict.code, verdict.reason, verdict.headers)
            return
        ist = self._new_server_transaction(InviteServerTransaction, request, peer, key)
        assert isinstance(ist, InviteServerTransaction)
        # §17.2.1: 100 Trying at once, so the caller stops retransmitting.
        ist.respond(self.finish_response(make_response(request, 100)))
        if self.draining:
            ist.respond(self.finish_response(make_response(request, 503, to_tag=new_tag())))
            return
        refusal = self._hop_refusal(request)
        if refusal is not None:  # RFC 3261 §16.3 step 3 (483 Too Many Hops)
            ist.respond(self.finish_response(make_response(request, *refusal, to_tag=new_tag())))
            return
        if request.headers.get("Require"):
            response = make_response(request, 420, to_tag=new_tag())
            response.headers.add("Unsupported", request.headers.get("Require") or "")
            ist.respond(self.finish_response(response))
            return
        unserved = _uas_refusal(request)  # after admission: a stranger learns nothing more
        if unserved is not None:
            response = make_response(request, unserved[0], to_tag=new_tag())
            for name, value in unserved[1]:
                response.headers.add(name, value)
            ist.respond(self.finish_response(response))
            return
        leg = InboundLeg(self, request, peer, ist)
        self._inbound_by_ist[id(ist)] = leg
        self.on_incoming(leg, verdict.trunk)

    @staticmethod
    def _hop_refusal(request: Request) -> tuple[int, str | None] | None:
        """An INVITE we would forward with no hop left gets 483 (RFC 3261 §16.3 step 3, for a
        B2BUA by RFC 7332 §3), so a routing loop through us ends; a malformed value is 400."""
        try:
            hops = parse_max_forwards(request.headers.get("Max-Forwards"))
        except SipParseError as exc:
            return 400, f"Bad Request ({exc.reason})"
        return (483, None) if hops == 0 else None

    def _reply_options(self, request: Request, peer: Peer) -> None:
        """OPTIONS keepalives from trunks get 200 with what we support (§11.2)."""
        extra = (("Allow", self.allow), ("Accept", "application/sdp"), ("Supported", ""))
        self.reply(request, peer, 200, extra=extra[:2])

    def reply(
        self,
        request: Request,
        peer: Peer,
        code: int,
        reason: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer a request through a non-INVITE server transaction (absorbs retransmissions)."""
        key = self._server_key(request, request.method)
        cls = InviteServerTransaction if request.method == "INVITE" else NonInviteServerTransaction
        txn = self._new_server_transaction(cls, request, peer, key)
        response = make_response(request, code, reason, to_tag=request.to_tag or new_tag())
        for name, value in extra:
            response.headers.add(name, value)
        txn_respond(txn, self.finish_response(response))

    def respond_stateless_ok(self, request: Request, peer: Peer) -> None:
        self.reply(request, peer, 200)

    def create_server_invite(self, request: Request, peer: Peer) -> InviteServerTransaction:
        key = self._server_key(request, "INVITE")
        ist = self._new_server_transaction(InviteServerTransaction, request, peer, key)
        assert isinstance(ist, InviteServerTransaction)
        return ist

    def _new_server_transaction(
        self,
        cls: type[InviteServerTransaction] | type[NonInviteServerTransaction],
        request: Request,
        peer: Peer,
        key: tuple[str, ...],
    ) -> ServerTransaction:
        send = self._sender(peer)
        txn: ServerTransaction
        if cls is InviteServerTransaction:
            ist = InviteServerTransaction(
                key,
                request,
                send,
                self.timers,
                self.cfg,
                peer.reliable,
                self._server_terminated,
                _nothing,
            )
            ist.on_ack_timeout = functools.partial(self._ack_timeout, ist)  # cleared at the end
            txn = ist
        else:
            txn = NonInviteServerTransaction(
                key, request, send, self.timers, self.cfg, peer.reliable, self._server_terminated
            )
        self.server_transactions[key] = txn
        return txn

    def _ack_timeout(self, ist: InviteServerTransaction) -> None:
        self.observer.transaction_timeout("invite_server_ack")
        leg = self._inbound_by_ist.get(id(ist))
        if leg is not None:
            leg.on_ack_timeout()

    def _server_terminated(self, txn: Transaction) -> None:
        if self.server_transactions.get(txn.key) is txn:
            del self.server_transactions[txn.key]
        self._inbound_by_ist.pop(id(txn), None)

    # -- responses -------------------------------------------------------------------------------
    def _on_response(self, response: Response) -> None:
        branch = response.branch or ""
        cseq = response.cseq
        txn = self.client_transactions.get((branch, cseq[1]))
        if txn is None:
            return  # stray response (§17.1.3): dropped
        txn.receive(response)

    # -- output ----------------------------------------------------------------------------------
    def finish_response(self, response: Response) -> Response:
        """Headers every response of ours carries."""
        if self.local.user_agent and "Server" not in response.headers:
            response.headers.add("Server", self.local.user_agent)
        self.observer.message_out(response)
        return response

    def _sender(self, peer: Peer) -> Callable[[bytes], None]:
        send_to = self._send_to

        def send(data: bytes) -> None:
            send_to(data, peer)

        return send

    def _send(self, msg: Request | Response, peer: Peer) -> None:
        if isinstance(msg, Request):
            self.observer.message_out(msg)  # responses were counted by finish_response
        self._send_to(serialize(msg), peer)

    def send_raw_request(self, request: Request, peer: Peer) -> None:
        self._send(request, peer)

    def send_request(
        self,
        request: Request,
        peer: Peer,
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None],
    ) -> NonInviteClientTransaction:
        """Send a non-INVITE request through its client transaction (§17.1.2)."""
        return self._start_client(
            NonInviteClientTransaction, request, peer, on_response, on_timeout
        )

    def send_invite(
        self,
        request: Request,
        peer: Peer,
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None],
    ) -> InviteClientTransaction:
        """Send an INVITE through its client transaction (§17.1.1)."""
        return self._start_client(InviteClientTransaction, request, peer, on_response, on_timeout)

    def _start_client(
        self,
        cls: type[ClientT],
        request: Request,
        peer: Peer,
        on_response: Callable[[Response], None],
        on_timeout: Callable[[], None],
    ) -> ClientT:
        observer = self.observer

        def timeout() -> None:
            observer.transaction_timeout(cls.kind)
            on_timeout()

        txn = cls(
            request,
            self._counting_sender(peer, request),
            self.timers,
            self.cfg,
            peer.reliable,
            self._client_terminated,
            on_response,
            timeout,
        )
        self.client_transactions[txn.key] = txn
        self._client_hosts[txn.key] = peer.host
        self._hold_peer(peer.host)
        txn.start()
        return txn

    def _counting_sender(self, peer: Peer, request: Request) -> Callable[[bytes], None]:
        send_to = self._send_to
        observer = self.observer
        first = [True]

        def send(data: bytes) -> None:
            if first[0]:
                first[0] = False
                observer.message_out(request)
            send_to(data, peer)

        return send

    def _client_terminated(self, txn: Transaction) -> None:
        if self.client_transactions.get(txn.key) is txn:
            del self.client_transactions[txn.key]
            host = self._client_hosts.pop(txn.key, None)
            if host is not None:
                self._release_peer(host)

    def send_ack(self, dialog: Dialog, cseq: int) -> Request:
        """§13.2.2.4: the ACK for a 2xx is a new request within the dialog (new branch)."""
        ack = dialog.request("ACK", self.local, cseq=cseq)
        self._send(ack, dialog.peer)
        return ack

    # -- dialogs ---------------------------------------------------------------------------------
    def remember_dialog(self, dialog: Dialog, leg: Leg) -> None:
        if dialog.key not in self.dialogs:
            self._hold_peer(dialog.peer.host)
        self.dialogs[dialog.key] = leg

    def forget_dialog(self, dialog: Dialog) -> None:
        if self.dialogs.pop(dialog.key, None) is not None:
            self._release_peer(dialog.peer.host)

    # -- outbound calls --------------------------------------------------------------------------
    def create_outbound(
        self,
        target: str,
        peer: Peer,
        from_user: str,
        from_display: str,
        sdp: bytes,
        sink: LegEventSink,
        credentials: DigestCredentials | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        max_forwards: int | None = None,
    ) -> OutboundLeg:
        """Build the initial INVITE of an outbound leg (§8.1.1) and start it.

        ``max_forwards``: the inbound leg's ``onward_max_forwards`` when this INVITE is sent
        on behalf of a received one (RFC 7332 §3); ``[sip] max_forwards`` when we originate.
        """
        hops = self.local.max_forwards if max_forwards is None else max_forwards
        headers = Headers()
        headers.add("Via", self.local.via(peer.transport, new_branch()))
        headers.add("Max-Forwards", str(hops))
        quoted = from_display.replace("\\", "\\\\").replace('"', '\\"')  # §25.1 quoted-pair
        display = f'"{quoted}" ' if from_display else ""
        user = from_user or "anonymous"
        headers.add("From", f"{display}<sip:{user}@{self.local.hostport()}>;tag={new_tag()}")
        headers.add("To", f"<{target}>")
        headers.add("Call-ID", new_call_id(self.local.host))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self.local.contact(peer.transport))
        headers.add("Allow", self.allow)
        if self.local.user_agent:  # empty: no product name on the wire
            headers.add("User-Agent", self.local.user_agent)
        for name, value in extra:
            headers.add(name, value)
        if sdp:
            headers.add("Content-Type", "application/sdp")
        request = Request("INVITE", target, headers, sdp)
        leg = OutboundLeg(self, request, peer, sink, credentials)
        leg.start()
        return leg


_SCHEMES = frozenset(("sip", "sips", "tel"))


def _uas_refusal(request: Request) -> tuple[int, tuple[tuple[str, str], ...]] | None:
    """§8.2.2.1: a Request-URI scheme we do not serve is 416; §8.2.2.3: an option in Require
    is 420 with Unsupported (an initial INVITE is checked after admission, its Require in
    _on_initial_invite);
    §8.2.3: an INVITE body that is not SDP is 415 with Accept, and an INVITE whose Accept
    leaves out SDP is 406 (RFC 4475 §3.3.6, §3.3.15)."""
    scheme = request.uri.partition(":")[0].lower()
    if scheme not in _SCHEMES:
        return 416, ()
    require = request.headers.get("Require")
    if require and request.method != "INVITE":
        return 420, (("Unsupported", require),)
    if request.method == "INVITE" and request.body:
        ctype = (request.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        if ctype != "application/sdp":
            return 415, (("Accept", "application/sdp"),)
    accept = request.headers.get_all("Accept")
    if request.method == "INVITE" and accept and not _accepts_sdp(accept):
        return 406, ()  # §21.4.7: our answer would be SDP, which the caller does not accept
    return None


def _accepts_sdp(accept: list[str]) -> bool:
    types = {a.partition(";")[0].strip().lower() for a in accept}
    return bool(types & {"application/sdp", "application/*", "*/*", ""})


def _nothing() -> None:
    return None


def txn_respond(txn: ServerTransaction, response: Response) -> None:
    if isinstance(txn, (InviteServerTransaction, NonInviteServerTransaction)):
        txn.respond(response)
