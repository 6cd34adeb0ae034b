"""The last admission step before a call exists: is the dialled number one we serve?

An INVITE to a number that is no tracking number is refused here, before a call, a call-log
row or even a 100 Trying exists (issue 8, F7): 404 within the source's unknown-number budget,
silence beyond it (see :class:`~mediasrv.sip.ratelimit.UnknownNumberBudget`). Every refusal,
this one and the ones of the inner policy (ACL, digest), is counted through ``note`` (the
aggregated ``rejected_requests`` table and a metric, wired by ``app.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from mediasrv.sip.dialog import Peer
from mediasrv.sip.legs import parse_request_user
from mediasrv.sip.message import Request
from mediasrv.sip.ratelimit import UnknownNumberBudget
from mediasrv.sip.ua import Admission, AdmissionPolicy, Verdict

from .routing import Router

Note = Callable[[str, str, str], None]  # (source, reason, number)

MAX_NUMBER_CHARS = 32  # what is kept of a dialled "number" in the aggregate


def refusal_reason(verdict: Admission) -> str:
    """A short, stable reason for an inner refusal (the phrase may carry details)."""
    if verdict.verdict is Verdict.DROP:
        return verdict.reason or "dropped"
    return {401: "auth-challenge", 403: "forbidden", 503: "unavailable"}.get(
        verdict.code, f"rejected-{verdict.code}"
    )


class KnownNumberAdmission:
    """``inner`` (trunk ACL, digest) first, then the number; unknown numbers never become calls."""

    def __init__(
        self,
        inner: AdmissionPolicy,
        router: Router,
        note: Note,
        budget: UnknownNumberBudget | None = None,
    ) -> None:
        self.inner = inner
        self.router = router
        self.note = note
        self.budget = budget

    def __call__(self, request: Request, peer: Peer) -> Admission:
        verdict = self.inner(request, peer)
        if verdict.verdict is not Verdict.ACCEPT:
            if verdict.code != 401:  # a challenge is the normal first step of digest
                self.note(peer.host, refusal_reason(verdict), "")
            return verdict
        dialled = parse_request_user(request.uri) or ""
        if self.router.route(dialled, "") is not None:
            return verdict
        number = dialled[:MAX_NUMBER_CHARS]
        if self.budget is None or self.budget.allow(peer.host):
            self.note(peer.host, "unknown-number", number)
            return Admission.reject(404, "Not Found")
        self.note(peer.host, "unknown-number-silenced", number)
        return Admission.drop("unknown-number-silenced")
