"""Valid / duplicate / first-time (F14, F15), reports (F17), CSV encodings and call-log
queries (issue 11) on a real SQLite store; times are explicit (no sleeps, no wall clock)."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from mediasrv.api.auth import StaticTokenStore, generate_token, hash_token
from mediasrv.api.csv_export import CsvEncoding, Unencodable, csv_raw_rows
from mediasrv.api.http import HttpPolicy, HttpServer
from mediasrv.calls.caller_id import number_info
from mediasrv.outputs.attributes import StaticPolicy, apply_caller, is_valid, recompute
from mediasrv.outputs.calllog import CallLogStore, CallQuery, CallRecord, Disposition
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.reports import Dimension, ReportQuery, offset_spans, run_report

JST = ZoneInfo("Asia/Tokyo")
T0 = 1_767_193_200.0  # 2026-01-01 00:00 JST
HOUR = 3600.0
DAY = 86400.0
TOKEN = generate_token()


def row(n: int, caller: str, start: float, **kw: object) -> CallRecord:
    rec = CallRecord(
        call_id=f"c{n:04d}",
        inbound_call_id=f"sip{n}",
        tracking_number=str(kw.pop("number", "0311111111")),
        caller_number=caller,
        business=str(kw.pop("business", "acme")),
        medium=str(kw.pop("medium", "web")),
        start_time=start,
        end_time=start + 100,
        disposition=Disposition.ANSWERED,
    )
    for k, v in kw.items():
        setattr(rec, k, v)
    apply_caller(rec, number_info(caller), "from")
    return rec


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CallLogStore]:
    s = CallLogStore(tmp_path / "mediasrv.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def flags(store: CallLogStore, call_id: str) -> tuple[bool | None, bool | None, int]:
    rec = await store.get_call(call_id)
    assert rec is not None
    return rec.duplicate, rec.first_time, rec.repeat_count


async def test_duplicate_first_time_and_repeat_count_at_the_window_boundaries(
    store: CallLogStore,
) -> None:
    window = DAY
    sapporo = "011-211-1111"
    await store.record_final(row(1, sapporo, T0), window)
    assert await flags(store, "c0001") == (False, True, 0)
    await store.record_final(row(2, sapporo, T0 + window), window)  # exactly at: inside
    assert await flags(store, "c0002") == (True, False, 1)
    await store.record_final(row(3, sapporo, T0 + window + 1), window)  # c1 fell out
    assert await flags(store, "c0003") == (True, False, 1)
    await store.record_final(row(4, sapporo, T0 + 3 * window + 2), window)
    assert await flags(store, "c0004") == (False, False, 0)  # not new, not a duplicate
    # another business: the same caller is new there
    await store.record_final(row(5, sapporo, T0 + 10, business="other"), window)
    assert await flags(store, "c0005") == (False, True, 0)


async def test_withheld_callers_are_never_matched(store: CallLogStore) -> None:
    for n in range(3):
        await store.record_final(row(n, "anonymous", T0 + n), DAY)
    for n in range(3):
        assert await flags(store, f"c{n:04d}") == (False, None, 0)
    await store.record_final(row(7, "公衆電話", T0 + 9), DAY)
    rec = await store.get_call("c0007")
    assert rec is not None and rec.caller_number == "payphone" and rec.duplicate is False


def _as_legacy_rejected(store: CallLogStore, call_id: str) -> None:
    """Rows written before issue 10 could say "rejected" (a refused request, not a call);
    the enum no longer has it, so such a row is made the way old servers wrote it."""
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE calls SET disposition = 'rejected' WHERE call_id = ?", (call_id,))


async def test_a_refused_request_is_not_an_earlier_call(store: CallLogStore) -> None:
    await store.record_final(row(1, "09012345678", T0, disposition=Disposition.FAILED), DAY)
    _as_legacy_rejected(store, "c0001")
    await store.record_final(row(2, "09012345678", T0 + 5), DAY)
    assert await flags(store, "c0002") == (False, True, 0)


async def test_recompute_after_a_window_change_is_reproducible(store: CallLogStore) -> None:
    caller = "09011112222"
    starts = [T0, T0 + 2 * HOUR, T0 + 30 * HOUR, T0 + 31 * HOUR]
    for n, t in enumerate(starts):
        await store.record_final(row(n, caller, t, talk_seconds=float(n * 40)), DAY)
    before = [await flags(store, f"c{n:04d}") for n in range(4)]
    assert before == [(False, True, 0), (True, False, 1), (False, False, 0), (True, False, 1)]
    wider = StaticPolicy(valid_seconds=60, window_seconds=2 * DAY)
    first = await recompute(store, wider, T0, T0 + 2 * DAY)
    after = [await flags(store, f"c{n:04d}") for n in range(4)]
    assert after == [(False, True, 0), (True, False, 1), (True, False, 2), (True, False, 3)]
    again = await recompute(store, wider, T0, T0 + 2 * DAY)
    assert [await flags(store, f"c{n:04d}") for n in range(4)] == after
    assert first.repeats == again.repeats == 4
    valid = [(await store.get_call(f"c{n:04d}")).valid for n in range(4)]  # type: ignore[union-attr]
    assert valid == [False, False, True, True]  # talk 0, 40, 80, 120 s against 60 s


def test_valid_needs_an_answer_and_the_threshold() -> None:
    assert is_valid(Disposition.ANSWERED, 60.0, 60.0)
    assert not is_valid(Disposition.ANSWERED, 59.999, 60.0)
    assert not is_valid(Disposition.VOICEMAIL, 600.0, 60.0)


async def report_fixture(store: CallLogStore) -> None:
    rows = [
        # n, caller, start offset, medium, disposition, talk, ring, valid
        (1, "011-211-1111", 1 * HOUR, "web", Disposition.ANSWERED, 120.0, 5.0),
        (2, "011-211-1111", 2 * HOUR, "web", Disposition.ANSWERED, 30.0, 7.0),
        (3, "03-5321-1111", 3 * HOUR, "web", Disposition.ABANDONED, 0.0, 12.0),
        (4, "090-1234-5678", 23 * HOUR + 1800, "paper", Disposition.BLOCKED, 0.0, 0.0),
        (5, "anonymous", DAY + 10 * HOUR, "paper", Disposition.VOICEMAIL, 0.0, 20.0),
        (6, "03-5321-1111", DAY + 11 * HOUR, "paper", Disposition.ANSWERED, 90.0, 3.0),
        (7, "03-5321-1111", DAY + 12 * HOUR, "paper", Disposition.IN_PROGRESS, 0.0, 0.0),
        (8, "03-5321-1111", DAY + 13 * HOUR, "paper", Disposition.FAILED, 0.0, 0.0),
    ]
    for n, caller, offset, medium, disp, talk, ring in rows:
        rec = row(n, caller, T0 + offset, medium=medium, disposition=disp,
                  talk_seconds=talk, ring_seconds=ring)  # fmt: skip
        rec.valid = is_valid(disp, talk, 60.0)
        await store.record_final(rec, DAY)
    _as_legacy_rejected(store, "c0008")


async def test_report_per_medium_per_day_against_hand_computed_figures(
    store: CallLogStore,
) -> None:
    await report_fixture(store)
    query = ReportQuery((Dimension.MEDIUM, Dimension.DAY), T0, T0 + 7 * DAY, JST)
    got = {(r.keys["medium"], r.keys["day"]): r.to_dict() for r in await run_report(store.read_connection(), query)}
    assert set(got) == {("web", "2026-01-01"), ("paper", "2026-01-01"), ("paper", "2026-01-02")}
    web = got[("web", "2026-01-01")]
    assert (web["calls"], web["answered"], web["valid"], web["first_time"]) == (3, 2, 1, 2)
    assert web["abandoned"] == 1 and web["blocked"] == 0
    assert web["answer_rate"] == round(2 / 3, 4)
    assert web["talk_seconds"] == 150.0 and web["mean_talk_seconds"] == 75.0
    assert web["mean_ring_seconds"] == 8.0  # (5 + 7 + 12) / 3
    blocked_day = got[("paper", "2026-01-01")]  # 23:30 JST stays on Jan 1 (14:30 UTC)
    assert blocked_day["calls"] == 1 and blocked_day["blocked"] == 1
    assert blocked_day["answer_rate"] is None and blocked_day["mean_ring_seconds"] is None
    paper = got[("paper", "2026-01-02")]  # in-progress and rejected rows are not calls
    assert (paper["calls"], paper["answered"], paper["voicemail"], paper["valid"]) == (2, 1, 1, 1)
    assert paper["first_time"] == 0  # the 03 caller called on day 1; anonymous never counts
    assert paper["answer_rate"] == 0.5


async def test_report_by_prefecture_and_hour(store: CallLogStore) -> None:
    await report_fixture(store)
    query = ReportQuery((Dimension.PREFECTURE,), T0, T0 + 7 * DAY, JST, business="acme")
    rows = {r.keys["prefecture"]: r.calls for r in await run_report(store.read_connection(), query)}
    assert rows == {"北海道": 2, "東京都": 2, "unknown": 2}
    by_hour = ReportQuery((Dimension.HOUR,), T0, T0 + 7 * DAY, JST)
    hours = {r.keys["hour"]: r.calls for r in await run_report(store.read_connection(), by_hour)}
    assert hours == {1: 1, 2: 1, 3: 1, 23: 1, 10: 1, 11: 1}
    none = ReportQuery((Dimension.MEDIUM,), T0, T0 + 7 * DAY, JST, business="nobody")
    assert await run_report(store.read_connection(), none) == []


def test_offset_spans_follow_daylight_saving_changes() -> None:
    ny = ZoneInfo("America/New_York")
    start = 1_772_953_200.0 - DAY  # 2026-03-07 07:00 UTC; DST starts 2026-03-08 07:00 UTC
    spans = offset_spans(ny, start, start + 2 * DAY)
    assert [(s[2]) for s in spans] == [-5 * 3600, -4 * 3600]
    assert spans[0][1] == spans[1][0] == 1_772_953_200.0
    assert offset_spans(JST, T0, T0 + 90 * DAY) == [(T0, T0 + 90 * DAY, 9 * 3600)]


async def test_keyset_pages_and_attribute_filters(store: CallLogStore) -> None:
    for n in range(25):
        caller = "011-211-1111" if n % 5 == 0 else "090-1234-5678"
        await store.record_final(row(n, caller, T0 + n // 2), DAY)  # equal start times too
    seen: list[str] = []
    query = CallQuery(limit=7)
    while True:
        page, cursor = await store.query_calls(query)
        seen += [c.call_id for c in page]
        if cursor is None:
            break
        from mediasrv.outputs.calllog import decode_cursor

        query = CallQuery(limit=7, after=decode_cursor(cursor))
    expected = sorted((f"c{n:04d}" for n in range(25)), key=lambda c: (int(c[1:]) // 2, c), reverse=True)
    assert seen == expected
    hokkaido, _ = await store.query_calls(CallQuery((("prefecture_code", "01"),), limit=100))
    assert sorted(c.call_id for c in hokkaido) == [f"c{n:04d}" for n in range(0, 25, 5)]
    dups, _ = await store.query_calls(
        CallQuery((("caller_kind", "mobile"),), (("duplicate", False),), limit=100)
    )
    assert [c.call_id for c in dups] == ["c0001"]  # the mobile caller's first call


def test_csv_in_both_encodings_reads_back() -> None:
    rows = [("c1", "山田 太郎", 1.5, None, 1), ("c2", "=cmd", 2.0, "x", 0)]
    header = ("call_id", "caller_display", "t", "n", "valid")
    from mediasrv.api.csv_export import csv_table

    for enc in (CsvEncoding.UTF8, CsvEncoding.CP932, CsvEncoding.SHIFT_JIS):
        data = csv_table(header, rows, enc)
        text = data.decode("utf-8-sig" if enc is CsvEncoding.UTF8 else enc.value)
        assert data.startswith(b"\xef\xbb\xbf") == (enc is CsvEncoding.UTF8)
        got = list(csv.reader(io.StringIO(text, newline="")))
        assert got == [list(header), ["c1", "山田 太郎", "1.5", "", "1"], ["c2", "'=cmd", "2.0", "x", "0"]]
    with pytest.raises(Unencodable, match=r"c9, column caller_display: '😀' \(U\+1F600\)"):
        csv_table(header, [("c9", "a😀b", 1.0, None, 1)], CsvEncoding.CP932)
    replaced = csv_table(header, [("c9", "a😀b", 1.0, None, 1)], CsvEncoding.CP932, replace=True)
    assert "a?b" in replaced.decode("cp932")
    assert csv_raw_rows([]) == b""


@dataclass
class Http:
    server: HttpServer
    client: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@pytest.fixture
async def http(store: CallLogStore, tmp_path: Path) -> AsyncIterator[Http]:
    async def reports(q: ReportQuery) -> list:  # type: ignore[type-arg]
        return await run_report(store.read_connection(), q)

    server = HttpServer(
        "127.0.0.1", 0, Metrics(), store, lambda: {"status": "ok"},
        policy=HttpPolicy(StaticTokenStore.server(hash_token(TOKEN))),
        attributes=StaticPolicy(), reports=reports,
    )  # fmt: skip
    await server.start()
    client = aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        yield Http(server, client)
    finally:
        await client.close()
        await server.stop()


async def test_http_number_info_reports_and_csv(store: CallLogStore, http: Http) -> None:
    async with http.client.get(http.url("/api/v1/number-info/011-211-1111")) as resp:
        info = await resp.json()
    assert resp.status == 200
    assert info["e164"] == "+81112111111" and info["kind"] == "fixed"
    assert (info["area"], info["prefecture_code"], info["prefecture"]) == ("札幌", "01", "北海道")
    async with http.client.get(http.url("/api/v1/number-info/not-a-number")) as resp:
        assert resp.status == 200 and (await resp.json())["kind"] == "invalid"

    await report_fixture(store)
    params = {"since": str(T0), "until": str(T0 + 7 * DAY)}
    async with http.client.get(http.url("/api/v1/reports/prefecture"), params=params) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["time_zone"] == "Asia/Tokyo"
    assert {r["prefecture"]: r["calls"] for r in body["rows"]} == {"北海道": 2, "東京都": 2, "unknown": 2}
    async with http.client.get(
        http.url("/api/v1/reports/medium,day.csv"), params={**params, "encoding": "cp932"}
    ) as resp:
        text = (await resp.read()).decode("cp932")
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["medium"], r["day"], r["calls"]) for r in table] == [
        ("paper", "2026-01-01", "1"), ("paper", "2026-01-02", "2"), ("web", "2026-01-01", "3"),
    ]  # fmt: skip
    async with http.client.get(http.url("/api/v1/reports/colour"), params=params) as resp:
        assert resp.status == 400 and "group_by" in (await resp.json())["error"]

    await store.record_final(row(50, "0312345678", T0 + 1, caller_display="絵文字😀"), DAY)
    async with http.client.get(http.url("/api/v1/calls.csv"), params={"encoding": "cp932"}) as resp:
        err = await resp.json()
    assert resp.status == 400 and "c0050" in err["error"] and "U+1F600" in err["error"]
    async with http.client.get(http.url("/api/v1/calls.csv")) as resp:
        raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM by default
    calls = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert {c["call_id"] for c in calls} == {f"c{n:04d}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 50)}
    assert next(c for c in calls if c["call_id"] == "c0050")["caller_display"] == "絵文字😀"
    async with http.client.get(
        http.url("/api/v1/calls"), params={"prefecture_code": "01", "limit": "1"}
    ) as resp:
        page = await resp.json()
    assert page["total"] == 2 and len(page["calls"]) == 1 and page["next_cursor"]
    async with http.client.get(
        http.url("/api/v1/calls"), params={"prefecture_code": "01", "cursor": page["next_cursor"]}
    ) as resp:
        rest = await resp.json()
    assert [c["call_id"] for c in page["calls"] + rest["calls"]] == ["c0002", "c0001"]
    assert rest["next_cursor"] is None
    async with http.client.get(http.url("/api/v1/calls"), params={"cursor": "zzz"}) as resp:
        assert resp.status == 400
