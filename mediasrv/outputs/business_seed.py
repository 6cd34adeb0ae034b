"""``[[numbers]]`` of the static config as a seed of the business store (issue 10 §1).

The static TOML keeps server settings; its ``[[numbers]]`` (today's routing: a number, an
ordered list of operator URIs, a ring timeout) become businesses in the store at start. A
business the seed made is re-seeded at each start (so editing ``[[numbers]]`` and restarting
still changes routing, as before), but once a business has been applied from a business file
(``mediasrv business apply``) the seed leaves it alone and says so in the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from mediasrv.calls.business import (
    Action,
    ActionKind,
    Business,
    FlowConfig,
    Forwarding,
    Operator,
    OperatorKind,
    Target,
    TrackingNumber,
)
from mediasrv.config import Config, ConfigError, NumberConfig
from mediasrv.outputs.business_store import ApplyResult, BusinessStore

__all__ = ["SEED_SOURCE_PREFIX", "import_seed", "seed_businesses"]

log = logging.getLogger(__name__)

SEED_SOURCE_PREFIX = "seed:"
DEFAULT_SEED_SLUG = "default"


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-_")[:63]
    return slug or DEFAULT_SEED_SLUG


def seed_businesses(numbers: Sequence[NumberConfig]) -> list[Business]:
    """One business per ``business`` name of ``[[numbers]]`` (``"default"`` for none)."""
    grouped: dict[str, tuple[str, list[NumberConfig]]] = {}
    for num in numbers:
        if num.e164 is None or len(num.e164) < 8:
            log.warning("[[numbers]] seed: %r has no E.164 form; not imported", num.number)
            continue
        slug = _slug(num.business)
        grouped.setdefault(slug, (num.business, []))[1].append(num)
    return [_business(slug, name, nums) for slug, (name, nums) in grouped.items()]


def _business(slug: str, name: str, numbers: Sequence[NumberConfig]) -> Business:
    operators: dict[tuple[str, str], Operator] = {}
    tracking: list[TrackingNumber] = []
    for num in numbers:
        targets = []
        for uri in num.destinations:
            key = (uri, num.trunk)
            if key not in operators:
                op_name = f"op{len(operators) + 1}"
                # shared: a [[numbers]] destination takes many calls at once, as it always did
                operators[key] = Operator(
                    op_name, OperatorKind.SIP_URI, uri, trunk=num.trunk, shared=True
                )
            targets.append(Target(operator=operators[key].name, ring_timeout=num.ring_timeout))
        forwarding = Forwarding("main", tuple(targets), on_exhausted=Action(ActionKind.HANGUP))
        tracking.append(
            TrackingNumber(
                number=num.e164 or "",  # filtered above
                medium=num.medium,
                campaign=num.campaign,
                record=num.record,
                flow=FlowConfig(forwarding=forwarding),
            )
        )
    return Business(slug, name=name, operators=tuple(operators.values()), numbers=tuple(tracking))


async def import_seed(store: BusinessStore, config: Config) -> list[ApplyResult]:
    """Apply the seed businesses that are new or still seed-managed; skip the others."""
    source = f"{SEED_SOURCE_PREFIX}{config.source}"
    results = []
    for business in seed_businesses(config.numbers):
        history = await store.versions(business.slug)
        if history and not history[-1].source.startswith(SEED_SOURCE_PREFIX):
            log.warning(
                "[[numbers]] seed: business %r is managed by a business file (version %d, "
                "from %s); the seed leaves it alone",
                business.slug, history[-1].version, history[-1].source or "?",
            )  # fmt: skip
            continue
        try:
            results.append(await store.apply(business, source))
        except (
            ConfigError,
            ValueError,
        ) as exc:  # BusinessConflict is a ValueError: the others still seed
            log.warning("[[numbers]] seed: business %r not imported: %s", business.slug, exc)
    return results
