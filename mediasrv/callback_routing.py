"""Routing of calls to callback numbers (issue 12 §5): a leased callback number forwards to
the caller it is leased to, dialled through the business's ``[callback] trunk``, and the
call is logged as a callback of the call the email was about, under that call's medium and
campaign. A callback number with no active lease refuses the call clearly (410 Gone, or the
number's own refusal code), logged as ``callback-expired``. Every other number is routed by
the router this one wraps.

``route`` is asked more than once per INVITE (admission, then the call), so it neither counts
nor logs what it decides: the call's row does (flags ``callback`` / ``callback-expired``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mediasrv.calls.business import ActionKind, BusinessLookup, NumberVersion
from mediasrv.calls.callback import Lease
from mediasrv.calls.routing import Destination, Route, Router
from mediasrv.config import TrunkConfig, outbound_target
from mediasrv.sip.digest import DigestCredentials

__all__ = ["CALLBACK_FLAG", "EXPIRED_FLAG", "CallbackRouter"]

log = logging.getLogger(__name__)

CALLBACK_FLAG = "callback"
EXPIRED_FLAG = "callback-expired"
EXPIRED_CODE = 410  # RFC 3261 §21.4.11 Gone


class CallbackRouter:
    def __init__(
        self,
        inner: Router,
        lookup: BusinessLookup,
        active_lease: Callable[[str], Lease | None],
        trunk_named: Callable[[str], TrunkConfig | None],
        ring_timeout: float = 30.0,
    ) -> None:
        self._inner = inner
        self._lookup = lookup
        self._active = active_lease
        self._trunk_named = trunk_named
        self._ring_timeout = ring_timeout

    def route(self, dialled: str, caller: str) -> Route | None:
        nv = self._callback_number(dialled)
        if nv is None:
            return self._inner.route(dialled, caller)
        lease = self._active(nv.number.number)
        if lease is None or lease.call.business != nv.business.slug:
            return self._refuse(nv, "callback-expired: no active lease on this number")
        destination = self._destination(nv, lease)
        if destination is None:
            return self._refuse(nv, f"callback-unroutable: trunk {nv.business.callback.trunk!r} "
                                "has no outbound_uri", log_level=logging.ERROR)  # fmt: skip
        call = lease.call
        return Route(
            tracking_number=nv.number.number,
            business=nv.business.slug,
            medium=call.medium,  # reports count a callback under the original call's medium
            campaign=call.campaign,
            destinations=(destination,),
            record=nv.number.record,
            flags=(CALLBACK_FLAG,),
            callback_of=call.call_id,
        )

    def _callback_number(self, dialled: str) -> NumberVersion | None:
        try:
            nv = self._lookup.version_for(dialled)
        except Exception:  # the store is down: not a callback we can tell; route as before
            log.warning("business store unavailable for callback routing",
                        extra={"number": dialled})  # fmt: skip
            return None
        return nv if nv is not None and nv.number.callback else None

    def _destination(self, nv: NumberVersion, lease: Lease) -> Destination | None:
        trunk = self._trunk_named(nv.business.callback.trunk)
        if trunk is None or not trunk.outbound_uri:
            return None
        credentials = None
        if trunk.username:
            credentials = DigestCredentials(trunk.username, trunk.password, trunk.realm or None)
        uri = outbound_target(trunk.outbound_uri, lease.call.caller)
        return Destination(uri, self._ring_timeout, credentials)

    def _refuse(self, nv: NumberVersion, why: str, log_level: int = logging.DEBUG) -> Route:
        start = nv.number.flow.start
        code = start.sip_code if start.kind is ActionKind.REJECT else EXPIRED_CODE
        log.log(log_level, "call to callback number refused (%s): %s", code, why,
                extra={"number": nv.number.number, "business": nv.business.slug})  # fmt: skip
        return Route(
            tracking_number=nv.number.number,
            business=nv.business.slug,
            medium=nv.number.medium,
            campaign=nv.number.campaign,
            record=nv.number.record,
            flags=(EXPIRED_FLAG,),
            reject_code=code,
            reject_reason=why.split(":", 1)[0],
        )
