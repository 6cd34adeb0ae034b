"""The SIPp scenarios in tests/data/sipp, proven UAC -> UAS directly (no server between)."""

from __future__ import annotations

from pathlib import Path

import pytest
from peers_plugin import StartSipp, needs_sipp, sipp_scenario

from mediasrv.demo.sipp import SippError, SippOptions, SippRun, SippStats, build_command

pytestmark = [pytest.mark.e2e, needs_sipp]

PCAP = "/usr/share/sip-tester/g711a.pcap"


async def _pair(start_sipp: StartSipp, uac: str, uas: str, calls: int = 1,
                hold_ms: int = 100, **uac_opts: object) -> tuple[SippRun, SippRun]:
    server = await start_sipp(uas, name="uas", calls=calls, hold_ms=hold_ms, timeout_s=20)
    client = await start_sipp(uac, name="uac", remote=f"127.0.0.1:{server.opts.local_port}",
                              service="0312345678", calls=calls, rate=20, hold_ms=hold_ms,
                              timeout_s=20, **uac_opts)
    return client, server


@pytest.mark.parametrize("uas", ["uas.xml", "uas_lc.xml", "uas_no180.xml", "uas"])
async def test_basic_calls_succeed(start_sipp: StartSipp, uas: str) -> None:
    client, server = await _pair(start_sipp, "uac.xml", uas, calls=5)
    done, served = await client.wait(), await server.wait()
    assert done.ok, done.describe() + done.errors_tail()
    assert (done.stats.successful, done.stats.failed) == (5, 0)
    assert served.stats.successful == 5
    assert done.stats.retransmissions == 0


async def test_upper_and_lower_case_contact(start_sipp: StartSipp) -> None:
    for uas, expected in (("uas.xml", "transport=UDP"), ("uas_lc.xml", "transport=udp")):
        server = await start_sipp(uas, name=f"uas_{expected[-3:]}", timeout_s=20)
        client = await start_sipp("uac.xml", name=f"uac_{expected[-3:]}", trace_msg=True,
                                  remote=f"127.0.0.1:{server.opts.local_port}", timeout_s=20)
        done = await client.wait()
        await server.stop()  # its call is over; skip the 4 s timewait
        assert done.ok, done.errors_tail()
        contacts = [line for line in done.files.messages.read_text().splitlines()
                    if line.startswith("Contact: <sip:127.0.0.1")]
        assert contacts and all(expected in line for line in contacts)


async def test_media_uac_checks_the_answer_and_streams(start_sipp: StartSipp) -> None:
    client, server = await _pair(start_sipp, "uac_media.xml", "uas.xml", calls=2, hold_ms=500,
                                 keys={"pcap": PCAP}, trace_msg=True)
    done, served = await client.wait(), await server.wait()
    assert done.ok, done.errors_tail()
    assert served.ok
    messages = done.files.messages.read_text()
    # The ACK carries what the ereg actions extracted from the SDP answer.
    assert f"X-Answered-Media: 127.0.0.1:{server.opts.media_port}" in messages


async def test_media_uac_rejects_an_odd_rtp_port(start_sipp: StartSipp) -> None:
    server = await start_sipp("uas.xml", name="uas", media_port=31001, timeout_s=10)
    client = await start_sipp("uac_media.xml", name="uac", keys={"pcap": PCAP},
                              remote=f"127.0.0.1:{server.opts.local_port}", timeout_s=10)
    done = await client.wait()
    await server.stop()
    assert done.stats.failed == 1
    assert done.stats.count("FailedRegexpDoesntMatch(C)") == 1


async def test_busy_uas_gives_486(start_sipp: StartSipp) -> None:
    client, server = await _pair(start_sipp, "uac_expect_failure.xml", "uas_486.xml", calls=3,
                                 trace_logs=True)
    done, served = await client.wait(), await server.wait()
    assert done.ok, done.errors_tail()
    assert served.ok, served.errors_tail()
    assert done.final_codes() == [486, 486, 486]


async def test_cancel_to_a_uas_that_never_answers(start_sipp: StartSipp) -> None:
    client, server = await _pair(start_sipp, "uac_cancel.xml", "uas_noanswer.xml", calls=2)
    done, served = await client.wait(), await server.wait()
    assert done.ok, done.errors_tail()
    assert served.ok, served.errors_tail()
    assert served.stats.successful == 2


async def test_uas_hangs_up_itself(start_sipp: StartSipp) -> None:
    client, server = await _pair(start_sipp, "uac_wait_bye.xml", "uas_bye.xml", calls=2,
                                 trace_msg=True)
    done, served = await client.wait(), await server.wait()
    assert done.ok, done.errors_tail()
    assert served.ok, served.errors_tail()
    bye = [line for line in done.files.messages.read_text().splitlines()
           if line.startswith("BYE ")]
    assert len(bye) == 2


async def test_unanswered_uac_is_bounded_and_counted(start_sipp: StartSipp,
                                                     tmp_path: Path) -> None:
    # Nobody listens: SIPp retransmits INVITE until Timer B (RFC 3261 17.1.1.2) fails it.
    from mediasrv.demo.sipp import free_port

    client = await start_sipp("uac.xml", name="uac", remote=f"127.0.0.1:{free_port()}",
                              timeout_s=8, extra=["-recv_timeout", "2000"])
    done = await client.wait(30)
    assert done.stats.failed == 1
    assert done.stats.retransmissions > 0
    assert not done.ok


def test_command_is_bounded(tmp_path: Path) -> None:
    from mediasrv.demo.sipp import SippFiles

    opts = SippOptions(scenario=sipp_scenario("uac"), remote="127.0.0.1:5060", local_port=5071,
                       media_port=20000, calls=10, rate=5, limit=3, hold_ms=1000,
                       timeout_s=30, cpu=0)
    argv = build_command(opts, SippFiles.in_dir(tmp_path, "x"))
    assert argv[:3] == ["taskset", "-c", "0"]
    assert argv[3:7] == ["timeout", "-k", "5", "40"]
    for flag, value in (("-m", "10"), ("-r", "5"), ("-l", "3"), ("-d", "1000"),
                        ("-timeout", "30s"), ("-p", "5071")):
        assert argv[argv.index(flag) + 1] == value
    assert "-nostdin" in argv


def test_missing_scenario_and_stats_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SippError, match="scenario not found"):
        SippOptions(scenario=tmp_path / "nope.xml").scenario_args()
    with pytest.raises(SippError, match="no SIPp statistics"):
        SippStats.from_csv(tmp_path / "missing.csv")


async def test_media_uac_streams_pcma_to_the_answered_port(start_sipp: StartSipp) -> None:
    import socket

    from mediasrv.demo.sipp import free_port_block

    sink_port = free_port_block(2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", sink_port))
        sink.setblocking(False)
        server = await start_sipp("uas_sink.xml", name="uas", keys={"sink_port": str(sink_port)},
                                  timeout_s=20)
        client = await start_sipp("uac_media.xml", name="uac", keys={"pcap": PCAP},
                                  remote=f"127.0.0.1:{server.opts.local_port}", hold_ms=1000,
                                  timeout_s=20)
        done = await client.wait()
        await server.stop()
        packets = []
        while True:
            try:
                packets.append(sink.recv(2048))
            except BlockingIOError:
                break
    assert done.ok, done.errors_tail()
    # 30 ms PCMA frames for about the 1 s hold (RFC 3550 header, then 240 bytes of A-law).
    assert len(packets) >= 25
    assert {p[1] & 0x7F for p in packets} == {8}
    assert {len(p) for p in packets} == {12 + 240}


async def test_calls_over_tcp(start_sipp: StartSipp) -> None:
    server = await start_sipp("uas", name="uas", transport="t1", calls=3, timeout_s=20)
    client = await start_sipp("uac", name="uac", transport="t1", calls=3, rate=10,
                              remote=f"127.0.0.1:{server.opts.local_port}", timeout_s=20)
    done = await client.wait()
    await server.stop()
    assert done.ok, done.errors_tail()
    assert done.stats.successful == 3
