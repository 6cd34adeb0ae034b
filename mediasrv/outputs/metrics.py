"""Prometheus metrics (F28) on a registry of our own, never the process-global one.

A registry per :class:`Metrics` keeps tests independent (two servers in one process do not
collide) and keeps library metrics we did not choose out of ``/metrics``. Counters that have
labels are pre-created with their expected label values so that a rate over them exists (as 0)
before the first event.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

log = logging.getLogger(__name__)

# The classic text exposition format (version 0.0.4), which every Prometheus understands.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_DISPOSITIONS = (
    "answered",
    "busy",
    "no-answer",
    "after-hours",
    "blocked",
    "abandoned",
    "voicemail",
    "failed",
    "rejected",
)
_AUTH_RESULTS = ("ok", "stale", "failed", "rejected", "bad_uri", "challenged", "blocked")
_SIP_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO")
_REFUSALS = ("untrusted-source", "rate-limited", "unknown-number", "unknown-number-silenced")
_NOTIFY_EVENTS = (
    "call.ringing",
    "call.answered",
    "call.completed",
    "call.updated",
    "recording.ready",
    "analysis.completed",
    "voicemail.created",
    "webhook.test",
)
_CALL_SECONDS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_RING_SECONDS = (0.5, 1, 2, 5, 10, 20, 30, 60)
_JITTER_SECONDS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
_ANALYSIS_SECONDS = (1, 2, 5, 10, 30, 60, 120, 300, 600)
_PREFIX = "mediasrv_"


class Metrics:
    """Every metric mediasrv exports; one instance per server, built by ``app.py``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        p = _PREFIX
        # calls
        self.active_calls = Gauge(f"{p}active_calls", "Calls in progress", registry=r)
        self.calls_total = Counter(
            f"{p}calls", "Finished calls by disposition", ["disposition"], registry=r
        )
        self.call_ring_seconds = Histogram(
            f"{p}call_ring_seconds",
            "Ring time of finished calls",
            buckets=_RING_SECONDS,
            registry=r,
        )
        self.call_talk_seconds = Histogram(
            f"{p}call_talk_seconds",
            "Talk time of answered calls",
            buckets=_CALL_SECONDS,
            registry=r,
        )
        self.draining = Gauge(f"{p}draining", "1 while the server drains after SIGTERM", registry=r)
        # call flows (issue 10): run-time failures a call survived (missing prompt, target that
        # does not resolve, operator not registered, store down), and flow domain events
        self.flow_failures_total = Counter(
            f"{p}flow_failures", "Run-time flow failures the call survived", ["reason"], registry=r
        )
        # SIP
        self.sip_requests_total = Counter(
            f"{p}sip_requests", "SIP requests", ["method", "direction"], registry=r
        )
        self.sip_responses_total = Counter(
            f"{p}sip_responses",
            "SIP final and provisional responses",
            ["code", "method", "direction"],
            registry=r,
        )
        self.sip_transaction_timeouts_total = Counter(
            f"{p}sip_transaction_timeouts",
            "SIP transactions ended by a timer (RFC 3261 §17 timers B, F, H)",
            ["kind"],
            registry=r,
        )
        self.sip_malformed_total = Counter(
            f"{p}sip_malformed", "SIP messages that could not be parsed", ["transport"], registry=r
        )
        self.sip_retransmissions_total = Counter(
            f"{p}sip_retransmissions", "SIP retransmissions sent or absorbed", registry=r
        )
        # SIP TCP connection limits (issue 8, finding 4)
        self.sip_tcp_refused_total = Counter(
            f"{p}sip_tcp_refused",
            "SIP TCP connections refused at a cap (per_source or total)",
            ["reason"],
            registry=r,
        )
        self.sip_tcp_idle_closed_total = Counter(
            f"{p}sip_tcp_idle_closed", "SIP TCP connections closed as idle", registry=r
        )
        # digest authentication and its guard (issue 8, finding 3)
        self.sip_auth_attempts_total = Counter(
            f"{p}sip_auth_attempts",
            "Inbound digest authentication attempts by result (ok, stale, failed: a wrong "
            "password, rejected: unusable credentials, bad_uri, challenged, blocked: refused "
            "by the auth guard unchecked)",
            ["result"],
            registry=r,
        )
        self.sip_auth_blocks_total = Counter(
            f"{p}sip_auth_blocks",
            "Blocks started by the auth guard (scope: source address or username)",
            ["scope"],
            registry=r,
        )
        # media
        self.rtp_packets_total = Counter(
            f"{p}rtp_packets", "RTP packets relayed", ["direction"], registry=r
        )
        self.rtp_packets_lost_total = Counter(
            f"{p}rtp_packets_lost", "RTP packets lost (RFC 3550 A.3) on finished legs", registry=r
        )
        self.rtp_jitter_seconds = Histogram(
            f"{p}rtp_jitter_seconds",
            "Interarrival jitter (RFC 3550 A.8) of finished legs",
            buckets=_JITTER_SECONDS,
            registry=r,
        )
        self.rtp_foreign_source_dropped_total = Counter(
            f"{p}rtp_foreign_source_dropped",
            "RTP packets dropped on finished legs because they came from a source other than "
            "the one the leg latched to (RFC 4961 symmetric RTP, locked)",
            registry=r,
        )
        self.rtp_ports_in_use = Gauge(f"{p}rtp_ports_in_use", "RTP ports allocated", registry=r)
        self.media_engine_info = Gauge(
            f"{p}media_engine_info", "The media engine loaded (value 1)", ["engine"], registry=r
        )
        self.recording_bytes_total = Counter(
            f"{p}recording_bytes", "Bytes written to recordings", registry=r
        )
        # analysis and notifications
        self.analysis_queue_depth = Gauge(
            f"{p}analysis_queue_depth", "Analysis jobs waiting", registry=r
        )
        self.analysis_jobs_total = Counter(
            f"{p}analysis_jobs", "Analysis jobs finished", ["result"], registry=r
        )
        self.analysis_seconds = Histogram(
            f"{p}analysis_seconds",
            "Latency from call end to analysis done",
            buckets=_ANALYSIS_SECONDS,
            registry=r,
        )
        self.notify_deliveries_total = Counter(
            f"{p}notify_deliveries",
            "Webhook and email delivery attempts by event type and result",
            ["channel", "event", "result"],
            registry=r,
        )
        self.http_requests_total = Counter(
            f"{p}http_requests", "HTTP requests served", ["route", "code"], registry=r
        )
        # issue 8: requests refused by the source policy, the rate limits, the number check
        self.sip_refused_total = Counter(
            f"{p}sip_refused",
            "SIP requests refused or dropped (untrusted source, rate limit, unknown number)",
            ["reason"],
            registry=r,
        )
        # issue 12 §5: callback-email tracking
        self.callback_leases_total = Counter(
            f"{p}callback_leases",
            "Callback numbers leased for emails (new, renewed; exhausted: the pool was full "
            "and the email showed the caller's number)",
            ["result"],
            registry=r,
        )
        self.callback_calls_total = Counter(
            f"{p}callback_calls",
            "Calls to callback numbers (forwarded to the caller, or refused: no active lease)",
            ["result"],
            registry=r,
        )
        self._callbacks: dict[str, Gauge] = {}
        self._prefill()

    def _prefill(self) -> None:
        for d in _DISPOSITIONS:
            self.calls_total.labels(disposition=d)
        for m in _SIP_METHODS:
            for direction in ("in", "out"):
                self.sip_requests_total.labels(method=m, direction=direction)
        for direction in ("in", "out"):
            self.rtp_packets_total.labels(direction=direction)
        for reason in ("per_source", "total"):
            self.sip_tcp_refused_total.labels(reason=reason)
        for result in _AUTH_RESULTS:
            self.sip_auth_attempts_total.labels(result=result)
        for scope in ("source", "user"):
            self.sip_auth_blocks_total.labels(scope=scope)
        for result in ("done", "failed"):
            self.analysis_jobs_total.labels(result=result)
        for channel in ("webhook", "email"):
            for event in _NOTIFY_EVENTS:
                for result in ("delivered", "retry", "dead", "disabled"):
                    self.notify_deliveries_total.labels(channel=channel, event=event, result=result)
        for reason in _REFUSALS:
            self.sip_refused_total.labels(reason=reason)
        for result in ("new", "renewed", "exhausted"):
            self.callback_leases_total.labels(result=result)
        for result in ("forwarded", "refused"):
            self.callback_calls_total.labels(result=result)

    # ---------------------------------------------------------------- helpers

    def set_engine(self, name: str) -> None:
        """Record which media engine runs ("cython" | "python"); only one is ever 1."""
        self.media_engine_info.clear()
        self.media_engine_info.labels(engine=name).set(1)

    def call_finished(
        self, disposition: str, ring_seconds: float = 0.0, talk_seconds: float = 0.0
    ) -> None:
        """Count a finished call (``disposition`` is a :class:`Disposition` value)."""
        self.calls_total.labels(disposition=disposition).inc()
        self.call_ring_seconds.observe(max(0.0, ring_seconds))
        if talk_seconds > 0:
            self.call_talk_seconds.observe(talk_seconds)

    def leg_finished(
        self,
        packets_in: int,
        packets_out: int,
        packets_lost: int = 0,
        jitter_ms: float = 0.0,
        foreign_dropped: int = 0,
    ) -> None:
        """Count a finished call leg's RTP (from the media report's per-leg stats)."""
        self.rtp_foreign_source_dropped_total.inc(max(0, foreign_dropped))
        self.rtp_packets_total.labels(direction="in").inc(max(0, packets_in))
        self.rtp_packets_total.labels(direction="out").inc(max(0, packets_out))
        self.rtp_packets_lost_total.inc(max(0, packets_lost))
        if packets_in > 0:  # no jitter estimate without packets
            self.rtp_jitter_seconds.observe(max(0.0, jitter_ms) / 1000.0)

    def sip_request(self, method: str, direction: str) -> None:
        self.sip_requests_total.labels(method=method, direction=direction).inc()

    def sip_response(self, code: int, method: str, direction: str) -> None:
        self.sip_responses_total.labels(code=str(code), method=method, direction=direction).inc()

    def add_gauge_callback(self, name: str, help: str, fn: Callable[[], float]) -> Gauge:
        """A gauge whose value is read from ``fn()`` at scrape time (e.g. live dialogs).

        ``name`` gets the ``mediasrv_`` prefix unless it has it. A failing ``fn`` yields NaN
        and a log line; it never breaks the scrape. Adding the same name again replaces ``fn``.
        """
        full = name if name.startswith(_PREFIX) else _PREFIX + name
        gauge = self._callbacks.get(full)
        if gauge is None:
            gauge = Gauge(full, help, registry=self.registry)
            self._callbacks[full] = gauge
        gauge.set_function(_safe(full, fn))
        return gauge

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def names(self) -> Iterable[str]:
        """Every sample name currently exported (for tests and docs)."""
        for family in self.registry.collect():
            for sample in family.samples:
                yield sample.name


def _safe(name: str, fn: Callable[[], float]) -> Callable[[], float]:
    def read() -> float:
        try:
            return float(fn())
        except Exception:
            log.exception("metric %s: callback failed", name)
            return math.nan

    return read
