"""Tenant isolation over EVERY v1 operation (issue 12 §4), generated from the operation list
itself so a new resource cannot be left out: a business token gets 404 (never 403, never
the data) for another business and for another business's object ids, admin-only operations
are 403 for it, and the other business's data is unchanged afterwards."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from apiserver import NUMBERS, Running

# A valid body per operation, so that a 404 cannot come from a request refused for its body.
BODIES: dict[str, Any] = {
    "putConfig": {"business": {"slug": "bravo"}},
    "applyBusinessFile": {"text": '[business]\nslug = "bravo"\n'},
    "validateBusinessFile": {"text": '[business]\nslug = "bravo"\n'},
    "putBlocklist": {"numbers": []},
    "putNumber": {"medium": "stolen"},
    "putOperator": {"sip": "sip:evil@127.0.0.1:5990"},
    "putSchedule": {"week": []},
    "createWebhook": {"url": "https://evil.example/h"},
    "patchWebhook": {"enabled": False},
    "recoverWebhook": {"since": 0},
    "simulateNumber": {"caller": "09011112222"},
}
RAW_BODIES = {"putPrompt": ("audio/wav", b"RIFF")}
SECTION_KEYS = {"numbers": NUMBERS["bravo"], "operators": "front", "schedules": "office"}


def _fill(path: str, api: Running, business: str, owner: str) -> str:
    """The path with ``business`` and the ids of ``owner``'s objects."""
    t = api.tenants[owner]
    values = {
        "business": business,
        "call_id": t.voicemail_call if "voicemails" in path else t.recorded_call,
        "endpoint_id": t.endpoint_id,
        "delivery_id": str(t.delivery_id),
        "name": t.prompt,
        "version": str(t.version),
        "token_id": t.token_id,
        "number": "0312345678",
        "group_by": "medium,day",
    }
    m = re.search(r"/(numbers|operators|schedules)/\{key\}", path)
    if m:
        values["key"] = SECTION_KEYS[m.group(1)]
    return re.sub(r"\{(\w+)\}", lambda g: values[g.group(1)], path)


def _call(api: Running, who: str, method: str, path: str, op_id: str) -> requests.Response:
    headers = {**api.auth(who), "If-Match": "*"}
    kw: dict[str, Any] = {}
    if op_id in BODIES:
        kw["json"] = BODIES[op_id]
    if op_id in RAW_BODIES:
        headers["Content-Type"], kw["data"] = RAW_BODIES[op_id]
    return requests.request(method, api.base + path, headers=headers, timeout=20, **kw)


def _tenant_ops(api: Running) -> list[tuple[str, str, str]]:
    return [op for op in api.ops if "{business}" in op[1]]


def _bravo_state(api: Running) -> dict[str, Any]:
    h = api.auth("bravo")
    b = f"{api.base}/api/v1/businesses/bravo"
    return {
        "config": requests.get(b + "/config", headers=h, timeout=10).json(),
        "versions": requests.get(b + "/versions", headers=h, timeout=10).json(),
        "webhooks": requests.get(b + "/webhooks", headers=h, timeout=10).json(),
        "deliveries": requests.get(
            f"{b}/webhooks/{api.tenants['bravo'].endpoint_id}/deliveries", headers=h, timeout=10
        ).json(),
        "prompts": requests.get(b + "/prompts", headers=h, timeout=10).json(),
        "calls": requests.get(b + "/calls", headers=h, timeout=10).json(),
    }


def test_every_operation_is_covered(api: Running) -> None:
    ids = {op_id for _, _, op_id in api.ops}
    assert len(_tenant_ops(api)) >= 35
    assert {"listCalls", "getRecording", "putPrompt", "createWebhook", "replayDelivery",
            "putSchedule", "putBlocklist", "applyBusinessFile", "getTranscript"} <= ids


def test_another_business_is_404_for_every_operation(api: Running) -> None:
    before = _bravo_state(api)
    leaks = []
    for method, path, op_id in _tenant_ops(api):
        resp = _call(api, "alpha", method, _fill(path, api, "bravo", "bravo"), op_id)
        bravo = api.tenants["bravo"]
        if resp.status_code != 404 or bravo.endpoint_id in resp.text or "bravo00" in resp.text:
            leaks.append((op_id, resp.status_code, resp.text[:120]))
        elif not resp.headers["Content-Type"].startswith("application/problem+json"):
            leaks.append((op_id, "not problem+json"))
    assert leaks == []
    assert _bravo_state(api) == before


def test_another_business_ids_under_ones_own_business_are_404(api: Running) -> None:
    """alpha's business in the path, bravo's call / endpoint / delivery ids: not found."""
    before = _bravo_state(api)
    checked = []
    for method, path, op_id in _tenant_ops(api):
        if not re.search(r"\{(call_id|endpoint_id|delivery_id)\}", path):
            continue
        resp = _call(api, "alpha", method, _fill(path, api, "alpha", "bravo"), op_id)
        assert resp.status_code == 404, (op_id, resp.status_code, resp.text[:200])
        checked.append(op_id)
    assert len(checked) >= 14
    assert _bravo_state(api) == before


def test_own_objects_are_reachable_with_own_token(api: Running) -> None:
    """The same requests with bravo's own token do not 404 (the 404s above are isolation,
    not broken routes)."""
    for method, path, op_id in _tenant_ops(api):
        if method != "GET":
            continue
        resp = _call(api, "bravo", method, _fill(path, api, "bravo", "bravo"), op_id)
        assert resp.status_code in (200, 206), (op_id, resp.status_code, resp.text[:200])


def test_lists_show_only_ones_own(api: Running) -> None:
    h = api.auth("alpha")
    b = f"{api.base}/api/v1/businesses"
    assert [x["slug"] for x in requests.get(b, headers=h, timeout=10).json()["items"]] == ["alpha"]
    calls = requests.get(b + "/alpha/calls", headers=h, timeout=10).json()["items"]
    assert calls and {c["business"] for c in calls} == {"alpha"}
    hooks = requests.get(b + "/alpha/webhooks", headers=h, timeout=10).json()["items"]
    assert api.tenants["bravo"].endpoint_id not in {e["endpoint_id"] for e in hooks}
    admin = requests.get(b, headers=api.auth("admin"), timeout=10).json()["items"]
    assert {x["slug"] for x in admin} == {"alpha", "bravo"}


@pytest.mark.parametrize("path", ["/api/v1/tokens", "/api/v1/calls", "/api/v1/calls.csv"])
def test_admin_routes_are_403_for_a_business_token(api: Running, path: str) -> None:
    resp = requests.get(api.base + path, headers=api.auth("alpha"), timeout=10)
    assert resp.status_code == 403
    assert "insufficient_scope" in resp.headers["WWW-Authenticate"]


def test_admin_only_operations_refuse_a_business_token(api: Running) -> None:
    for method, path, op_id in api.ops:
        if path.startswith("/api/v1/tokens") or op_id == "createBusiness":
            resp = _call(api, "alpha", method, _fill(path, api, "alpha", "alpha"), op_id)
            assert resp.status_code == 403, op_id
