"""What the v1 resources work on: the stores, passed in from app.py (no singletons)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from mediasrv.api.accounts import Accounts
from mediasrv.api.v1.store import ApiStore
from mediasrv.calls.callback import Lease
from mediasrv.outputs.business_store import BusinessStore
from mediasrv.outputs.calllog import CallLog
from mediasrv.outputs.outbox import OutboxStore
from mediasrv.outputs.prompts import PromptStore
from mediasrv.outputs.reports import ReportQuery, ReportRow

__all__ = ["Limits", "Services"]


@dataclass(frozen=True)
class Limits:
    """The ``[api]`` configuration block."""

    max_body_bytes: int = 1_048_576  # JSON bodies (a business file fits easily)
    max_upload_bytes: int = 20_971_520  # a prompt WAV upload
    idempotency_ttl: float = 86400.0  # seconds an Idempotency-Key is remembered
    max_page: int = 500  # items per page
    secret_overlap: float = 86400.0  # a rotated webhook secret keeps signing this long


@dataclass
class Services:
    api: ApiStore
    businesses: BusinessStore
    calls: CallLog
    outbox: OutboxStore | None
    prompts: Callable[[], PromptStore | None]  # opened after the HTTP server is built
    recordings_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    prompt_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    accounts: Accounts | None = None  # issue 13 §5: console users (None: no login)
    # issue 13 §3: the reports of the tenant paths (None: not on this server -> 503)
    reports: Callable[[ReportQuery], Awaitable[list[ReportRow]]] | None = None
    time_zone: Callable[[str], ZoneInfo] = field(default=lambda _business: ZoneInfo("Asia/Tokyo"))
    # every callback-number lease (issue 12 §5), active or expired; None: none kept here
    callback_leases: Callable[[], list[Lease]] | None = None
