"""kill -9 of the delivering process while events are pending: after a restart every event
is delivered (same webhook-id for any sent twice), none lost, each call still in order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from receiver import Receiver

from mediasrv.outputs.outbox import DeliveryState, OutboxEvent, OutboxStore

WORKER = Path(__file__).with_name("outbox_worker.py")
EVENTS, CALLS = 120, 8


async def _start_worker(db: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), str(db), "node-a", stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"ready"
    return proc


async def test_sigkill_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "mediasrv.db"
    store = OutboxStore(db)
    await store.open()
    ep = await store.add_endpoint("acme", "http://x.invalid/")
    receiver = Receiver([ep.secrets[0]])
    receiver.delay_s = 0.01
    # Fail one in seven first tries, so retries are pending when the process dies.
    receiver.script = lambda n, _id: (500, {}) if n % 7 == 3 else (200, {})
    await receiver.start()
    await store.conn.execute(
        "UPDATE webhook_endpoints SET url = ? WHERE endpoint_id = ?", (receiver.url, ep.endpoint_id)
    )
    events = [
        OutboxEvent(
            "acme",
            f"call-{i % CALLS}",
            "call.updated",
            {"i": i, "call_id": f"call-{i % CALLS}"},
            time.time(),
        )
        for i in range(EVENTS)
    ]
    await store.enqueue(events)
    worker = await _start_worker(db)
    try:
        await receiver.wait_for(EVENTS // 3, timeout=60)
        os.kill(worker.pid, signal.SIGKILL)
        await worker.wait()
        assert worker.returncode == -signal.SIGKILL
        got_before = {r.webhook_id for r in receiver.requests}
        assert 0 < len(got_before) < EVENTS  # killed mid-run
        worker = await _start_worker(db)
        deadline = time.monotonic() + 60
        while len(await store.deliveries("acme", state=DeliveryState.DELIVERED)) < EVENTS:
            assert time.monotonic() < deadline, "not every event was delivered after restart"
            await asyncio.sleep(0.05)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await receiver.stop()
        await store.close()
    assert receiver.rejected == []
    ids = [r.webhook_id for r in receiver.requests]
    assert set(ids) == {e.event_id for e in events}  # none lost
    # In order per call: the first arrival of each event follows the previous one's.
    by_call: dict[str, list[int]] = {}
    seen: set[str] = set()
    for r in receiver.requests:
        if r.webhook_id not in seen:
            seen.add(r.webhook_id)
            by_call.setdefault(str(r.data["call_id"]), []).append(r.subject_seq)
    for seqs in by_call.values():
        assert seqs == sorted(seqs)
