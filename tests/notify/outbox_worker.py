"""Run one webhook dispatcher on a store until killed (the SIGKILL test's server process)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from mediasrv.outputs.outbox import OutboxStore, WebhookDispatcher


async def main(db: Path, node: str) -> None:
    store = OutboxStore(db)
    await store.open()
    dispatcher = WebhookDispatcher(
        store, node=node, allow_private=True, schedule=(0.05,) * 5, idle_poll_s=0.05
    )
    await dispatcher.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
