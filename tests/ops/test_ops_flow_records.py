"""A flow's trace becomes a call-log row: attempts with operator, ring seconds and code; the
disposition of the one enum; written and read back through the real SQLite store."""

from __future__ import annotations

from pathlib import Path

from mediasrv.calls.disposition import Disposition
from mediasrv.calls.trace import Attempt, AttemptResult, CallTrace, HungUpBy, MenuPick
from mediasrv.outputs.calllog import CallLogStore
from mediasrv.outputs.flow_records import flow_summary, record_from_trace

T0 = 1_798_470_000.0


def trace() -> CallTrace:
    t = CallTrace(
        call_id="c1",
        number="+81312345678",
        caller="09012345678",
        flow_version=7,
        inbound_call_id="abc@192.0.2.1",
        business="acme",
        medium="web",
        received=T0,
        answered=T0 + 2.0,
        bridged=T0 + 14.0,
        ended=T0 + 74.0,
        operator="sato",
        operator_target="sip:sato@127.0.0.1:27011",
        hung_up_by=HungUpBy.OPERATOR,
        disposition=Disposition.ANSWERED,
        sip_code=200,
        reason="operator-bye",
        consent_played=True,
        path=["branch", "menu:main", "dial"],
        digits=["1"],
        recording=Path("/rec/c1.wav"),
    )
    t.menu.append(MenuPick("main", "1", "forward", 1))
    t.attempts.append(Attempt("sip:a@h", "suzuki", T0 + 5, T0 + 5.2, 486, AttemptResult.BUSY))
    t.attempts.append(
        Attempt("sip:sato@127.0.0.1:27011", "sato", T0 + 5.2, T0 + 9.2, 200, AttemptResult.ANSWERED)
    )
    return t


def test_the_row_keeps_times_disposition_and_every_attempt() -> None:
    rec = record_from_trace(trace())
    assert rec.caller_number == "+819012345678"
    assert rec.answer_time == T0 + 14.0  # the bridge, after the whisper
    assert rec.talk_seconds == 60.0 and rec.ring_seconds == 14.0
    assert rec.disposition is Disposition.ANSWERED
    assert [(a["operator"], a["code"], a["ring_seconds"]) for a in rec.attempts] == [
        ("suzuki", 486, 0.2),
        ("sato", 200, 4.0),
    ]
    assert rec.dtmf == "1" and rec.flags == ["consent-played"]
    summary = flow_summary(trace())
    assert summary["version"] == 7 and summary["hung_up_by"] == "operator"
    assert summary["phases"] == {
        "received": T0,
        "answered": T0 + 2.0,
        "bridged": T0 + 14.0,
        "ended": T0 + 74.0,
    }
    assert summary["menu"] == [{"menu": "main", "digits": "1", "choice": "forward", "tries": 1}]


async def test_the_row_round_trips_through_the_store(tmp_path: Path) -> None:
    store = CallLogStore(tmp_path / "calls.db")
    await store.open()
    try:
        await store.record_call(record_from_trace(trace()))
        back = await store.get_call("c1")
    finally:
        await store.close()
    assert back is not None
    assert back.disposition is Disposition.ANSWERED
    assert back.attempts[1]["result"] == "answered"
    assert back.inbound_call_id == "abc@192.0.2.1"


def test_flow_failures_are_counted_by_reason() -> None:
    from mediasrv.outputs.metrics import Metrics

    m = Metrics()
    m.flow_failures_total.labels(reason="prompt-missing").inc()
    m.flow_failures_total.labels(reason="prompt-missing").inc()
    value = m.registry.get_sample_value(
        "mediasrv_flow_failures_total", {"reason": "prompt-missing"}
    )
    assert value == 2.0


# ---- issue 10 §6: the call log's flow columns (migration 3) ----


def test_the_row_carries_the_flow_columns() -> None:
    rec = record_from_trace(trace())
    assert rec.flow_version == 7
    assert rec.flow_path == ["branch", "menu:main", "dial"]
    assert rec.menu_choices == [{"menu": "main", "digits": "1", "choice": "forward", "tries": 1}]
    assert rec.phases == {
        "received": T0,
        "answered": T0 + 2.0,
        "bridged": T0 + 14.0,
        "ended": T0 + 74.0,
    }
    assert rec.hung_up_by == "operator"
    d = rec.to_dict()  # the /api/v1/calls representation
    assert d["flow_version"] == 7 and d["hung_up_by"] == "operator"
    assert d["phases"]["bridged"] == T0 + 14.0  # type: ignore[index]


async def test_the_flow_columns_round_trip_through_the_store(tmp_path: Path) -> None:
    rec = record_from_trace(trace())
    rec.flow_rules = ["blocklist=no", "hours:clinic=open"]
    store = CallLogStore(tmp_path / "calls.db")
    await store.open()
    try:
        await store.record_call(rec)
        back = await store.get_call("c1")
    finally:
        await store.close()
    assert back == rec


async def test_migration_3_adds_the_flow_columns_and_old_rows_read_with_defaults(
    tmp_path: Path,
) -> None:
    import aiosqlite

    from mediasrv.outputs.calllog import CALLS_MIGRATIONS
    from mediasrv.outputs.sqlite import migrate

    path = tmp_path / "mediasrv.db"
    conn = await aiosqlite.connect(path, isolation_level=None)
    await migrate(conn, "calls", CALLS_MIGRATIONS[:2], path)  # a database before issue 10 §6
    await conn.execute(
        "INSERT INTO calls (call_id, inbound_call_id, tracking_number, caller_number, "
        "start_time, end_time, disposition, sip_code) VALUES "
        "('old', 'x@y', '+81312345678', 'anonymous', ?, ?, 'answered', 200)",
        (T0, T0 + 60.0),
    )
    await conn.close()
    store = CallLogStore(path)
    await store.open()
    try:
        old = await store.get_call("old")
        await store.record_call(record_from_trace(trace()))
        new = await store.get_call("c1")
    finally:
        await store.close()
    assert old is not None and old.disposition is Disposition.ANSWERED
    assert old.flow_version is None and old.flow_path == [] and old.menu_choices == []
    assert old.phases == {} and old.hung_up_by == ""
    assert new is not None and new.flow_version == 7 and new.hung_up_by == "operator"


def test_a_voicemail_rows_audio_is_its_message() -> None:
    """Nobody was bridged, so there is no call recording: the row's audio (what
    /voicemails/{id}/audio serves) is the message; a bridged call keeps its recording."""
    from mediasrv.calls.trace import VoicemailMessage

    t = trace()
    t.bridged, t.recording, t.disposition = None, None, Disposition.VOICEMAIL
    t.voicemail = VoicemailMessage("+81312345678", Path("/rec/voicemail/81312345678/c1.wav"), 9.5)
    assert record_from_trace(t).recording_path == "/rec/voicemail/81312345678/c1.wav"
    t.voicemail = None
    assert record_from_trace(t).recording_path is None
    assert record_from_trace(trace()).recording_path == "/rec/c1.wav"
