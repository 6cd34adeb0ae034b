"""Conventions of the v1 API (issue 12 §2) over real HTTP: problem+json naming the field,
unknown fields refused, 413, 405 with Allow, Idempotency-Key replay and reuse, ETag /
If-Match (428, 412), cursor pagination, and HTTP Range on downloads (206, 416, If-Range)."""

from __future__ import annotations

import io
import json
import re
import wave
from concurrent.futures import ThreadPoolExecutor

import requests
from apiserver import Running

PROBLEM = "application/problem+json"


def _problem(resp: requests.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == status
    assert str(body["type"]).startswith("urn:mediasrv:problem:")
    assert body["title"] and body["detail"]
    return dict(body)


def test_unknown_body_field_is_refused_by_name(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/webhooks"
    resp = requests.post(url, json={"url": "https://x.example/h", "colour": "red"},
                         headers=api.auth("alpha"), timeout=10)
    body = _problem(resp, 422)
    assert body["field"] == "colour"
    assert "colour" in str(body["detail"])


def test_missing_and_mistyped_fields_are_named(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/webhooks"
    assert _problem(requests.post(url, json={}, headers=api.auth("alpha"), timeout=10),
                    422)["field"] == "url"
    bad = requests.post(url, json={"url": 5}, headers=api.auth("alpha"), timeout=10)
    assert _problem(bad, 422)["field"] == "url"
    q = requests.get(f"{api.base}/api/v1/businesses/alpha/calls?limit=abc",
                     headers=api.auth("alpha"), timeout=10)
    assert _problem(q, 422)["field"] == "query:limit"
    unknown = requests.get(f"{api.base}/api/v1/businesses/alpha/calls?colour=1",
                           headers=api.auth("alpha"), timeout=10)
    assert _problem(unknown, 422)["field"] == "query:colour"


def test_business_file_errors_name_the_key_and_line(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/file/validate"
    text = '[business]\nslug = "alpha"\n\n[[operators]]\nname = "x"\nsip = "not a uri"\n'
    body = _problem(requests.post(url, json={"text": text}, headers=api.auth("alpha"),
                                  timeout=10), 422)
    assert str(body["field"]).startswith("operators")
    assert "<request>:6:" in str(body["detail"])
    ok = requests.post(url, json={"text": '[business]\nslug = "alpha"\n'},
                       headers=api.auth("alpha"), timeout=10)
    assert ok.status_code == 200 and ok.json()["valid"] is True


def test_body_over_the_limit_is_413(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/file/validate"
    huge = {"text": "#" * 70_000}  # the test server's limit is 64 KiB
    _problem(requests.post(url, json=huge, headers=api.auth("alpha"), timeout=10), 413)


def test_wrong_method_is_405_with_allow(api: Running) -> None:
    resp = requests.patch(f"{api.base}/api/v1/businesses/alpha/calls",
                          headers=api.auth("alpha"), timeout=10)
    _problem(resp, 405)
    assert "GET" in resp.headers["Allow"]


def test_no_token_is_401_problem_with_challenge(api: Running) -> None:
    resp = requests.get(f"{api.base}/api/v1/businesses/alpha", timeout=10)
    _problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_idempotency_key_replays_and_refuses_a_different_body(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/webhooks"
    headers = {**api.auth("alpha"), "Idempotency-Key": "create-hook-1"}
    body = {"url": "https://crm.example/hook", "description": "crm"}
    first = requests.post(url, json=body, headers=headers, timeout=10)
    assert first.status_code == 201
    again = requests.post(url, json=body, headers=headers, timeout=10)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    listed = requests.get(url, headers=api.auth("alpha"), timeout=10).json()["items"]
    assert sum(1 for e in listed if e["url"] == body["url"]) == 1  # made once
    other = requests.post(url, json={**body, "description": "other"}, headers=headers, timeout=10)
    assert _problem(other, 422)["field"] == "header:Idempotency-Key"
    # the key is per token: bravo's same key is a first use
    mine = requests.post(f"{api.base}/api/v1/businesses/bravo/webhooks", json=body,
                         headers={**api.auth("bravo"), "Idempotency-Key": "create-hook-1"},
                         timeout=10)
    assert mine.status_code == 201 and mine.json()["endpoint_id"] != first.json()["endpoint_id"]


def test_if_match_required_and_checked_on_configuration(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/operators/night"
    op = {"sip": "sip:night@127.0.0.1:5997"}
    _problem(requests.put(url, json=op, headers=api.auth("alpha"), timeout=10), 428)
    stale = requests.put(url, json=op, headers={**api.auth("alpha"), "If-Match": '"v0-x"'},
                         timeout=10)
    _problem(stale, 412)
    etag = requests.get(f"{api.base}/api/v1/businesses/alpha/operators",
                        headers=api.auth("alpha"), timeout=10).headers["ETag"]
    ok = requests.put(url, json=op, headers={**api.auth("alpha"), "If-Match": etag}, timeout=10)
    assert ok.status_code == 200 and ok.json()["changed"] is True
    assert ok.headers["ETag"] != etag
    # the second editor, still holding the old ETag, cannot overwrite the first one's change
    lost = requests.put(url, json={"sip": "sip:other@127.0.0.1:5996"},
                        headers={**api.auth("alpha"), "If-Match": etag}, timeout=10)
    _problem(lost, 412)
    got = requests.get(url, headers=api.auth("alpha"), timeout=10)
    assert got.json() == {"name": "night", **op}
    bad = requests.put(url, json={"sip": "nonsense"},
                       headers={**api.auth("alpha"), "If-Match": got.headers["ETag"]}, timeout=10)
    assert str(_problem(bad, 422)["field"]).startswith("operators/")
    gone = requests.delete(url, headers={**api.auth("alpha"), "If-Match": got.headers["ETag"]},
                           timeout=10)
    assert gone.status_code == 200
    assert requests.get(url, headers=api.auth("alpha"), timeout=10).status_code == 404


def test_schedule_override_dates_round_trip_as_json(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/schedules/office"
    got = requests.get(url, headers=api.auth("alpha"), timeout=10)
    sched = got.json()
    sched["overrides"].append({"label": "obon", "from": "2027-08-13", "to": "2027-08-16",
                               "hours": ["10:00-12:00"]})
    put = requests.put(url, json=sched, headers={**api.auth("alpha"),
                                                 "If-Match": got.headers["ETag"]}, timeout=10)
    assert put.status_code == 200, put.text
    again = requests.get(url, headers=api.auth("alpha"), timeout=10).json()
    assert again["overrides"][-1]["from"] == "2027-08-13"
    versions = requests.get(f"{api.base}/api/v1/businesses/alpha/versions",
                            headers=api.auth("alpha"), timeout=10).json()["items"]
    assert versions[-1]["source"] == "api"


def test_cursor_pages_cover_the_log_once_in_order(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/calls"
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = requests.get(url, params=params, headers=api.auth("alpha"), timeout=10).json()
        seen += [c["call_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(api.tenants["alpha"].call_ids, reverse=True)
    bad = requests.get(url, params={"cursor": "bm9wZQ"}, headers=api.auth("alpha"), timeout=10)
    assert _problem(bad, 422)["field"] == "query:cursor"


def test_recording_download_supports_range(api: Running) -> None:
    call = api.tenants["alpha"].recorded_call
    url = f"{api.base}/api/v1/businesses/alpha/calls/{call}/recording"
    full = requests.get(url, headers=api.auth("alpha"), timeout=10)
    assert full.status_code == 200 and full.headers["Accept-Ranges"] == "bytes"
    with wave.open(io.BytesIO(full.content)) as w:
        assert w.getnchannels() == 2
    size = len(full.content)
    part = requests.get(url, headers={**api.auth("alpha"), "Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.content == full.content[100:200]
    tail = requests.get(url, headers={**api.auth("alpha"), "Range": "bytes=-10"}, timeout=10)
    assert tail.status_code == 206 and tail.content == full.content[-10:]
    beyond = requests.get(url, headers={**api.auth("alpha"), "Range": f"bytes={size + 10}-"},
                          timeout=10)
    assert beyond.status_code == 416
    assert re.fullmatch(rf"bytes \*/{size}", beyond.headers["Content-Range"])
    etag = full.headers["ETag"]
    same = requests.get(url, headers={**api.auth("alpha"), "Range": "bytes=0-9",
                                      "If-Range": etag}, timeout=10)
    assert same.status_code == 206 and len(same.content) == 10
    changed = requests.get(url, headers={**api.auth("alpha"), "Range": "bytes=0-9",
                                         "If-Range": '"not-the-etag"'}, timeout=10)
    assert changed.status_code == 200 and changed.content == full.content


def test_voicemail_and_prompt_audio_support_range(api: Running) -> None:
    t = api.tenants["alpha"]
    vm = f"{api.base}/api/v1/businesses/alpha/voicemails/{t.voicemail_call}/audio"
    assert requests.get(vm, headers={**api.auth("alpha"), "Range": "bytes=0-43"},
                        timeout=10).status_code == 206
    listed = requests.get(f"{api.base}/api/v1/businesses/alpha/voicemails",
                          headers=api.auth("alpha"), timeout=10).json()["items"]
    assert [c["call_id"] for c in listed] == [t.voicemail_call]
    audio = f"{api.base}/api/v1/businesses/alpha/prompts/{t.prompt}/audio"
    part = requests.get(audio, headers={**api.auth("alpha"), "Range": "bytes=0-3"}, timeout=10)
    assert part.status_code == 206 and part.content == b"RIFF"


def test_prompt_upload_is_converted(api: Running) -> None:
    from apiserver import write_wav

    src = api.root / "upload.wav"
    write_wav(src, 0.4, 44100, 2)
    url = f"{api.base}/api/v1/businesses/alpha/prompts/hello"
    put = requests.put(url, data=src.read_bytes(),
                       headers={**api.auth("alpha"), "Content-Type": "audio/wav"}, timeout=30)
    assert put.status_code == 201, put.text
    assert abs(put.json()["seconds"] - 0.4) < 0.05
    got = requests.get(url + "/audio", headers=api.auth("alpha"), timeout=10)
    with wave.open(io.BytesIO(got.content)) as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1)
    junk = requests.put(url, data=b"not a wav at all",
                        headers={**api.auth("alpha"), "Content-Type": "audio/wav"}, timeout=10)
    assert _problem(junk, 422)["field"] == "body"


def test_openapi_is_3_1_with_webhooks_and_every_route(api: Running) -> None:
    doc = requests.get(f"{api.base}/api/v1/openapi.json", headers=api.auth("alpha"),
                       timeout=10).json()
    assert doc["openapi"].startswith("3.1")
    assert {"call.completed", "call.updated", "voicemail.created"} <= set(doc["webhooks"])
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if path.startswith("/api/v1/businesses") or path.startswith("/api/v1/tokens"):
                assert "operationId" in op and "401" in op["responses"], (method, path)


def test_two_editors_with_the_same_etag_one_wins(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/blocklist"
    etag = requests.get(url, headers=api.auth("alpha"), timeout=10).headers["ETag"]

    def put(number: str) -> int:
        return requests.put(url, json={"numbers": [number]},
                            headers={**api.auth("alpha"), "If-Match": etag},
                            timeout=20).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(put, ["+819011110001", "+819011110002", "+819011110003",
                                      "+819011110004"]))
    assert codes == [200, 412, 412, 412]


NASTY_CONFIGS = [
    {"business": "alpha"},
    {"business": {"slug": "alpha"}, "operators": "x"},
    {"business": {"slug": "alpha"}, "operators": [1, None, {"name": []}]},
    {"business": {"slug": "alpha"}, "schedules": [{"name": "s", "overrides": "x"}]},
    {"business": {"slug": "alpha"}, "schedules": [{"name": "s", "overrides": [{"from": 5}]}]},
    {"business": {"slug": "alpha"}, "schedules": {"name": "s"}},
    {"business": {"slug": "alpha"}, "numbers": [{"number": {"a": 1}}]},
    {"business": {"slug": "alpha"}, "blocklist": {"numbers": "+81"}},
    {"business": {"slug": "alpha", "duplicate_window": 1e400}},
    {"business": {"slug": "bravo"}},
]


def test_malformed_configuration_is_422_never_500(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/config"
    for bad in NASTY_CONFIGS:
        etag = requests.get(url, headers=api.auth("alpha"), timeout=10).headers["ETag"]
        resp = requests.put(url, data=json.dumps(bad).replace("Infinity", "1e400"),
                            headers={**api.auth("alpha"), "If-Match": etag,
                                     "Content-Type": "application/json"}, timeout=10)
        assert resp.status_code == 422, (bad, resp.status_code, resp.text[:300])
        assert resp.json()["field"]
    deep = "[" * 30_000 + "]" * 30_000  # under the 64 KiB limit: the parser's depth
    resp = requests.put(url, data=deep, headers={**api.auth("alpha"), "If-Match": "*",
                                                 "Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400


def test_webhook_links_are_readable_with_the_business_token(api: Running) -> None:
    from mediasrv.outputs.call_events import call_links
    from mediasrv.outputs.calllog import CallRecord

    call = api.tenants["alpha"].recorded_call
    rec = CallRecord(call, "x", "+81311110000", "+819012345678", business="alpha",
                     recording_path="/x.wav")
    for name, path in call_links(rec).items():
        resp = requests.get(api.base + path, headers=api.auth("alpha"), timeout=10)
        assert resp.status_code == 200, (name, path, resp.status_code)


def test_chunked_bodies_are_read_whole_and_bounded(api: Running) -> None:
    """A body sent in many small chunks (no Content-Length) is read to its end, and one that
    passes the limit is 413 without being read whole."""
    from apiserver import write_wav

    src = api.root / "chunked.wav"
    write_wav(src, 1.5, 16000, 1)
    data = src.read_bytes()

    def pieces(blob: bytes, size: int = 997):
        for i in range(0, len(blob), size):
            yield blob[i:i + size]

    url = f"{api.base}/api/v1/businesses/alpha/prompts/chunked"
    put = requests.put(url, data=pieces(data), timeout=30,
                       headers={**api.auth("alpha"), "Content-Type": "audio/wav"})
    assert put.status_code == 201, put.text
    assert abs(put.json()["seconds"] - 1.5) < 0.05
    big = requests.post(f"{api.base}/api/v1/businesses/alpha/file/validate",
                        data=pieces(b'{"text": "' + b"#" * 80_000 + b'"}'), timeout=30,
                        headers={**api.auth("alpha"), "Content-Type": "application/json"})
    assert big.status_code == 413


def test_unknown_configuration_key_is_named(api: Running) -> None:
    url = f"{api.base}/api/v1/businesses/alpha/operators/front"
    got = requests.get(url, headers=api.auth("alpha"), timeout=10)
    resp = requests.put(url, json={**got.json(), "colour": "red"},
                        headers={**api.auth("alpha"), "If-Match": got.headers["ETag"]}, timeout=10)
    body = _problem(resp, 422)
    assert str(body["field"]).endswith("colour") and "colour" in str(body["detail"])
