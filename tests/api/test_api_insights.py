"""simulate, number-info and reports (api/v1/reports.py) inside the tenant paths (issue 12 §1): a business token
runs them for its own business, and gets 404 for another's (its path, or its number under
one's own path); they are declared operations, so the OpenAPI document describes them."""

from __future__ import annotations

import requests
from apiserver import NUMBERS, T0, Running


def _url(api: Running, business: str, rest: str) -> str:
    return f"{api.base}/api/v1/businesses/{business}/{rest}"


def test_simulate_explains_the_own_numbers_flow(api: Running) -> None:
    resp = requests.post(_url(api, "alpha", f"numbers/{NUMBERS['alpha']}/simulate"),
                         json={"caller": "090-1234-5678", "at": "2026-12-02 10:00"},
                         headers=api.auth("alpha"), timeout=10)  # fmt: skip
    assert resp.status_code == 200, resp.text
    sim = resp.json()
    assert sim["number"] == NUMBERS["alpha"] and sim["caller"] == "+819012345678"
    assert sim["at"].startswith("2026-12-02T10:00") and sim["version"] >= 1
    assert sim["lines"] and sim["ends"]


def test_simulate_refuses_another_business_number_and_a_bad_time(api: Running) -> None:
    h = api.auth("alpha")
    theirs = requests.post(_url(api, "alpha", f"numbers/{NUMBERS['bravo']}/simulate"),
                           json={}, headers=h, timeout=10)  # fmt: skip
    assert theirs.status_code == 404 and NUMBERS["bravo"] in theirs.text
    assert theirs.headers["Content-Type"].startswith("application/problem+json")
    bad = requests.post(_url(api, "alpha", f"numbers/{NUMBERS['alpha']}/simulate"),
                        json={"at": "tomorrow"}, headers=h, timeout=10)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "body/at"
    unknown = requests.post(_url(api, "alpha", f"numbers/{NUMBERS['alpha']}/simulate"),
                            json={"when": "now"}, headers=h, timeout=10)  # fmt: skip
    assert unknown.status_code == 422 and unknown.json()["field"] == "when"


def test_number_info_on_the_tenant_path(api: Running) -> None:
    resp = requests.get(_url(api, "alpha", "number-info/011-222-3333"),
                        headers=api.auth("alpha"), timeout=10)  # fmt: skip
    assert resp.status_code == 200
    info = resp.json()
    assert info["e164"] == "+81112223333" and info["prefecture"] == "北海道"
    other = requests.get(_url(api, "bravo", "number-info/011-222-3333"),
                         headers=api.auth("alpha"), timeout=10)  # fmt: skip
    assert other.status_code == 404


def test_reports_count_only_the_own_business(api: Running) -> None:
    params = {"since": T0 - 60, "until": T0 + 3600}
    resp = requests.get(_url(api, "alpha", "reports/medium"), params=params,
                        headers=api.auth("alpha"), timeout=10)  # fmt: skip
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["time_zone"] == "Asia/Tokyo"
    assert [(r["medium"], r["calls"]) for r in report["rows"]] == [("web", 3)]
    assert requests.get(_url(api, "bravo", "reports/medium"), params=params,
                        headers=api.auth("alpha"), timeout=10).status_code == 404  # fmt: skip
    bad = requests.get(_url(api, "alpha", "reports/medium,nope"), headers=api.auth("alpha"),
                       timeout=10)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "path:group_by"
    twice = requests.get(_url(api, "alpha", "reports/day,day"), headers=api.auth("alpha"),
                         timeout=10)  # fmt: skip
    assert twice.status_code == 422


def test_the_openapi_document_describes_them(api: Running) -> None:
    doc = requests.get(f"{api.base}/api/v1/openapi.json", headers=api.auth("alpha"),
                       timeout=10).json()  # fmt: skip
    paths = doc["paths"]
    b = "/api/v1/businesses/{business}"
    assert paths[f"{b}/numbers/{{key}}/simulate"]["post"]["operationId"] == "simulateNumber"
    assert paths[f"{b}/number-info/{{number}}"]["get"]["operationId"] == "getNumberInfo"
    assert paths[f"{b}/reports/{{group_by}}"]["get"]["operationId"] == "getReport"
