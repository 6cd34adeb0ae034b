"""Callback-email tracking (issue 12 §5): leases kept in SQLite across a restart, the
number an email shows, and the routing of a call to a callback number."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mediasrv.business_file import load_business_text
from mediasrv.callback_routing import CallbackRouter
from mediasrv.calls.business import Business, NumberVersion
from mediasrv.calls.callback import LeaseOutcome
from mediasrv.calls.routing import Route
from mediasrv.config import TrunkConfig, outbound_target
from mediasrv.outputs.callback_store import CallbackLeases

BUSINESS = load_business_text(
    """
[business]
slug = "acme"
[callback]
trunk = "carrier-a"
lease = 3600
[[numbers]]
number = "03-5555-0001"
callback = true
[[numbers]]
number = "03-5555-0002"
callback = true
"""
)
TRUNK = TrunkConfig("carrier-a", outbound_uri="sip:{national}@127.0.0.1:5999")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def business_of(slug: str) -> Business | None:
    return BUSINESS if slug == "acme" else None


def data(caller: str, call_id: str, **more: object) -> dict[str, object]:
    return {"business": "acme", "caller_number": caller, "caller_kind": "mobile",
            "call_id": call_id, "tracking_number": "+81312345678", "medium": "新聞",
            "campaign": "冬", **more}  # fmt: skip


async def test_leases_survive_a_restart_and_expire(tmp_path: Path) -> None:
    clock = Clock()
    counted: list[LeaseOutcome] = []
    leases = CallbackLeases(tmp_path / "m.db", business_of, clock, count=counted.append)
    await leases.open()
    try:
        assert await leases.number_for_email(data("+819011110001", "c1")) == "+81355550001"
        assert await leases.number_for_email(data("+819011110001", "c2")) == "+81355550001"
        assert await leases.number_for_email(data("+819022220002", "c3")) == "+81355550002"
    finally:
        await leases.close()
    assert counted == [LeaseOutcome.NEW, LeaseOutcome.RENEWED, LeaseOutcome.NEW]
    again = CallbackLeases(tmp_path / "m.db", business_of, clock)
    await again.open()
    try:
        lease = again.active("+81355550001")
        assert lease is not None and lease.call.call_id == "c2" and lease.call.medium == "新聞"
        clock.now += 3600
        assert again.active("+81355550001") is None  # expired
    finally:
        await again.close()


async def test_no_number_for_withheld_callers_other_businesses_or_a_full_pool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    leases = CallbackLeases(tmp_path / "m.db", business_of, Clock())
    await leases.open()
    try:
        assert await leases.number_for_email(data("anonymous", "c1", caller_kind="anonymous")) is None
        assert await leases.number_for_email(data("0312", "c2", caller_kind="invalid")) is None
        assert await leases.number_for_email({**data("+819011110001", "c3"), "business": "beta"}) is None
        assert await leases.number_for_email(data("+819011110001", "c4", callback_of="c0")) is None
        await leases.number_for_email(data("+819011110001", "c5"))
        await leases.number_for_email(data("+819022220002", "c6"))
        with caplog.at_level(logging.WARNING, logger="mediasrv.outputs.callback_store"):
            assert await leases.number_for_email(data("+819033330003", "c7")) is None
    finally:
        await leases.close()
    assert any("callback pool exhausted" in r.message for r in caplog.records)


class Lookup:
    def version_for(self, number: str) -> NumberVersion | None:
        e164 = "+81" + number.lstrip("0") if number.startswith("0") else number
        n = BUSINESS.number(e164)
        return NumberVersion(1, BUSINESS, n) if n is not None else None


class Inner:
    def route(self, dialled: str, caller: str) -> Route | None:
        return Route(dialled, business="other") if dialled == "0312345678" else None


async def test_a_leased_number_routes_to_the_caller_through_the_trunk(tmp_path: Path) -> None:
    clock = Clock()
    leases = CallbackLeases(tmp_path / "m.db", business_of, clock)
    await leases.open()
    router = CallbackRouter(Inner(), Lookup(), leases.active,
                            lambda name: TRUNK if name == "carrier-a" else None)  # fmt: skip
    try:
        await leases.number_for_email(data("+819011110001", "c1"))
        route = router.route("0355550001", "09099999999")
        assert route is not None and route.callback_of == "c1"
        assert [d.uri for d in route.destinations] == ["sip:09011110001@127.0.0.1:5999"]
        assert (route.business, route.medium, route.campaign) == ("acme", "新聞", "冬")
        assert route.flags == ("callback",) and route.reject_code == 0
        # never leased: refused, clearly
        refused = router.route("0355550002", "09099999999")
        assert refused is not None and refused.reject_code == 410 and not refused.destinations
        assert refused.flags == ("callback-expired",)
        clock.now += 3600  # the lease ran out
        expired = router.route("0355550001", "09099999999")
        assert expired is not None and expired.reject_code == 410
        # other numbers: the inner router
        other = router.route("0312345678", "09099999999")
        assert other is not None and other.business == "other"
        assert router.route("0399999999", "x") is None
    finally:
        await leases.close()


def test_outbound_uri_placeholders() -> None:
    assert outbound_target("sip:{national}@h", "+81312345678") == "sip:0312345678@h"
    assert outbound_target("sip:{e164}@h", "+81312345678") == "sip:+81312345678@h"
    assert outbound_target("sip:{digits}@h;user=phone", "+81312345678") == "sip:81312345678@h;user=phone"
    assert outbound_target("sip:{national}@h", "+14155550100") == "sip:+14155550100@h"


@pytest.mark.parametrize(
    ("value", "why"),
    [("sip:op@127.0.0.1", "needs {national}"), ("http://{national}", "not a SIP URI"),
     ("7", "expected a string")],
)  # fmt: skip
def test_a_bad_outbound_uri_names_file_line_and_key(tmp_path: Path, value: str, why: str) -> None:
    from mediasrv.config import ConfigError, load_config

    path = tmp_path / "m.toml"
    quoted = value if value.isdigit() else f'"{value}"'
    path.write_text(f'[[trunks]]\nname = "t"\naddresses = ["127.0.0.1"]\noutbound_uri = {quoted}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:4: trunks[0].outbound_uri" in str(info.value) and why in str(info.value)


def test_a_good_outbound_uri_loads(tmp_path: Path) -> None:
    from mediasrv.config import load_config

    path = tmp_path / "m.toml"
    path.write_text('[[trunks]]\nname = "t"\naddresses = ["127.0.0.1"]\n'
                    'outbound_uri = "sip:{national}@127.0.0.1:5090"\n')  # fmt: skip
    trunk = load_config(path).trunk_named("t")
    assert trunk is not None and trunk.outbound_uri == "sip:{national}@127.0.0.1:5090"
