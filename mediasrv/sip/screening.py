"""Who gets an answer to an out-of-dialog request (issue 8, F7/F8), sans-IO.

Sources in no trunk are refused before any call logic: ``reject`` answers 403 (statelessly,
see :func:`stateless_tag`), ``drop`` answers nothing at all, which also ends UDP reflection
(a spoofed INVITE then brings nothing back to its victim). OPTIONS is answered for trunk
sources only unless the policy says ``any`` (RFC 3261 §11 lets a server refuse OPTIONS like
any request). Requests inside a dialog or transaction we know (an operator's BYE, a CANCEL)
never come here: the user agent matches those first.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable

from .dialog import Peer
from .message import Request


class UntrustedPolicy(enum.Enum):
    REJECT = "reject"  # 403 Forbidden, sent once (no retransmissions, no 100 Trying)
    DROP = "drop"  # silence


class OptionsPolicy(enum.Enum):
    TRUNKS = "trunks"  # 200 only for trunk sources (all sources when no trunk is configured)
    ANY = "any"  # 200 for every source that may send us anything at all


class Screen(enum.Enum):
    PASS = "pass"
    REJECT = "reject"
    DROP = "drop"


class SourcePolicy:
    """``screen(request, peer)`` for every out-of-dialog request before it is dispatched."""

    def __init__(
        self,
        is_trusted: Callable[[str], bool],
        untrusted: UntrustedPolicy = UntrustedPolicy.REJECT,
        options: OptionsPolicy = OptionsPolicy.TRUNKS,
    ) -> None:
        self.is_trusted = is_trusted
        self.untrusted = untrusted
        self.options = options

    def screen(self, request: Request, peer: Peer) -> Screen:
        if self.is_trusted(peer.host):
            return Screen.PASS
        if request.method == "OPTIONS" and self.options is OptionsPolicy.ANY:
            return Screen.PASS
        return Screen.DROP if self.untrusted is UntrustedPolicy.DROP else Screen.REJECT


def stateless_tag(request: Request) -> str:
    """RFC 3261 §8.2.7: a stateless UAS gives a retransmitted request the same To tag, so
    derive it from the fields that identify the request (Call-ID, From tag, top Via branch)."""
    via = request.top_via
    seed = f"{request.call_id}|{request.from_tag or ''}|{via.branch or ''}|{via.sent_by}"
    return hashlib.blake2s(seed.encode(), digest_size=6).hexdigest()
