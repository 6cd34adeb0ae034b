"""The configuration pages in a real browser (issue 13 §4, §5): Debian's chromium driven by
Playwright against one real ``mediasrv run`` for the module (no call is placed: the dry run
explains the stored flow).

1. A user logs in with a name and password (``mediasrv user add``), edits the weekday hours
   in the schedule form, and the dry run's answer for "090... calls on 12/29 at 19:00"
   changes from closed to ringing the operators in order; the caller added in the blocklist
   form is then refused.
2. The business file with a bad key: "Validate" marks the error at its line; a concurrent
   change (another writer) makes "Apply" a clearly shown 412 that overwrote nothing. A
   prompt WAV is uploaded and played back (converted by the server).
3. Another business's user sees none of it (its pages and the API answer 404 for the first
   business), and a cross-origin form POST cannot act (no cookie carries authority).

Screenshots go to tests/output/ (docs/console-config.png is a copy shown in the README).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import struct
import sys
import urllib.error
import urllib.request
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from mediasrv.cli import main as cli_main
from mediasrv.demo.server import ServerProcess, ServerSpec

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "tests" / "output"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ACME_NUMBER, OTHER_NUMBER = "+81355550000", "+81666660000"
PASSWORDS = {"acme-lead": "acme lead password", "other-lead": "other lead password"}


def business_file(slug: str, number: str, medium: str) -> str:
    return f"""[business]
slug = "{slug}"
name = "{slug.title()} Dental"

[[operators]]
name = "sato"
display_name = "佐藤"
sip = "sip:sato@127.0.0.1:5997"

[[operators]]
name = "tanaka"
display_name = "田中"
sip = "sip:tanaka@127.0.0.1:5996"

[[schedules]]
name = "office"
holidays = "jp"

[[schedules.week]]
days = ["mon", "tue", "wed", "thu", "fri"]
hours = ["09:00-18:00"]

[[schedules.overrides]]
label = "new year"
from = "01-01"
to = "01-03"
hours = []

[blocklist]
numbers = ["+819000000001"]

[[numbers]]
number = "{number}"
medium = "{medium}"

[numbers.hours]
schedule = "office"
closed = "hangup"

[numbers.forwarding]
strategy = "sequential"
on_exhausted = "hangup"

[[numbers.forwarding.targets]]
operator = "sato"
ring_timeout = 15

[[numbers.forwarding.targets]]
operator = "tanaka"
ring_timeout = 15
"""


def _cli(*args: str, stdin: str = "") -> None:
    """``mediasrv ARGS`` in this process (a subprocess per command costs seconds of imports)."""
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        assert cli_main(list(args)) == 0, args
    finally:
        sys.stdin = saved


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("console-config")
    data = workdir / "var"
    data.mkdir()
    for slug, number, medium in (("acme", ACME_NUMBER, "新聞"), ("other", OTHER_NUMBER, "web")):
        path = workdir / f"{slug}.toml"
        path.write_text(business_file(slug, number, medium), encoding="utf-8")
        _cli("business", "apply", str(path), "--data-dir", str(data))
        user = f"{slug}-lead"
        _cli("user", "add", user, "--business", slug, "--password-stdin", "--data-dir", str(data),
             stdin=PASSWORDS[user] + "\n")
    # its own prompt store: an upload must not land in the shared ~/.cache/mediasrv/prompts
    proc = ServerProcess(ServerSpec(workdir=workdir, analysis={"enabled": False},
                                    extra_sections={"prompts": {"dir": str(workdir / "prompts")}}))
    proc.start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


def admin_request(server: ServerProcess, method: str, path: str, body: object = None,
                  **headers: str) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}", data=data, method=method,
        headers={"Authorization": f"Bearer {server.spec.api_token}",
                 "Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


async def log_in(page: object, server: ServerProcess, user: str) -> None:
    await page.goto(f"http://127.0.0.1:{server.http_port}/console/")  # type: ignore[attr-defined]
    await page.locator("#login-user").fill(user)  # type: ignore[attr-defined]
    await page.locator("#login-password").fill(PASSWORDS[user])  # type: ignore[attr-defined]
    await page.locator("#account-form button[type=submit]").click()  # type: ignore[attr-defined]
    await playwright_api.expect(page.locator("#nav")).to_be_visible(timeout=10_000)  # type: ignore[attr-defined]


async def dry_run(page: object, caller: str, date: str, time_: str) -> None:
    expect = playwright_api.expect
    await page.locator('.cfg-tabs a[data-tab="dryrun"]').click()  # type: ignore[attr-defined]
    await page.locator("#dry-caller").fill(caller)  # type: ignore[attr-defined]
    await page.locator("#dry-date").fill(date)  # type: ignore[attr-defined]
    await page.locator("#dry-time").fill(time_)  # type: ignore[attr-defined]
    await page.locator(".cfg-dryrun button[type=submit]").click()  # type: ignore[attr-defined]
    await expect(page.locator("#dry-rules")).to_be_visible()  # type: ignore[attr-defined]


def errors_of(page: object) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: errors.append(str(e)))  # type: ignore[attr-defined]
    return errors


def tone_wav(path: Path, seconds: float = 1.5, rate: int = 16000) -> Path:
    """A 440 Hz tone at 16 kHz (the store converts it to 8 kHz)."""
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


async def test_hours_edit_changes_the_dry_run_errors_show_at_their_line_and_412_is_plain(
    server: ServerProcess, browser: object, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    OUTPUT.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(locale="en-GB", viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    try:
        page = await context.new_page()
        errors = errors_of(page)
        await log_in(page, server, "acme-lead")
        token = await page.evaluate("sessionStorage.getItem('mediasrv.token')")
        assert token.startswith("msrvs_") and token not in page.url
        await page.locator('#nav a[data-page="config"]').click()
        rows = page.locator("#page-config .cfg-numbers tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-number", ACME_NUMBER)

        # ---- 1. the dry run: 12/29 (a Tuesday) at 19:00 is after hours
        await dry_run(page, "090-1234-5678", "2026-12-29", "19:00")
        await expect(page.locator("#dry-rules")).to_contain_text("hours:office: closed")
        await expect(page.locator("#dry-targets")).to_have_text("none")
        await expect(page.locator("#dry-ends")).to_have_text("hang up")

        # edit the weekday hours in the form, save
        await page.locator('.cfg-tabs a[data-tab="schedules"]').click()
        office = page.locator('.cfg-schedule[data-schedule="office"]')
        await office.locator(".cfg-week-row .cfg-hours").first.fill("09:00-20:00")
        await office.locator("button[type=submit]").click()
        await expect(office.locator(".cfg-status")).to_have_attribute("data-kind", "ok")
        await expect(office.locator(".cfg-status")).to_have_text(re.compile(r"Saved: version \d+\."))
        await page.screenshot(path=str(OUTPUT / "console-config.png"), full_page=True)

        # the same question now rings sato, then tanaka
        await dry_run(page, "090-1234-5678", "2026-12-29", "19:00")
        await expect(page.locator("#dry-rules")).to_contain_text("hours:office: open")
        await expect(page.locator("#dry-targets li")).to_have_count(2)
        await expect(page.locator("#dry-targets li").first).to_contain_text("sato")
        await expect(page.locator("#dry-targets li").nth(1)).to_contain_text("tanaka")
        await page.screenshot(path=str(OUTPUT / "console-config-dryrun.png"), full_page=True)

        # the blocklist form: this caller blocked -> the dry run refuses them
        await page.locator('.cfg-tabs a[data-tab="blocklist"]').click()
        numbers = page.locator("#cfg-block-numbers")
        await expect(numbers).to_have_value("+819000000001")
        await numbers.fill("+819000000001\n090-1234-5678")
        await page.locator(".cfg-blocklist button[type=submit]").click()
        await expect(page.locator(".cfg-blocklist .cfg-status")).to_have_attribute("data-kind", "ok")
        await dry_run(page, "090-1234-5678", "2026-12-29", "19:00")
        await expect(page.locator("#dry-rules")).to_contain_text("blocklist: blocked")
        await expect(page.locator("#dry-targets")).to_have_text("none")

        # ---- 2. the business file: an error at its line
        await page.locator('.cfg-tabs a[data-tab="file"]').click()
        editor = page.locator("#cfg-file")
        await expect(editor).to_have_value(re.compile("09:00-20:00"))  # the form's edit, in the file
        text = await editor.input_value()
        lines = text.split("\n")
        bad_line = lines.index("[[operators]]") + 3  # within the first operator's table
        lines.insert(bad_line - 1, 'colour = "red"')
        await editor.fill("\n".join(lines))
        await page.locator("#cfg-validate").click()
        status = page.locator("#cfg-file-status")
        await expect(status).to_have_attribute("data-kind", "error")
        await expect(status).to_have_attribute("data-line", str(bad_line))
        await expect(status).to_contain_text(f"Line {bad_line}: ")
        await expect(status).to_contain_text("colour")
        await expect(page.locator(f'.cfg-gutter .line[data-line="{bad_line}"]')).to_have_class("line error")
        assert await page.evaluate("document.activeElement.id") == "cfg-file"
        await page.screenshot(path=str(OUTPUT / "console-config-file-error.png"), full_page=True)

        # a concurrent change (another editor, through the API) since this page loaded: 412
        await editor.fill(text.replace("+819000000001", "+819000000002"))
        code, _ = admin_request(server, "PUT", "/api/v1/businesses/acme/blocklist",
                                {"numbers": ["+819000000003"]}, **{"If-Match": "*"})
        assert code == 200
        await page.locator("#cfg-apply").click()
        await expect(status).to_have_attribute("data-kind", "conflict")
        await expect(status).to_contain_text("412")
        code, current = admin_request(server, "GET", "/api/v1/businesses/acme/blocklist")
        assert current == {"numbers": ["+819000000003"]}  # the other writer's change stands
        await status.locator("button.cfg-reload").click()
        await expect(page.locator("#cfg-file")).to_have_value(re.compile(r"\+819000000003"))

        # ---- prompts: upload a WAV, then listen to the converted one
        wav = tone_wav(tmp_path / "welcome-upload.wav")
        await page.locator('.cfg-tabs a[data-tab="prompts"]').click()
        await page.locator("#cfg-prompt-name").fill("welcome")
        await page.locator("#cfg-prompt-file").set_input_files(str(wav))
        await page.locator(".cfg-upload button[type=submit]").click()
        row = page.locator('#page-config tr[data-prompt="welcome"]')
        await expect(row).to_have_count(1)
        await expect(page.locator(".cfg-upload .cfg-status")).to_contain_text("Uploaded welcome")
        await row.locator("button.cfg-listen").click()
        await page.wait_for_function(
            "() => { const a = document.querySelector('#cfg-audio');"
            " return a.dataset.prompt === 'welcome' && a.currentTime > 0; }", timeout=10_000)
        assert [e for e in errors if "Failed to load resource" not in e] == []
    finally:
        with contextlib.suppress(Exception):
            await context.close()
    assert (OUTPUT / "console-config.png").stat().st_size > 10_000


async def attacker_site(target: str) -> tuple[web.AppRunner, str]:
    """Another origin (127.0.0.2) whose pages auto-submit forms to the server."""
    forged = ('{"text": "[business]\\nslug = \\"evil\\"\\n", "x": "')

    def page(action: str) -> str:
        return (f'<form id="f" method="POST" action="{target}{action}" enctype="text/plain">'
                f"<input name='{forged}' value='\"}}'></form>"
                "<script>document.getElementById('f').submit()</script>")

    async def handle(request: web.Request) -> web.Response:
        action = {"/create": "/api/v1/businesses", "/login": "/api/v1/login"}[request.path]
        return web.Response(text=page(action), content_type="text/html")

    app = web.Application()
    app.router.add_get("/create", handle)
    app.router.add_get("/login", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.2:{port}"


async def test_another_business_sees_none_of_it_and_a_cross_site_form_cannot_act(
    server: ServerProcess, browser: object
) -> None:
    expect = playwright_api.expect
    context = await browser.new_context(locale="ja-JP", viewport={"width": 1100, "height": 800})  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{server.http_port}"
    runner, evil = await attacker_site(base)
    try:
        page = await context.new_page()
        await log_in(page, server, "other-lead")
        await page.locator('#nav a[data-page="config"]').click()
        await expect(page.locator("#page-config .cfg-tabs a").first).to_have_text("計測番号")
        rows = page.locator("#page-config .cfg-numbers tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-number", OTHER_NUMBER)
        assert ACME_NUMBER not in await page.locator("body").inner_text()
        assert "acme" not in await page.locator("#business").inner_text()
        # the API, asked by this page with its own token, answers 404 for acme's things
        statuses = await page.evaluate("""async ([acme]) => {
            const h = { Authorization: 'Bearer ' + sessionStorage.getItem('mediasrv.token'),
                        'Content-Type': 'application/json' };
            const get = (p) => fetch(p, { headers: h }).then((r) => r.status);
            return [await get('/api/v1/businesses/acme/config'),
                    await get('/api/v1/businesses/acme/file'),
                    await fetch('/api/v1/businesses/acme/numbers/' + acme + '/simulate',
                                { method: 'POST', headers: h, body: '{}' }).then((r) => r.status),
                    await fetch('/api/v1/businesses/other/numbers/' + acme + '/simulate',
                                { method: 'POST', headers: h, body: '{}' }).then((r) => r.status)];
        }""", [ACME_NUMBER])
        assert statuses == [404, 404, 404, 404]

        # CSRF: a page on another origin posts forms to the server, in the same browser
        # context as the logged-in console. No cookie exists to carry authority, so the
        # write arrives without a token (401); the login refuses a form's body (415; a JSON
        # login from a foreign Origin is 403, tests/api/test_api_accounts.py).
        attack = await context.new_page()
        async with attack.expect_response(lambda r: r.url == base + "/api/v1/businesses") as got:
            await attack.goto(evil + "/create")
        assert (await got.value).status == 401
        async with attack.expect_response(lambda r: r.url == base + "/api/v1/login") as got:
            await attack.goto(evil + "/login")
        assert (await got.value).status == 415  # a form's body is never JSON
        assert await context.cookies() == []
        code, listed = admin_request(server, "GET", "/api/v1/businesses")
        assert code == 200 and {b["slug"] for b in listed["items"]} == {"acme", "other"}  # type: ignore[index]
        # the console itself still works after the attack
        await page.locator('.cfg-tabs a[data-tab="operators"]').click()
        await expect(page.locator('#page-config tr[data-operator="sato"]')).to_have_count(1)
        await page.screenshot(path=str(OUTPUT / "console-config-other-ja.png"), full_page=True)
        # logout revokes the session on the server
        token = await page.evaluate("sessionStorage.getItem('mediasrv.token')")
        await page.locator("#logout").click()
        await expect(page.locator("#login")).to_be_visible()
        req = urllib.request.Request(f"{base}/api/v1/session",
                                     headers={"Authorization": f"Bearer {token}"})
        for _ in range(50):  # the DELETE is sent without waiting (keepalive fetch)
            try:
                urllib.request.urlopen(req, timeout=5).close()
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            await page.wait_for_timeout(100)
        else:
            raise AssertionError("the session still works after logout")
    finally:
        with contextlib.suppress(Exception):
            await context.close()
        await runner.cleanup()
