"""SIPp around a running server, said once for every e2e test: the tracking number routed to
an operator, a SIPp operator (uas) on a port, and a SIPp caller (uac) through the server."""

from __future__ import annotations

from pathlib import Path

from peers_plugin import sipp_scenario

from mediasrv.demo.server import ServerProcess
from mediasrv.demo.sipp import SippOptions, SippResult, SippRun, run_sipp

NUMBER = "0312345678"

Number = dict[str, object]


def scenario_path(scenario: str) -> str | Path:
    """SIPp's built-in scenarios ("uac", "uas") by name, ours (``*.xml``) from tests/data/sipp."""
    return sipp_scenario(scenario) if scenario.endswith(".xml") else scenario


def number_to(*uris: str, number: str = NUMBER, **extra: object) -> Number:
    """The ``[[numbers]]`` entry routing ``number`` to the operator URIs, in order."""
    entry: Number = {"number": number, "destinations": list(uris)}
    entry.update(extra)
    return entry


def operator_at(port: int, user: str = "operator", transport: str | None = None) -> str:
    """The SIP URI of a SIPp operator listening on ``port`` of loopback."""
    uri = f"sip:{user}@127.0.0.1:{port}"
    return f"{uri};transport={transport}" if transport else uri


async def start_uas(
    workdir: Path,
    port: int,
    calls: int,
    scenario: str = "uas",
    name: str = "uas",
    timeout_s: float = 60,
    **options: object,
) -> SippRun:
    """A SIPp operator answering ``calls`` calls on ``port``; its files go in workdir/name."""
    opts = SippOptions(
        scenario=scenario_path(scenario),
        name=name,
        local_port=port,
        calls=calls,
        timeout_s=timeout_s,
        **options,  # type: ignore[arg-type]
    )
    return await SippRun.start(opts, workdir / name)


def uac_options(
    server: ServerProcess,
    calls: int = 1,
    scenario: str = "uac",
    service: str = NUMBER,
    name: str = "uac",
    timeout_s: float = 30,
    **options: object,
) -> SippOptions:
    """A SIPp caller placing ``calls`` calls to ``service`` through ``server``."""
    return SippOptions(
        scenario=scenario_path(scenario),
        name=name,
        remote=server.sip_uri_host,
        service=service,
        calls=calls,
        timeout_s=timeout_s,
        **options,  # type: ignore[arg-type]
    )


async def call_through(
    server: ServerProcess, workdir: Path, calls: int = 1, **options: object
) -> SippResult:
    """Run a SIPp caller (see ``uac_options``) to its end; its files go in workdir/name."""
    opts = uac_options(server, calls, **options)  # type: ignore[arg-type]
    return await run_sipp(opts, workdir / opts.name)


def calls_of(server: ServerProcess, number: str = NUMBER, limit: int = 100) -> list[Number]:
    """The call-log rows of one tracking number, newest first: what one scenario on a shared
    server made, whatever the others did."""
    return [row for row in server.calls(limit) if national(row["tracking_number"]) == number]


def national(number: object) -> str:
    """A Japanese number as dialled at home: the call log may hold it as E.164 (plan mode)."""
    text = str(number)
    return "0" + text[3:] if text.startswith("+81") else text
