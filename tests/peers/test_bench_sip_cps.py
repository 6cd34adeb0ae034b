"""bench/sip_cps.py's own logic: the rate search, the pass rule, the /proc readers."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mediasrv.demo.sipp import SippFiles, SippResult, SippStats

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sip_cps.py"


@pytest.fixture(scope="module")
def sip_cps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sip_cps", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sip_cps"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("capacity", [0, 40, 99, 100, 252, 708, 1234])
async def test_search_finds_the_capacity(sip_cps: ModuleType, capacity: int) -> None:
    tried: list[int] = []

    async def check(rate: int) -> bool:
        tried.append(rate)
        return rate <= capacity

    found = await sip_cps.find_max_rate(check, start=50, grow=1.5, max_rate=5000, refine=8)
    assert found <= capacity
    assert capacity - found <= max(5, capacity // 20) or (found == 0 and capacity < 50)
    assert len(tried) < 20


async def test_search_stops_at_the_maximum(sip_cps: ModuleType) -> None:
    async def always(rate: int) -> bool:
        return True

    assert await sip_cps.find_max_rate(always, start=100, grow=2.0, max_rate=1000,
                                       refine=3) == 800


def _result(ok: int, failed: int, retrans: int, tmp: Path) -> SippResult:
    stats = SippStats(successful=ok, failed=failed, retransmissions=retrans, created=ok + failed,
                      current=0, fields={})
    return SippResult(returncode=0 if not failed else 1, stats=stats,
                      files=SippFiles.in_dir(tmp, "x"))


def test_a_trial_passes_only_clean(sip_cps: ModuleType, tmp_path: Path) -> None:
    def trial(uac: tuple[int, int, int], uas_retrans: int = 0) -> bool:
        return bool(sip_cps.Trial("t", 10, 100, _result(*uac, tmp_path),
                                  _result(100, 0, uas_retrans, tmp_path), 1.0, 1).passed)

    assert trial((100, 0, 0))
    assert not trial((99, 1, 0))
    assert not trial((100, 0, 3))
    assert not trial((100, 0, 0), uas_retrans=1)
    assert not trial((90, 0, 0))  # calls missing (e.g. SIPp stopped by its timeout)


def test_proc_readers_see_this_process(sip_cps: ModuleType) -> None:
    assert sip_cps.cpu_seconds(os.getpid()) > 0
    assert sip_cps.status_kb(os.getpid(), "VmRSS") > 1000
    assert sip_cps.status_kb(os.getpid(), "NoSuchKey") == 0


def test_mediasrv_config_routes_the_number_to_the_uas(sip_cps: ModuleType,
                                                      tmp_path: Path) -> None:
    from mediasrv.config import load_config

    target = sip_cps.MediasrvTarget(["mediasrv"], "off", (10000, 60998))
    path = tmp_path / "bench.toml"
    path.write_text(target.config(5090))
    config = load_config(str(path), {})  # the server's own loader accepts it
    assert [n.number for n in config.numbers] == [sip_cps.NUMBER]
    assert list(config.numbers[0].destinations) == ["sip:uas@127.0.0.1:5090"]
    assert config.media.no_rtp_timeout == 3600.0
