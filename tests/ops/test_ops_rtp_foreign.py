"""RTP from foreign sources (issue 8 finding 1): counted per leg into the call row and metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mediasrv.calls.disposition import Disposition
from mediasrv.calls.trace import CallTrace
from mediasrv.media.api import LegRole, LegStats, MediaReport
from mediasrv.outputs.flow_records import record_from_trace
from mediasrv.outputs.metrics import Metrics

NAME = "mediasrv_rtp_foreign_source_dropped_total"


def foreign_total(m: Metrics) -> float:
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            if s.name == NAME:
                return float(s.value)
    raise AssertionError(f"{NAME} not exported")


def test_the_counter_is_exported_at_zero_and_sums_finished_legs() -> None:
    m = Metrics()
    assert foreign_total(m) == 0
    m.leg_finished(packets_in=100, packets_out=100, foreign_dropped=501)
    m.leg_finished(packets_in=100, packets_out=100)
    m.leg_finished(packets_in=0, packets_out=0, foreign_dropped=-1)  # never decreases
    assert foreign_total(m) == 501


def test_the_call_row_carries_each_legs_drops() -> None:
    report = MediaReport("c1", engine="python")
    report.legs[LegRole.CALLER] = LegStats(packets_in=10, remote="127.0.0.1:4000",
                                           foreign_dropped=42)
    report.legs[LegRole.OPERATOR] = LegStats(packets_in=10)
    trace = CallTrace("c1", "0312345678", "0901234567", inbound_call_id="in-1",
                      disposition=Disposition.ANSWERED, media=report)
    legs = record_from_trace(trace).media_stats["legs"]
    assert isinstance(legs, dict)
    assert legs["caller"]["foreign_dropped"] == 42
    assert legs["operator"]["foreign_dropped"] == 0
