"""Where a call to a tracking number goes (routing v1: an ordered destination list).

The full rule set (business hours, IVR, queue, voicemail, blocklists) extends :class:`Route`
and :class:`Router` in later issues; call flows only see these types, never the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from mediasrv.media.api import RecordMode
from mediasrv.sip.digest import DigestCredentials


@dataclass(frozen=True, slots=True)
class Destination:
    uri: str  # e.g. sip:op1@127.0.0.1:5090;transport=tcp
    ring_timeout: float = 30.0
    credentials: DigestCredentials | None = None  # outbound trunk credentials (401/407)


@dataclass(frozen=True, slots=True)
class Route:
    tracking_number: str
    business: str = ""
    medium: str = ""
    campaign: str = ""
    destinations: tuple[Destination, ...] = ()
    record: RecordMode = RecordMode.BOTH
    flags: tuple[str, ...] = field(default=())
    # issue 12 §5: a call to a leased callback number: the call it calls back
    callback_of: str = ""
    # refuse the call at once with this final response (0: route it), logged as end_reason
    reject_code: int = 0
    reject_reason: str = ""


class Router(Protocol):
    def route(self, dialled: str, caller: str) -> Route | None:
        """The route for a call to ``dialled`` from ``caller``; None: not a tracking number."""
        ...
