"""One call schema (issue 12 §1): the call row the API returns and the data every call event
carries are described by one definition (mediasrv/api/call_schema.py), which is what the
OpenAPI document publishes; real payloads validate against it, and it lists no field the
payloads lack and misses none they have (additionalProperties: false)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from mediasrv.api.call_schema import CALL_EVENT_DATA, CALL_SCHEMA, CALL_V1_SCHEMA
from mediasrv.api.openapi import openapi_document
from mediasrv.api.v1.calls import _call_json
from mediasrv.outputs.call_events import analysis_summary, call_data
from mediasrv.outputs.calllog import CALL_RECORD_FIELDS, CallRecord, Disposition


def _rich_record() -> CallRecord:
    now = time.time()
    return CallRecord(
        call_id="c1", inbound_call_id="sip-c1", tracking_number="+81312345678",
        caller_number="+819012345678", caller_display="山田", business="acme",
        medium="新聞", campaign="冬", start_time=now - 60, answer_time=now - 50,
        end_time=now, ring_seconds=10.0, talk_seconds=50.0, disposition=Disposition.ANSWERED,
        sip_code=200, end_reason="caller-bye", operator_uri="sip:op@127.0.0.1",
        attempts=[{"uri": "sip:op@127.0.0.1", "code": 200, "start": now - 60, "end": now - 50}],
        dtmf="12", recording_path="/var/rec/c1.wav", media_stats={"engine": "cython"},
        analysis={"language": "ja"}, flags=["callback"], caller_kind="mobile",
        prefecture_code="13", prefecture="東京都", caller_source="from", valid=True,
        duplicate=True, first_time=False, repeat_count=2, flow_version=3,
        flow_path=["answer"], flow_rules=["blocklist=no"],
        menu_choices=[{"menu": "m", "digits": "1"}], phases={"received": now - 60, "ended": None},
        hung_up_by="caller", callback_of="c0",
    )  # fmt: skip


def _errors(schema: dict[str, Any], value: object) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}"
            for e in Draft202012Validator(schema).iter_errors(value)]  # fmt: skip


def test_every_record_field_is_described_and_nothing_else() -> None:
    assert set(CALL_SCHEMA["properties"]) == set(CALL_RECORD_FIELDS)
    assert set(CALL_V1_SCHEMA["properties"]) == {*CALL_RECORD_FIELDS, "links"}


def test_real_rows_validate() -> None:
    for rec in (_rich_record(), CallRecord("c2", "sip-c2", "0312345678", "anonymous")):
        assert _errors(CALL_SCHEMA, rec.to_dict()) == []
        assert _errors(CALL_V1_SCHEMA, _call_json("acme", rec)) == []


def test_real_event_data_validates_and_the_schema_is_no_wider() -> None:
    rec = _rich_record()
    data = {**call_data(rec), "sequence": 4}
    assert _errors(CALL_EVENT_DATA, data) == []
    summary = analysis_summary({"outcome": "inquiry", "gender": "female", "language": "ja",
                                "gender_confidence": 0.9, "labels": ["reservation"],
                                "timeline": [{"speaker": "caller", "start": 0.5, "text": "もしもし"}]})
    assert _errors(CALL_EVENT_DATA, {**data, **summary}) == []
    from mediasrv.call_pipeline import completion_events
    from mediasrv.calls.trace import CallTrace, VoicemailMessage

    trace = CallTrace("c1", "0312345678", "+819012345678")
    trace.voicemail = VoicemailMessage("front", Path("vm.wav"), 3.0)
    _milestones, voicemail = completion_events(trace)  # what voicemail.created adds
    assert voicemail is not None and _errors(CALL_EVENT_DATA, {**data, **voicemail}) == []
    extra = set(CALL_EVENT_DATA["properties"]) - set(data) - set(summary) - set(voicemail)
    assert extra == set(), f"described but never sent: {extra}"
    # the event carries the caller attributes and flags (they were missing from it before)
    for name in ("caller_kind", "prefecture", "flags", "valid", "duplicate", "callback_of"):
        assert name in CALL_EVENT_DATA["properties"]


def test_a_payload_with_an_unknown_field_is_refused() -> None:
    data = {**call_data(_rich_record()), "sequence": 1, "surprise": 1}
    assert _errors(CALL_EVENT_DATA, data)


def test_the_documents_publish_the_same_definition() -> None:
    assert openapi_document(100)["components"]["schemas"]["Call"] is CALL_SCHEMA
