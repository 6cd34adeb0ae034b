"""The call log, call detail and reports in a real browser (issue 13 §2, §3): Debian's
chromium driven by Playwright, a real ``mediasrv run`` with recording and analysis, and one
real pjsua2 call (caller and operator each say a short Japanese clip).

- The call log lists the call; a filter that does not match empties it; the CSV export
  (fetched with the token header, saved from a blob) holds the call.
- The call detail: the audio element, fed the whole recording as a blob (no token in any
  URL), reaches ``playing``; clicking a transcript segment seeks there (``currentTime``
  moves to its start) and the timeline marks the segment being played; both channels'
  waveforms are drawn; the flow path and the forwarding attempt are shown.
- Reports: the per-day chart has the call as a calls bar and a valid bar; the answer-rate
  chart has the medium.
- Another business's token sees none of it (empty log, 404 for the call and its recording).

Screenshots go to tests/output/ (docs/console-call-detail.png and docs/console-report.png
are copies shown in the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import StartServer
from peers_plugin import StartPhone
from test_e2e_console_board import CHROMIUM, CHROMIUM_ARGS, apply_business, log_in

from mediasrv.analysis.manifest import Manifest, default_models_dir

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "tests" / "output"
DATA = REPO / "tests" / "analysis" / "data"
NUMBER = "0312345678"
OPERATOR_DELAY_S = 4.5  # the operator speaks after the caller's clip (4.5 s)
ANALYSIS_DEADLINE_S = 240.0  # Whisper on a loaded 2-core machine
ACME = """[business]
slug = "acme"

[[operators]]
name = "sato"
display_name = "佐藤 花子"
sip = "{uri}"

[[numbers]]
number = "{number}"
medium = "新聞"
campaign = "冬"
valid_call_seconds = 3            # the clips are about 5 s

[numbers.forwarding]
on_busy = "voicemail"
on_no_answer = "voicemail"
on_exhausted = "voicemail"

[[numbers.forwarding.targets]]
operator = "sato"
ring_timeout = 15

[numbers.voicemail]
greeting = []
beep = false
min_seconds = 1
silence_seconds = 0
"""


def _models_built() -> bool:
    try:
        return "whisper-base" in Manifest.load(default_models_dir()).models
    except Exception:
        return False


def delayed_clip(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` (an 8 kHz mono G.711 µ-law WAV) after ``seconds`` of µ-law silence (0xFF), so
    that the operator answers after the caller has spoken: the timeline has a later segment."""
    raw = src.read_bytes()
    at = raw.index(b"data")
    rate = struct.unpack_from("<I", raw, raw.index(b"fmt ") + 12)[0]
    size = struct.unpack_from("<I", raw, at + 4)[0]
    pad = b"\xff" * int(rate * seconds)
    head = bytearray(raw[: at + 8])
    struct.pack_into("<I", head, 4, len(raw) - 8 + len(pad))
    struct.pack_into("<I", head, at + 4, size + len(pad))
    dst.write_bytes(bytes(head) + pad + raw[at + 8 :])
    return dst


def api_token(data_dir: Path, business: str) -> str:
    """A v1 tenant token (`mediasrv token create`): the console uses only the public API."""
    made = subprocess.run(
        [sys.executable, "-m", "mediasrv", "token", "create", "--business", business,
         "--data-dir", str(data_dir)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return made.stdout.strip()


async def analysed_call(server: object, call_id: str) -> dict[str, object]:
    deadline = time.monotonic() + ANALYSIS_DEADLINE_S
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(server.calls, 10)  # type: ignore[attr-defined]
        row = next((r for r in rows if r["call_id"] == call_id), {})
        if row.get("analysis"):
            return row
        await asyncio.sleep(0.5)
    raise AssertionError("no analysis within the deadline:\n" + server.log_tail())  # type: ignore[attr-defined]


def apply_acme(data_dir: Path, operator_uri: str) -> None:
    """The business file of the call-tracking business: one number, its operator, and a
    voicemail when the operator is busy (the plan interpreter runs it)."""
    path = data_dir.parent / "acme.toml"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(ACME.format(uri=operator_uri, number=NUMBER), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "mediasrv", "business", "apply", str(path), "--data-dir", str(data_dir)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


async def one_call(caller: object, operator: object, server: object, code: int) -> None:
    """The operator answers ``code`` (200, or 486: busy, so the caller leaves a voicemail);
    the caller says its clip and hangs up."""
    await caller.dial(f"sip:{NUMBER}@{server.sip_uri_host}")  # type: ignore[attr-defined]
    await operator.wait_event("incoming", timeout=10)  # type: ignore[attr-defined]
    await operator.command("answer", code=code)  # type: ignore[attr-defined]
    await caller.wait_event("state", state="CONFIRMED", timeout=10)  # type: ignore[attr-defined]
    await caller.wait_event("played", timeout=30)  # type: ignore[attr-defined]
    if code == 200:
        await operator.wait_event("played", timeout=30)  # type: ignore[attr-defined]
    await caller.command("hangup")  # type: ignore[attr-defined]
    await caller.wait_event("disconnected", timeout=10)  # type: ignore[attr-defined]


async def rows_of(server: object, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(server.calls, 10)  # type: ignore[attr-defined]
        if len([r for r in rows if r["disposition"] != "in-progress"]) >= count:
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError("the call rows were not written:\n" + server.log_tail())  # type: ignore[attr-defined]


@pytest.mark.skipif(not _models_built(), reason="run `mediasrv models build` first (bootstrap does)")
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")
async def test_call_log_detail_player_transcript_reports_and_tenants(
    tmp_path: Path, start_server: StartServer, start_phone: StartPhone
) -> None:
    expect = playwright_api.expect
    operator_clip = delayed_clip(DATA / "ja_m2.wav", tmp_path / "operator.wav", OPERATOR_DELAY_S)
    operator = await start_phone("operator", auto_answer="none", play=operator_clip)
    caller = await start_phone("caller", play=DATA / "ja_f1.wav")
    workdir = tmp_path / "srv"
    apply_acme(workdir / "var", operator.uri)
    apply_business(workdir / "var", "other", "yamada", "山田", "sip:yamada@127.0.0.1:5999")
    acme_token, other_token = api_token(workdir / "var", "acme"), api_token(workdir / "var", "other")
    server = start_server(
        workdir=workdir,
        analysis={"enabled": True, "workers": 1, "language": "ja"},
        extra_sections={"calls": {"interpreter": "plan"},
                        "call_attributes": {"valid_call_seconds": 3.0}},  # the clips are ~5 s
    )

    # ---- two real calls: answered (both speak), then busy -> the caller leaves a voicemail
    await one_call(caller, operator, server, 200)
    await one_call(caller, operator, server, 486)
    by_disposition = {r["disposition"]: r for r in await rows_of(server, 2)}
    voicemail_id = str(by_disposition["voicemail"]["call_id"])
    row = await analysed_call(server, str(by_disposition["answered"]["call_id"]))
    call_id = str(row["call_id"])
    assert row["valid"] is True, {k: row[k] for k in ("valid", "talk_seconds", "first_time", "tracking_number")}
    wav = Path(str(row["recording_path"]))
    segments = row["analysis"]["timeline"]  # type: ignore[index]
    assert {s["channel"] for s in segments} == {"caller", "operator"}, segments

    base = f"http://127.0.0.1:{server.http_port}/console/"
    OUTPUT.mkdir(parents=True, exist_ok=True)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ja = await browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900},
                                       accept_downloads=True)
        en = await browser.new_context(locale="en-GB", viewport={"width": 1100, "height": 700})
        try:
            page = await ja.new_page()
            errors: list[str] = []  # CSP violations and script errors show up here
            requests: list[str] = []
            page.on("console", lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            failed: list[str] = []
            page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            await log_in(page, base, acme_token, "API トークン")
            await expect(page.locator("#conn")).to_have_text("接続中", timeout=10_000)

            # ---- the call log: the call, a filter, the CSV
            await page.locator('#nav a[data-page="calls"]').click()
            rows = page.locator("#calls-table tbody tr")
            await expect(rows).to_have_count(2, timeout=5000)
            await expect(rows.first).to_have_attribute("data-call-id", voicemail_id)  # newest first
            await expect(rows.first.locator(".disp")).to_have_text("留守番電話")
            await expect(rows.nth(1).locator(".medium")).to_have_text("新聞")
            await page.get_by_label("媒体", exact=True).fill("雑誌")
            await page.get_by_label("媒体", exact=True).press("Enter")
            await expect(rows).to_have_count(0)
            await expect(page.locator("#calls-empty")).to_be_visible()
            await page.get_by_label("媒体", exact=True).fill("新聞")
            await page.locator("#cf-valid").select_option("true")
            await page.locator("#calls-search").click()
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_have_attribute("data-call-id", call_id)  # the valid one
            async with page.expect_download() as download_info:
                await page.locator("#calls-export").click()
            download = await download_info.value
            csv_text = Path(await download.path()).read_bytes().decode("utf-8-sig")
            assert call_id in csv_text and "新聞" in csv_text
            assert len(csv_text.strip().splitlines()) == 2  # the header and the call

            # ---- the detail: flow, attempts, player, channels, transcript
            await rows.first.locator("a.open-call").click()
            await expect(page.locator("#call-title")).to_have_attribute("data-call-id", call_id)
            player = page.locator("#player")
            await expect(player).to_have_attribute("data-complete", "true", timeout=10_000)
            assert int(await player.get_attribute("data-blob-bytes") or 0) == wav.stat().st_size
            await expect(page.locator("#channels figure")).to_have_count(2)
            await expect(page.locator("#attempts tbody tr")).to_have_count(1)
            await expect(page.locator("#attempts tbody td").first).to_have_text(operator.uri)
            lines = page.locator("#transcript button.seg")
            await expect(lines).to_have_count(len(segments))
            await expect(page.locator("#transcript .seg-caller").first).to_be_visible()
            await expect(page.locator("#transcript .seg-operator").first).to_be_visible()
            assert "予約" in await page.locator("#transcript").inner_text()
            await page.evaluate("""() => {
                const a = document.querySelector('#player');
                window.audioEvents = [];
                for (const e of ['playing', 'seeked']) a.addEventListener(e, () => window.audioEvents.push(e));
            }""")
            target = max(segments, key=lambda s: float(s["start"]))  # the latest segment
            start = float(target["start"])
            assert start > 2.0, target
            await lines.nth(segments.index(target)).click()  # a click: a user gesture, so play() may start
            await page.wait_for_function("() => window.audioEvents.includes('playing')", timeout=10_000)
            await page.wait_for_function("() => window.audioEvents.includes('seeked')", timeout=10_000)
            now = await player.evaluate("a => a.currentTime")
            assert start - 0.05 <= now < start + 3.0, (now, start)  # playing on meanwhile
            await expect(lines.nth(segments.index(target))).to_have_attribute(
                "aria-current", "true", timeout=3000)
            await page.wait_for_function(f"() => document.querySelector('#player').currentTime > {now}")
            await player.evaluate("a => a.pause()")
            # the waveform seeks too: its left edge is the start of the call
            await page.locator("#channels .wave").first.click(position={"x": 2, "y": 20})
            await page.wait_for_function("() => document.querySelector('#player').currentTime < 1")
            await lines.nth(segments.index(target)).focus()  # keyboard: Enter on a segment seeks
            await page.keyboard.press("Enter")
            await page.wait_for_function(
                f"() => document.querySelector('#player').currentTime >= {start - 0.05}")
            await player.evaluate("a => a.pause()")
            await page.screenshot(path=str(OUTPUT / "console-call-detail.png"), full_page=True)
            assert not [u for u in requests if acme_token in u]  # no token in any URL

            # ---- reports: the call per day and the answer rate of its medium
            await page.locator('#nav a[data-page="reports"]').click()
            today_bar = page.locator("#chart-days rect.bar-calls[data-value='2']")
            await expect(today_bar).to_have_count(1, timeout=5000)
            await expect(page.locator("#chart-days rect.bar-valid[data-value='1']")).to_have_count(1)
            rate = page.locator("#chart-rate rect.bar-rate[data-medium='新聞']")
            await expect(rate).to_have_attribute("data-value", "0.5")  # answered 1 of 2
            await expect(page.locator("#report-medium tbody tr")).to_have_count(1)
            await expect(page.locator("#report-campaign tbody th")).to_have_text("冬")
            await page.screenshot(path=str(OUTPUT / "console-report.png"), full_page=True)

            # ---- voicemails: listed, playable
            await page.locator('#nav a[data-page="voicemails"]').click()
            message = page.locator(f'#voicemail-list li[data-call-id="{voicemail_id}"]')
            await expect(message).to_have_count(1, timeout=5000)
            await expect(page.locator("#voicemail-list li")).to_have_count(1)
            await message.locator("button.play").click()
            vm_player = message.locator("audio")
            await page.wait_for_function(
                """(id) => { const a = document.querySelector(`#voicemail-list li[data-call-id="${id}"] audio`);
                            return a && !a.paused && a.currentTime > 0; }""", arg=voicemail_id, timeout=10_000)
            assert await vm_player.evaluate("a => a.duration") > 2.0  # the caller's ~4.5 s clip
            await vm_player.evaluate("a => a.pause()")
            assert errors == [], (errors, failed)

            # ---- another business: none of it
            other = await en.new_page()
            await log_in(other, base, other_token, "API token")
            await expect(other.locator("#conn")).to_have_text("Live", timeout=10_000)
            await other.goto(base + "#/calls")
            await expect(other.locator("#calls-empty")).to_be_visible(timeout=5000)
            await expect(other.locator("#calls-title")).to_have_text("Call log")  # English
            await expect(other.get_by_label("Medium", exact=True)).to_be_visible()
            await expect(other.locator("#calls-table tbody tr")).to_have_count(0)
            await other.goto(base + f"#/calls/{call_id}")
            await expect(other.locator("#call-error")).to_be_visible(timeout=5000)
            status = await other.evaluate(
                """async ([id, token]) => {
                    const h = { Authorization: `Bearer ${token}` };
                    const out = [];
                    for (const p of [`/api/v1/businesses/acme/calls/${id}/recording`,
                                     `/api/v1/businesses/other/calls/${id}/recording`,
                                     `/api/v1/businesses/other/calls/${id}/transcript`]) {
                        out.push((await fetch(p, { headers: h })).status);
                    }
                    return out;
                }""",
                [call_id, other_token],
            )
            assert status == [404, 404, 404]
            await other.goto(base + "#/reports")
            await expect(other.locator("#report-empty")).to_be_visible(timeout=5000)
            assert "新聞" not in await other.locator("body").inner_text()
        finally:
            with contextlib.suppress(Exception):
                await ja.close()
                await en.close()
            await browser.close()
    assert (OUTPUT / "console-call-detail.png").stat().st_size > 10_000
