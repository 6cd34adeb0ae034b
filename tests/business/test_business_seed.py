"""``[[numbers]]`` of the static config become seed businesses in the store (issue 10 §1)."""

from __future__ import annotations

from pathlib import Path

from mediasrv.calls.business import ActionKind, OperatorKind
from mediasrv.config import load_config
from mediasrv.outputs.business_seed import import_seed, seed_businesses
from mediasrv.outputs.business_store import SqliteBusinessStore

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "business.example.toml"

SEED = """
[sip]
ring_timeout = 25.0

[[numbers]]
number = "03-1234-5678"
business = "Acme Dental"
medium = "web"
campaign = "spring"
destinations = ["sip:op1@127.0.0.1:5090", "sip:op2@127.0.0.1:5092"]
ring_timeout = 12

[[numbers]]
number = "0312345679"
business = "Acme Dental"
destinations = ["sip:op1@127.0.0.1:5090"]
record = "caller"

[[numbers]]
number = "+815011112222"
destinations = ["sip:desk@127.0.0.1:5094"]
"""


def config(tmp_path: Path, text: str = SEED):  # type: ignore[no-untyped-def]
    path = tmp_path / "mediasrv.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, {"server.data_dir": str(tmp_path / "var")})


def test_numbers_become_businesses_with_a_forwarding(tmp_path: Path) -> None:
    acme, default = seed_businesses(config(tmp_path).numbers)
    assert (acme.slug, acme.name, default.slug) == ("acme-dental", "Acme Dental", "default")
    assert [(o.name, o.kind, o.target) for o in acme.operators] == [
        ("op1", OperatorKind.SIP_URI, "sip:op1@127.0.0.1:5090"),
        ("op2", OperatorKind.SIP_URI, "sip:op2@127.0.0.1:5092"),
    ]
    first, second = acme.numbers
    assert first.number == "+81312345678" and first.medium == "web"
    fwd = first.flow.forwarding
    assert fwd is not None and [(t.operator, t.ring_timeout) for t in fwd.targets] == [
        ("op1", 12.0),
        ("op2", 12.0),
    ]
    assert fwd.on_exhausted.kind is ActionKind.HANGUP  # as today: every target failed, end
    assert second.record.value == "caller"
    assert (
        second.flow.forwarding is not None
        and second.flow.forwarding.targets[0].ring_timeout == 25.0
    )


async def test_the_seed_is_imported_idempotently_and_yields_to_business_files(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path)
    store = SqliteBusinessStore(cfg.server.db_path)
    await store.open()
    try:
        first = await import_seed(store, cfg)
        assert [r.created for r in first] == [True, True]
        again = await import_seed(store, cfg)
        assert [r.created for r in again] == [False, False]
        found = store.version_for("0312345678")
        assert found is not None and found.business.slug == "acme-dental"
        # a changed [[numbers]] and a restart: the seed-managed business follows
        changed = config(tmp_path, SEED.replace('medium = "web"', 'medium = "tv"'))
        [acme, _] = await import_seed(store, changed)
        assert acme.created
        # once applied from a business file, the seed leaves that business alone
        from mediasrv.business_file import load_business_text

        text = EXAMPLE.read_text(encoding="utf-8").replace(
            'slug = "sakura-dental"', 'slug = "default"'
        )
        text = text.replace("03-1234-5678", "03-5555-0001")  # not Acme's number
        await store.apply(load_business_text(text), "default.toml")
        results = await import_seed(store, cfg)
        assert len(results) == 1  # only acme-dental
        assert store.version_for("+815011112222") is None  # the file dropped the seed's number
        history = await store.versions("default")
        assert history[-1].source == "default.toml"
    finally:
        await store.close()
