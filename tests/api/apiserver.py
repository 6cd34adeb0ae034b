"""A running mediasrv HTTP server with the v1 API, on its own event loop in a thread
(schemathesis and the explicit tests call it synchronously, never on the test's loop).

Two businesses, ``alpha`` and ``bravo``, each with a tracking number, operators, a
schedule, calls in the log (one with a recording, one voicemail), a webhook endpoint with a
delivery, a prompt and a business token; plus the server (admin) token.
"""

from __future__ import annotations

import asyncio
import math
import threading
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediasrv.api.auth import StaticTokenStore, generate_token, hash_token
from mediasrv.api.http import PRINCIPAL, HttpPolicy, HttpServer
from mediasrv.api.v1.root import V1Api
from mediasrv.api.v1.services import Limits, Services
from mediasrv.api.v1.store import ApiStore
from mediasrv.business_file import load_business_text
from mediasrv.outputs.business_store import SqliteBusinessStore
from mediasrv.outputs.calllog import CallLogStore, CallRecord, Disposition
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.outbox import OutboxStore
from mediasrv.outputs.prompts import PromptStore
from mediasrv.outputs.reports import run_report

T0 = 1_780_000_000.0
NUMBERS = {"alpha": "+81311110000", "bravo": "+81622220000"}


def business_text(slug: str) -> str:
    return f"""
[business]
slug = "{slug}"
name = "{slug.title()} Clinic"

[[operators]]
name = "front"
sip = "sip:front@127.0.0.1:5999"

[[operators]]
name = "back"
sip = "sip:back@127.0.0.1:5998"

[[schedules]]
name = "office"

[[schedules.week]]
days = ["mon", "tue", "wed", "thu", "fri"]
hours = ["09:00-18:00"]

[[schedules.overrides]]
label = "year end"
from = 2026-12-29
to = 2027-01-03
hours = []

[blocklist]
numbers = ["+819000000001"]

[[numbers]]
number = "{NUMBERS[slug]}"
medium = "web"

[numbers.forwarding]
targets = [{{ operator = "front" }}]
on_exhausted = "hangup"
"""


def write_wav(path: Path, seconds: float = 1.0, rate: int = 8000, channels: int = 2) -> None:
    t = np.arange(int(seconds * rate)) / rate
    tone = (np.sin(2 * math.pi * 440 * t) * 8000).astype("<i2")
    frames = np.repeat(tone[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


@dataclass
class Tenant:
    slug: str
    token: str
    call_ids: list[str] = field(default_factory=list)
    recorded_call: str = ""
    voicemail_call: str = ""
    endpoint_id: str = ""
    delivery_id: int = 0
    prompt: str = "greeting"
    token_id: str = ""
    version: int = 0  # the business's first version


@dataclass
class Running:
    base: str
    admin: str
    tenants: dict[str, Tenant]
    root: Path
    ops: list[tuple[str, str, str]]  # (method, path, operationId) of every v1 operation

    def auth(self, who: str) -> dict[str, str]:
        token = self.admin if who == "admin" else self.tenants[who].token
        return {"Authorization": f"Bearer {token}"}


class ApiServerThread:
    """Start with :meth:`start`, stop with :meth:`stop` (both from the test's thread)."""

    def __init__(self, root: Path, limits: Limits | None = None) -> None:
        self.root = root
        self.limits = limits or Limits(max_body_bytes=65536, max_upload_bytes=2_000_000)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="apiserver", daemon=True)
        self.running: Running | None = None

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Running:
        self.thread.start()
        self.running = self.run(self._start())
        return self.running

    def stop(self) -> None:
        try:
            self.run(self._stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    async def _start(self) -> Running:
        var = self.root / "var"
        (var / "recordings").mkdir(parents=True)
        db = var / "mediasrv.db"
        self.calls = CallLogStore(db)
        await self.calls.open()
        self.businesses = SqliteBusinessStore(db)
        await self.businesses.open()
        self.outbox = OutboxStore(db)
        await self.outbox.open()
        self.api_store = ApiStore(db)
        await self.api_store.open()
        self.prompts = PromptStore(self.root / "prompts")
        admin = generate_token()
        services = Services(
            api=self.api_store,
            businesses=self.businesses,
            calls=self.calls,
            outbox=self.outbox,
            prompts=lambda: self.prompts,
            recordings_dir=var / "recordings",
            limits=self.limits,
            reports=lambda q: run_report(self.calls.read_connection(), q),
        )
        v1 = V1Api(services, PRINCIPAL)
        self.server = HttpServer(
            "127.0.0.1", 0, Metrics(), self.calls, lambda: {"status": "ok"},
            var / "recordings", policy=HttpPolicy(StaticTokenStore.server(hash_token(admin))),
            v1=v1,
        )
        tenants = {}
        for i, slug in enumerate(("alpha", "bravo")):
            tenants[slug] = await self._seed(slug, i, var)
        await self.server.start()
        ops = [(op.method, op.path, op.op_id) for op in v1.api.ops]
        return Running(f"http://127.0.0.1:{self.server.port}", admin, tenants, self.root, ops)

    async def _seed(self, slug: str, i: int, var: Path) -> Tenant:
        applied = await self.businesses.apply(load_business_text(business_text(slug)), "test")
        info, token = await self.api_store.create_token(slug, "test")
        tenant = Tenant(slug, token, token_id=info.token_id, version=applied.version)
        for n in range(3):
            call_id = f"{slug}{n:03d}"
            rec = CallRecord(call_id, f"sip-{call_id}", NUMBERS[slug], "+819012345678",
                             business=slug, medium="web", start_time=T0 + 10 * n + i,
                             end_time=T0 + 10 * n + i + 5, disposition=Disposition.ANSWERED,
                             sip_code=200)
            if n == 0:
                path = var / "recordings" / f"{call_id}.wav"
                write_wav(path)
                rec.recording_path = str(path)
                rec.analysis = {"language": "ja", "timeline": [
                    {"speaker": "caller", "start": 0.0, "end": 0.5, "text": "もしもし"}]}
                tenant.recorded_call = call_id
            if n == 1:
                path = var / "recordings" / f"{call_id}-vm.wav"
                write_wav(path, channels=1)
                rec.recording_path = str(path)
                rec.disposition = Disposition.VOICEMAIL
                tenant.voicemail_call = call_id
            await self.calls.record_call(rec)
            tenant.call_ids.append(call_id)
        ep = await self.outbox.add_endpoint(slug, f"https://hooks.example/{slug}")
        tenant.endpoint_id = ep.endpoint_id
        await self.outbox.send_test(slug, ep.endpoint_id)
        rows = await self.outbox.deliveries(slug)
        tenant.delivery_id = int(rows[-1]["delivery_id"])
        src = self.root / f"{slug}.wav"
        write_wav(src, 0.5, 16000, 1)
        await asyncio.to_thread(self.prompts.import_wav, src, tenant.prompt, business=slug)
        return tenant

    async def _stop(self) -> None:
        await self.server.stop()
        await self.api_store.close()
        await self.outbox.close()
        await self.businesses.close()
        await self.calls.close()


def running_server(root: Path) -> Iterator[Running]:
    """For a pytest fixture: ``yield from running_server(tmp_path)``."""
    srv = ApiServerThread(root)
    try:
        yield srv.start()
    finally:
        srv.stop()
