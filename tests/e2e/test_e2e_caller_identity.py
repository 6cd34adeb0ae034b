"""Issue 11 with SIPp as the carrier: P-Asserted-Identity from a trusted trunk gives the
caller; ``Privacy: id`` makes it anonymous (RFC 3323/3325); the From display name is kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import StartServer
from peers_plugin import needs_sipp, sipp_scenario
from sipp_calls import NUMBER, number_to, operator_at, start_uas
from test_e2e_phones import wait_rows

from mediasrv.demo.sipp import SippOptions, free_port, run_sipp

pytestmark = [needs_sipp, pytest.mark.e2e]


async def test_trusted_pai_and_privacy_id_through_sipp(
    tmp_path: Path, start_server: StartServer
) -> None:
    uas_port = free_port()
    trunk = {"name": "carrier", "addresses": ["127.0.0.1/32"], "trust_asserted_identity": True}
    number = number_to(operator_at(uas_port), business="acme", medium="web")
    server = start_server(numbers=[number], trunks=[trunk])
    uas = await start_uas(tmp_path, uas_port, 2)
    try:
        runs = [
            {"display": "札幌支店", "user": "0312345678", "pai": "+81112111111", "privacy": "none"},
            {"display": "Yamada", "user": "0312345678", "pai": "+81112111111", "privacy": "id"},
        ]
        for n, keys in enumerate(runs, 1):
            result = await run_sipp(
                SippOptions(
                    scenario=sipp_scenario("uac_identity.xml"), name=f"uac{n}",
                    remote=server.sip_uri_host, service=NUMBER, calls=1, hold_ms=100, keys=keys,
                ),
                tmp_path / f"uac{n}",
            )
            assert result.ok, result
            rows = await wait_rows(server, n)
            assert len(rows) == n
    finally:
        await asyncio.wait_for(uas.wait(30), 40)
    private, asserted = rows  # newest first
    assert asserted["caller_number"] == "+81112111111"  # the PAI, not From's 03 number
    assert asserted["caller_source"] == "p-asserted-identity"
    assert asserted["caller_display"] == "札幌支店"
    assert asserted["prefecture"] == "北海道"
    assert private["caller_number"] == "anonymous" and private["caller_kind"] == "anonymous"
    assert private["caller_display"] == "" and private["prefecture"] == "unknown"
    assert private["duplicate"] is False and private["first_time"] is None
