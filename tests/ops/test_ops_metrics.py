"""Prometheus metrics: private registries, the text format, callbacks read at scrape time."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from mediasrv.outputs.metrics import Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_two_instances_do_not_collide_and_global_registry_is_untouched() -> None:
    a, b = Metrics(), Metrics()
    a.active_calls.inc()
    assert samples(a)[("mediasrv_active_calls", ())] == 1
    assert samples(b)[("mediasrv_active_calls", ())] == 0
    assert REGISTRY.get_sample_value("mediasrv_active_calls") is None


def test_counters_and_labels_in_text_format() -> None:
    m = Metrics()
    m.call_finished("answered", ring_seconds=2.0, talk_seconds=30.0)
    m.call_finished("busy", ring_seconds=1.0)
    m.sip_request("INVITE", "in")
    m.sip_response(200, "INVITE", "out")
    m.sip_responses_total.labels(code="486", method="INVITE", direction="in").inc(2)
    m.sip_transaction_timeouts_total.labels(kind="invite_client").inc()
    m.sip_malformed_total.labels(transport="udp").inc()
    m.sip_retransmissions_total.inc(3)
    m.rtp_packets_total.labels(direction="in").inc(500)
    m.rtp_ports_in_use.set(4)
    m.recording_bytes_total.inc(1024)
    m.draining.set(1)
    s = samples(m)
    assert s[("mediasrv_calls_total", (("disposition", "answered"),))] == 1
    assert s[("mediasrv_calls_total", (("disposition", "busy"),))] == 1
    assert s[("mediasrv_calls_total", (("disposition", "no-answer"),))] == 0  # pre-created
    assert s[("mediasrv_sip_requests_total", (("direction", "in"), ("method", "INVITE")))] == 1
    key = (("code", "486"), ("direction", "in"), ("method", "INVITE"))
    assert s[("mediasrv_sip_responses_total", key)] == 2
    assert s[("mediasrv_sip_transaction_timeouts_total", (("kind", "invite_client"),))] == 1
    assert s[("mediasrv_sip_malformed_total", (("transport", "udp"),))] == 1
    assert s[("mediasrv_sip_retransmissions_total", ())] == 3
    assert s[("mediasrv_rtp_packets_total", (("direction", "in"),))] == 500
    assert s[("mediasrv_rtp_ports_in_use", ())] == 4
    assert s[("mediasrv_recording_bytes_total", ())] == 1024
    assert s[("mediasrv_draining", ())] == 1
    assert s[("mediasrv_call_talk_seconds_count", ())] == 1
    assert s[("mediasrv_call_ring_seconds_sum", ())] == 3.0


def test_engine_info_has_exactly_one_engine() -> None:
    m = Metrics()
    m.set_engine("python")
    m.set_engine("cython")
    engines = {k[1] for k in samples(m) if k[0] == "mediasrv_media_engine_info"}
    assert engines == {(("engine", "cython"),)}


def test_callback_gauges_read_live_values_and_survive_errors() -> None:
    m = Metrics()
    live = {"n": 3}
    m.add_gauge_callback("sip_dialogs", "Dialogs alive", lambda: live["n"])
    assert samples(m)[("mediasrv_sip_dialogs", ())] == 3
    live["n"] = 7
    assert samples(m)[("mediasrv_sip_dialogs", ())] == 7

    def broken() -> float:
        raise RuntimeError("boom")

    m.add_gauge_callback("mediasrv_broken", "Always fails", broken)
    s = samples(m)  # the scrape still works
    assert math.isnan(s[("mediasrv_broken", ())])
    # re-adding a name replaces its function instead of failing on a duplicate
    m.add_gauge_callback("sip_dialogs", "Dialogs alive", lambda: 1.0)
    assert samples(m)[("mediasrv_sip_dialogs", ())] == 1
    assert "mediasrv_sip_dialogs" in set(m.names())


def test_leg_stats_feed_packets_loss_and_jitter() -> None:
    m = Metrics()
    m.leg_finished(packets_in=1000, packets_out=990, packets_lost=10, jitter_ms=12.0)
    m.leg_finished(packets_in=0, packets_out=0, packets_lost=-3, jitter_ms=0.0)  # silent leg
    s = samples(m)
    assert s[("mediasrv_rtp_packets_total", (("direction", "in"),))] == 1000
    assert s[("mediasrv_rtp_packets_total", (("direction", "out"),))] == 990
    assert s[("mediasrv_rtp_packets_lost_total", ())] == 10
    assert s[("mediasrv_rtp_jitter_seconds_count", ())] == 1
    assert s[("mediasrv_rtp_jitter_seconds_bucket", (("le", "0.01"),))] == 0
    assert s[("mediasrv_rtp_jitter_seconds_bucket", (("le", "0.02"),))] == 1
