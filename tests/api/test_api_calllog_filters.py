"""The call log's filters, its CSV export and the reports in the v1 tenant paths (issue 13
§2, §3: what the console's call log and reports pages ask for), over a real HTTP server
and the SQLite call log: each filter gives exactly the calls it names, of the token's
business only; cursor pages neither repeat nor skip; the CSV is the filtered log; reports
count one business."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
import requests
from apiserver import T0, ApiServerThread, Running

from mediasrv.outputs.calllog import CallRecord, Disposition

# (call_id, medium, campaign, prefecture_code, valid, first_time, label, disposition)
EXTRA = [
    ("alphaf01", "新聞", "冬", "13", True, True, "booking_made", Disposition.ANSWERED),
    ("alphaf02", "新聞", "夏", "01", False, False, "", Disposition.ANSWERED),
    ("alphaf03", "雑誌", "冬", "13", True, False, "complaint", Disposition.ANSWERED),
    ("alphaf04", "雑誌", "", "27", None, None, "", Disposition.ABANDONED),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    srv = ApiServerThread(tmp_path_factory.mktemp("calllog"))
    running = srv.start()
    try:
        for n, (call_id, medium, campaign, pref, valid, first, label, disp) in enumerate(EXTRA):
            rec = CallRecord(call_id, f"sip-{call_id}", "0312345678", "+81312345678",
                             business="alpha", medium=medium, campaign=campaign,
                             start_time=T0 + 1000 + 60 * n, end_time=T0 + 1030 + 60 * n,
                             disposition=disp, prefecture_code=pref, valid=valid,
                             first_time=first,
                             analysis={"outcome": {"label": label}} if label else None)
            srv.run(srv.calls.record_call(rec))
        yield running
    finally:
        srv.stop()


def _ids(api: Running, who: str = "alpha", business: str = "alpha", **q: str) -> list[str]:
    url = f"{api.base}/api/v1/businesses/{business}/calls"
    got = requests.get(url, params=q, headers=api.auth(who), timeout=10)
    assert got.status_code == 200, got.text
    return [c["call_id"] for c in got.json()["items"]]


@pytest.mark.parametrize(("query", "expected"), [
    ({"medium": "新聞"}, ["alphaf02", "alphaf01"]),
    ({"campaign": "冬"}, ["alphaf03", "alphaf01"]),
    ({"medium": "新聞", "campaign": "冬"}, ["alphaf01"]),
    ({"prefecture": "13"}, ["alphaf03", "alphaf01"]),
    ({"valid": "true"}, ["alphaf03", "alphaf01"]),
    ({"valid": "false"}, ["alphaf02"]),
    ({"first_time": "true"}, ["alphaf01"]),
    ({"label": "complaint"}, ["alphaf03"]),
    ({"disposition": "abandoned"}, ["alphaf04"]),
    ({"medium": "雑誌", "since": str(T0 + 1150)}, ["alphaf04"]),
    ({"medium": "テレビ"}, []),
])  # fmt: skip
def test_each_filter_gives_exactly_its_calls(api: Running, query: dict[str, str],
                                             expected: list[str]) -> None:
    assert _ids(api, **query) == expected


def test_filters_never_reach_another_business(api: Running) -> None:
    assert _ids(api, "bravo", "bravo", medium="新聞") == []
    got = requests.get(f"{api.base}/api/v1/businesses/alpha/calls", params={"medium": "新聞"},
                       headers=api.auth("bravo"), timeout=10)
    assert got.status_code == 404


def test_bad_filter_values_are_422_naming_the_parameter(api: Running) -> None:
    for q, name in (({"prefecture": "tokyo"}, "prefecture"), ({"valid": "maybe"}, "valid"),
                    ({"cursor": "!!"}, "cursor")):
        got = requests.get(f"{api.base}/api/v1/businesses/alpha/calls", params=q,
                           headers=api.auth("alpha"), timeout=10)
        assert got.status_code == 422, got.text
        assert name in got.text


def test_cursor_pages_of_a_filtered_log_neither_repeat_nor_skip(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/calls"
    seen: list[str] = []
    params: dict[str, str] = {"limit": "1", "medium": "新聞"}
    for _ in range(10):
        page = requests.get(url, params=params, headers=api.auth("alpha"), timeout=10).json()
        seen += [c["call_id"] for c in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == ["alphaf02", "alphaf01"]


def _csv(api: Running, **q: str) -> requests.Response:
    return requests.get(f"{api.base}/api/v1/businesses/alpha/calls.csv", params=q,
                        headers=api.auth("alpha"), timeout=10)


def test_csv_export_is_the_filtered_log(api: Running) -> None:
    got = _csv(api, campaign="冬")
    assert got.status_code == 200
    assert got.headers["Content-Type"].startswith("text/csv")
    assert got.content.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 with a BOM
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert [r["call_id"] for r in rows] == ["alphaf03", "alphaf01"]
    assert {r["business"] for r in rows} == {"alpha"}
    sjis = _csv(api, campaign="冬", encoding="cp932")
    assert [r["medium"] for r in csv.DictReader(io.StringIO(sjis.content.decode("cp932")))] == [
        "雑誌", "新聞"]
    everything = list(csv.DictReader(io.StringIO(_csv(api).content.decode("utf-8-sig"))))
    assert len(everything) == 3 + len(EXTRA)  # alpha's seeded calls and these; no bravo row


def test_csv_export_of_another_business_is_404(api: Running) -> None:
    got = requests.get(f"{api.base}/api/v1/businesses/alpha/calls.csv",
                       headers=api.auth("bravo"), timeout=10)
    assert got.status_code == 404


def _report(api: Running, dims: str, who: str = "alpha", suffix: str = "",
            **q: str) -> requests.Response:
    return requests.get(f"{api.base}/api/v1/businesses/{who}/reports/{dims}{suffix}",
                        params={"since": str(T0 - 10), "until": str(T0 + 5000), **q},
                        headers=api.auth(who), timeout=10)


def test_report_per_medium_counts_one_business(api: Running) -> None:
    got = _report(api, "medium")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["group_by"] == ["medium"] and body["time_zone"] == "Asia/Tokyo"
    by_medium = {r["medium"]: r for r in body["rows"]}
    assert by_medium["新聞"]["calls"] == 2 and by_medium["新聞"]["valid"] == 1
    assert by_medium["雑誌"]["calls"] == 2 and by_medium["雑誌"]["abandoned"] == 1
    assert by_medium["雑誌"]["answer_rate"] == 0.5
    assert by_medium["web"]["calls"] == 3  # alpha's seeded calls (bravo's 3 are not here)
    bravo = {r["medium"]: r["calls"] for r in _report(api, "medium", "bravo").json()["rows"]}
    assert bravo == {"web": 3}


def test_report_csv_and_bad_reports(api: Running) -> None:
    got = _report(api, "campaign,day", suffix="/csv")
    assert got.status_code == 200
    rows = list(csv.DictReader(io.StringIO(got.content.decode("utf-8-sig"))))
    assert {(r["campaign"], r["calls"]) for r in rows if r["campaign"]} == {("冬", "2"), ("夏", "1")}
    assert _report(api, "colour").status_code == 422
    assert _report(api, "medium,medium").status_code == 422
    assert _report(api, "medium", since=str(T0 + 10), until=str(T0)).status_code == 422
    assert _report(api, "medium", tz="Mars/Olympus").status_code == 422
    foreign = requests.get(f"{api.base}/api/v1/businesses/alpha/reports/medium",
                           headers=api.auth("bravo"), timeout=10)
    assert foreign.status_code == 404

