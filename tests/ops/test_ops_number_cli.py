"""``mediasrv number-info`` and ``mediasrv calls recompute`` (issue 11)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mediasrv.calls.caller_id import number_info
from mediasrv.cli import main
from mediasrv.outputs.attributes import apply_caller
from mediasrv.outputs.calllog import CallLogStore, CallRecord, Disposition

T0 = 1_767_193_200.0  # 2026-01-01 00:00 JST


def test_number_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["number-info", "--json", "011-211-1111"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["e164"], info["kind"], info["prefecture"]) == ("+81112111111", "fixed", "北海道")
    assert main(["number-info", "090-1234-5678"]) == 0
    out = capsys.readouterr().out
    assert "mobile" in out and "mobile numbers carry no region" in out


def test_recompute_after_a_window_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def fill() -> None:
        store = CallLogStore(tmp_path / "mediasrv.db")
        await store.open()
        for n, offset in enumerate((0.0, 2 * 86400.0)):  # two days apart
            rec = CallRecord(
                f"c{n}", f"s{n}", "0311111111", "", business="acme", start_time=T0 + offset,
                disposition=Disposition.ANSWERED, talk_seconds=90.0,
            )  # fmt: skip
            apply_caller(rec, number_info("0112111111"), "from")
            await store.record_final(rec, 86400.0)
        await store.close()

    async def dup() -> bool | None:
        store = CallLogStore(tmp_path / "mediasrv.db")
        await store.open()
        rec = await store.get_call("c1")
        await store.close()
        assert rec is not None
        return rec.duplicate

    asyncio.run(fill())
    assert asyncio.run(dup()) is False
    conf = tmp_path / "wide.toml"
    conf.write_text("[call_attributes]\nduplicate_window = 259200.0\n")
    args = ["calls", "recompute", "-c", str(conf), "--data-dir", str(tmp_path),
            "--since", "2026-01-01T00:00:00+09:00", "--until", "2026-01-04T00:00:00+09:00"]  # fmt: skip
    assert main(args) == 0
    assert "recomputed: 2 rows" in capsys.readouterr().out
    assert asyncio.run(dup()) is True
    assert main(args) == 0 and asyncio.run(dup()) is True  # the same answer again
    assert main([*args[:-2], "--until", "yesterday"]) == 2
