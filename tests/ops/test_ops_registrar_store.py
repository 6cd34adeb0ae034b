"""The SQLite binding store (outputs/bindings.py): bindings survive a restart, expired ones
do not, and lookups never wait for the disk."""

from __future__ import annotations

from pathlib import Path

from mediasrv.outputs.bindings import SqliteBindingStore
from mediasrv.sip.registrar import Binding, MemoryBindingStore


def _binding(uri: str, expires_at: float, aor: str = "alice") -> Binding:
    return Binding(aor, uri, expires_at, "cid@phone", 3, 0.5, "UDP 127.0.0.1:5072", "pj")


async def test_bindings_survive_a_restart(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    db = tmp_path / "m.db"
    store = SqliteBindingStore(db, flush_interval=0.01, wall_clock=lambda: now)
    assert await store.open() == 0
    store.put("alice", [_binding("sip:alice@10.0.0.5", now + 600)])
    store.put("bob", [_binding("sip:bob@10.0.0.6", now + 10, "bob")])
    assert store.get("alice")[0].uri == "sip:alice@10.0.0.5"  # at once, from memory
    await store.close()

    later = SqliteBindingStore(db, wall_clock=lambda: now + 60)  # bob's binding expired
    assert await later.open() == 1
    assert later.get("alice") == [_binding("sip:alice@10.0.0.5", now + 600)]
    assert later.get("bob") == []
    later.put("alice", [])  # unregistered
    await later.close()

    third = SqliteBindingStore(db, wall_clock=lambda: now + 61)
    assert await third.open() == 0
    await third.close()


def test_memory_store_put_and_remove() -> None:
    store = MemoryBindingStore()
    store.put("alice", [_binding("sip:a@h", 1.0)])
    assert store.aors() == ["alice"]
    store.put("alice", [])
    assert store.aors() == [] and store.get("alice") == []
