"""Conformance suite of the business store (issue 10 §1): every backend passes every test.

A backend is one parameter of the ``backend`` fixture (the PostgreSQL backend of the
scale-out issue adds one); tests marked by ``needs_persistence`` reopen the store and run on
the backends that keep data across a restart.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mediasrv.business_file import load_business_file
from mediasrv.calls.business import (
    Blocklist,
    BlockRule,
    Business,
    MatchKind,
    Operator,
    OperatorKind,
    Target,
)
from mediasrv.config import ConfigError
from mediasrv.outputs.business_store import (
    BusinessConflict,
    BusinessStore,
    MemoryBusinessStore,
    SqliteBusinessStore,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "business.example.toml"


class Backend:
    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.tmp = name, tmp
        self.persistent = name != "memory"
        self.opened: list[BusinessStore] = []
        self._memory: MemoryBusinessStore | None = None

    async def open(self) -> BusinessStore:
        """A store on the backend's data; a second call is a restart (or a second process)."""
        if self.name == "sqlite":
            store: BusinessStore = SqliteBusinessStore(self.tmp / "mediasrv.db")
        else:
            if self._memory is None:
                self._memory = MemoryBusinessStore()
            store = self._memory
        await store.open()
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture(params=["sqlite", "memory"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    b = Backend(request.param, tmp_path)
    yield b
    await b.close_all()


@pytest.fixture
async def store(backend: Backend) -> BusinessStore:
    return await backend.open()


def needs_persistence(backend: Backend) -> None:
    if not backend.persistent:
        pytest.skip(f"{backend.name} keeps nothing across a restart")


@pytest.fixture(scope="module")
def sakura() -> Business:
    return load_business_file(EXAMPLE)


def with_medium(b: Business, medium: str) -> Business:
    return replace(b, numbers=(replace(b.numbers[0], medium=medium), *b.numbers[1:]))


async def test_apply_stores_a_first_version(store: BusinessStore, sakura: Business) -> None:
    result = await store.apply(sakura, "conf/business.example.toml")
    assert result.created and result.version >= 1
    assert await store.get("sakura-dental") == sakura
    infos = await store.businesses()
    assert [(i.slug, i.version, i.numbers) for i in infos] == [("sakura-dental", result.version, 2)]
    [info] = await store.versions("sakura-dental")
    assert info.version == result.version and info.source == "conf/business.example.toml"
    numbers = await store.numbers()
    assert [(n.number, n.business, n.medium) for n in numbers] == [
        ("+81120123456", "sakura-dental", "web"),
        ("+81312345678", "sakura-dental", "newspaper"),
    ]
    assert await store.get("nobody") is None and await store.export("nobody") is None


async def test_the_same_file_twice_is_no_new_version(
    store: BusinessStore, sakura: Business
) -> None:
    first = await store.apply(sakura)
    again = await store.apply(load_business_file(EXAMPLE))  # equal, not the same object
    assert not again.created and again.version == first.version
    assert len(await store.versions("sakura-dental")) == 1


async def test_every_change_is_a_new_version_and_old_ones_stay(
    store: BusinessStore, sakura: Business
) -> None:
    v1 = (await store.apply(sakura)).version
    changed = with_medium(sakura, "radio")
    v2 = (await store.apply(changed, "edit")).version
    assert v2 > v1
    assert await store.get("sakura-dental") == changed
    assert await store.get("sakura-dental", v1) == sakura  # a call on v1 can still be explained
    assert [v.version for v in await store.versions("sakura-dental")] == [v1, v2]
    # back to the first content: a change again, so a third version (history is linear)
    v3 = (await store.apply(sakura)).version
    assert v3 > v2 and await store.get("sakura-dental") == sakura


async def test_version_for_is_synchronous_and_a_call_keeps_its_version(
    store: BusinessStore, sakura: Business
) -> None:
    assert not inspect.iscoroutinefunction(store.version_for)
    v1 = (await store.apply(sakura)).version
    in_call = store.version_for("+81312345678")
    assert in_call is not None and in_call.version == v1
    assert in_call.business == sakura and in_call.number == sakura.numbers[0]
    assert store.version_for("0312345678") == in_call  # the national form routes too
    assert store.version_for("03-1234-5678") == in_call
    assert store.version_for("+81399999999") is None
    v2 = (await store.apply(with_medium(sakura, "radio"))).version
    new_call = store.version_for("+81312345678")
    assert new_call is not None and new_call.version == v2 and new_call.number.medium == "radio"
    assert in_call.version == v1 and in_call.number.medium == "newspaper"  # untouched


async def test_a_number_removed_stops_routing(store: BusinessStore, sakura: Business) -> None:
    await store.apply(sakura)
    await store.apply(replace(sakura, numbers=sakura.numbers[:1]))
    assert store.version_for("+81120123456") is None
    assert [n.number for n in await store.numbers("sakura-dental")] == ["+81312345678"]


async def test_a_number_cannot_belong_to_two_businesses(
    store: BusinessStore, sakura: Business
) -> None:
    await store.apply(sakura)
    thief = replace(sakura, slug="other", name="Other")
    with pytest.raises(
        BusinessConflict, match=r"\+81312345678 belongs to business 'sakura-dental'"
    ):
        await store.apply(thief)
    assert [b.slug for b in await store.businesses()] == ["sakura-dental"]
    assert await store.versions("other") == []
    found = store.version_for("+81312345678")
    assert found is not None and found.business.slug == "sakura-dental"


async def test_an_invalid_business_is_refused_like_a_file(
    store: BusinessStore, sakura: Business
) -> None:
    ghost = Operator("ghost", OperatorKind.SIP_URI, "sip:ghost@127.0.0.1")
    fwd = sakura.numbers[1].flow.forwarding
    assert fwd is not None
    bad_fwd = replace(fwd, targets=tuple(Target(operator=ghost.name) for _ in range(6)))
    bad = replace(
        sakura,
        operators=(*sakura.operators, ghost),
        numbers=(
            sakura.numbers[0],
            replace(sakura.numbers[1], flow=replace(sakura.numbers[1].flow, forwarding=bad_fwd)),
        ),
    )
    with pytest.raises(ConfigError, match="at most 5 forwarding targets"):
        await store.apply(bad)
    assert await store.businesses() == []


async def test_export_is_the_business_file_of_that_version(
    store: BusinessStore, sakura: Business
) -> None:
    v1 = (await store.apply(sakura)).version
    await store.apply(with_medium(sakura, "radio"))
    from mediasrv.business_file import load_business_text

    text = await store.export("sakura-dental", v1)
    assert text is not None and load_business_text(text) == sakura
    current = await store.export("sakura-dental")
    assert current is not None and 'medium = "radio"' in current


async def test_the_global_blocklist(
    backend: Backend, store: BusinessStore, sakura: Business
) -> None:
    await store.apply(sakura)
    rules = Blocklist(
        (BlockRule(MatchKind.PREFIX, "+8150"), BlockRule(MatchKind.WITHHELD, "payphone"))
    )
    await store.set_global_blocklist(rules)
    assert store.global_blocklist() == rules
    found = store.version_for("+81312345678")
    assert found is not None and found.global_blocklist == rules
    if backend.persistent:
        await store.close()
        again = await backend.open()
        assert again.global_blocklist() == rules


async def test_round_robin_pointers(store: BusinessStore) -> None:
    assert store.peek_rotation("+81312345678", 3) == 0
    assert [store.next_rotation("+81312345678", 3) for _ in range(4)] == [0, 1, 2, 0]
    assert store.peek_rotation("+81312345678", 3) == 1  # a dry run reads, never advances
    assert store.peek_rotation("+81312345678", 3) == 1
    assert store.next_rotation("+81312345678:doctors", 2) == 0  # rotations are independent
    assert store.next_rotation("+81312345678", 2) == 0  # fewer targets now: counter mod n
    with pytest.raises(ValueError):
        store.next_rotation("x", 0)


async def test_round_robin_survives_a_restart(backend: Backend, store: BusinessStore) -> None:
    needs_persistence(backend)
    assert [store.next_rotation("+81312345678", 5) for _ in range(3)] == [0, 1, 2]
    store.peek_rotation("+81312345678", 5)  # reading is not a call
    await asyncio.sleep(0)  # the write-behind task may or may not have run: close() writes
    await store.close()
    again = await backend.open()
    assert again.next_rotation("+81312345678", 5) == 3


async def test_write_behind_persists_without_close(backend: Backend, store: BusinessStore) -> None:
    needs_persistence(backend)
    store.next_rotation("r", 4)
    store.next_rotation("r", 4)
    await store.flush()
    other = await backend.open()  # another process reading the same data
    assert other.next_rotation("r", 4) == 2


async def test_a_restart_keeps_versions_and_idempotence(
    backend: Backend, store: BusinessStore, sakura: Business
) -> None:
    needs_persistence(backend)
    v1 = (await store.apply(sakura)).version
    await store.close()
    again = await backend.open()
    found = again.version_for("+81312345678")
    assert found is not None and found.version == v1 and found.business == sakura
    assert not (await again.apply(sakura)).created


async def test_refresh_sees_an_apply_by_another_process(
    backend: Backend, store: BusinessStore, sakura: Business
) -> None:
    needs_persistence(backend)
    server, cli = store, await backend.open()
    assert not await server.refresh()  # nothing changed
    v1 = (await cli.apply(sakura)).version
    assert server.version_for("+81312345678") is None  # not yet seen ...
    assert await server.refresh()  # ... one query notices, the memory reloads
    found = server.version_for("+81312345678")
    assert found is not None and found.version == v1
    await cli.set_global_blocklist(Blocklist((BlockRule(MatchKind.EXACT, "+819011112222"),)))
    assert await server.refresh() and server.global_blocklist().rules[0].value == "+819011112222"
    assert not await server.refresh()


async def test_lookups_during_an_apply_see_old_or_new_never_nothing(
    store: BusinessStore, sakura: Business
) -> None:
    await store.apply(sakura)
    seen: list[int] = []
    stop = asyncio.Event()

    async def route_forever() -> None:
        while not stop.is_set():
            found = store.version_for("+81312345678")
            assert found is not None
            seen.append(found.version)
            await asyncio.sleep(0)

    router = asyncio.create_task(route_forever())
    applies: list[Callable[[], Awaitable[object]]] = [
        lambda m=m: store.apply(with_medium(sakura, m))
        for m in ("a", "b", "c")  # type: ignore[misc]
    ]
    for apply in applies:
        await apply()
        await asyncio.sleep(0)  # let the router run between applies on any backend
    stop.set()
    await router
    assert seen == sorted(seen) and len(set(seen)) >= 2


async def test_sqlite_a_stored_version_that_no_longer_validates_does_not_stop_the_rest(
    tmp_path: Path, sakura: Business, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    path = tmp_path / "mediasrv.db"
    store = SqliteBusinessStore(path)
    await store.open()
    other = replace(
        sakura, slug="other", numbers=(replace(sakura.numbers[1], number="+81120999999"),)
    )
    await store.apply(sakura)
    await store.apply(other)
    await store.close()
    with sqlite3.connect(path) as db:  # as if written by a laxer mediasrv
        db.execute(
            "UPDATE business_versions SET document = replace(document, 'time_zone = \"Asia/Tokyo\"', "
            "'time_zone = \"Mars/Olympus\"') WHERE business = 'sakura-dental'"
        )
    again = SqliteBusinessStore(path)
    await again.open()
    try:
        assert again.version_for("+81312345678") is None
        found = again.version_for("+81120999999")
        assert found is not None and found.business.slug == "other"
        assert "stored business 'sakura-dental'" in caplog.text and "Mars/Olympus" in caplog.text
    finally:
        await again.close()


async def test_the_callback_pool_is_stored_and_served(
    backend: Backend, store: BusinessStore, sakura: Business
) -> None:
    """Issue 12 §5: callback numbers and [callback] round-trip through every backend, and
    version_for says a callback number is one (routing asks it)."""
    assert sakura.callback.trunk == "carrier-a"  # the example documents [callback]
    pool = replace(sakura.numbers[1], number="+81355550001", callback=True)
    changed = replace(sakura, numbers=(*sakura.numbers, pool))
    await store.apply(changed, "callback pool")
    got = await store.get("sakura-dental")
    assert got == changed and got is not None and got.callback_pool == ("+81355550001",)
    nv = store.version_for("03-5555-0001")
    assert nv is not None and nv.number.callback and nv.business.callback.lease == 604800
    if backend.persistent:
        await store.close()
        again = await backend.open()
        assert (await again.get("sakura-dental")) == changed
