"""Composition root: builds every part from the config, wires them, owns start/stop order.

Start: store -> media engine -> SIP transport/UA -> HTTP. Stop (SIGTERM): refuse new INVITEs
with 503, let calls finish until the drain deadline, hang up the rest, then close in reverse
order. Nothing here runs per packet or per message.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import resource
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter

from mediasrv.api.accounts import Accounts, AccountStore, LoginThrottle
from mediasrv.api.auth import (
    TOKEN_FILE_NAME,
    StaticTokenStore,
    TokenStore,
    ensure_server_token,
)
from mediasrv.api.http import PRINCIPAL, HttpPolicy, HttpServer
from mediasrv.api.v1.root import V1Api
from mediasrv.api.v1.services import Limits, Services
from mediasrv.api.v1.store import ApiStore
from mediasrv.call_pipeline import CallPipeline
from mediasrv.callback_routing import CallbackRouter
from mediasrv.calls.admission import KnownNumberAdmission
from mediasrv.calls.caller_id import CallerId, area_table, identify_caller
from mediasrv.calls.routing import Destination, Route, Router
from mediasrv.config import (
    AnalysisSettings,
    AuthGuardConfig,
    BindingStoreKind,
    BlockedPolicy,
    CallAttributesConfig,
    Config,
    NumberConfig,
    TrunkConfig,
    UntrustedSourcePolicy,
    outbound_target,
    to_e164,
)
from mediasrv.flow_runtime import FlowRuntime, StoreRouter
from mediasrv.media.api import MediaEvent, RecordMode
from mediasrv.media.engine import MediaEngine
from mediasrv.media.recorder import repair_wav
from mediasrv.outputs.analysis_jobs import AnalysisJobQueue, AnalysisWorkerPool
from mediasrv.outputs.attributes import StaticPolicy
from mediasrv.outputs.bindings import SqliteBindingStore
from mediasrv.outputs.business_seed import import_seed
from mediasrv.outputs.business_store import SqliteBusinessStore
from mediasrv.outputs.call_events import analysis_summary
from mediasrv.outputs.callback_store import CallbackLeases
from mediasrv.outputs.calllog import CallLogStore, Disposition, SqlStatement
from mediasrv.outputs.checkpoint import LiveCallCheckpoint
from mediasrv.outputs.live_board import (
    CallDerivedStates,
    LiveBoard,
    roster_of,
    softphone_reachable,
)
from mediasrv.outputs.metrics import Metrics
from mediasrv.outputs.notify import Notifier
from mediasrv.outputs.prompts import PromptStore, open_prompt_store
from mediasrv.outputs.recordings import recording_path
from mediasrv.outputs.rejections import RejectionLog
from mediasrv.outputs.reports import ReportQuery, ReportRow, run_report
from mediasrv.sip.auth_guard import AuthGuard, GuardPolicy, GuardScope, parse_exempt
from mediasrv.sip.dialog import LocalContact, Peer
from mediasrv.sip.digest import (
    DigestAlgorithm,
    DigestCredentials,
    DigestResult,
    DigestServer,
    DigestStatus,
    parse_digest_params,
)
from mediasrv.sip.legs import InboundLeg
from mediasrv.sip.message import Request, Response
from mediasrv.sip.parser import SipParseError
from mediasrv.sip.ratelimit import Limit, SourceGuard, UnknownNumberBudget
from mediasrv.sip.registrar import (
    MemoryBindingStore,
    Registrar,
    RegistrarPolicy,
    RegistrarUser,
)
from mediasrv.sip.screening import OptionsPolicy as SipOptionsPolicy
from mediasrv.sip.screening import Screen, SourcePolicy, UntrustedPolicy
from mediasrv.sip.transaction import TimerConfig
from mediasrv.sip.transport import SipTransport, TcpLimits, derive_max_total
from mediasrv.sip.ua import Admission, UserAgent

if TYPE_CHECKING:
    from mediasrv.analysis.analyzer import AnalysisConfig

log = logging.getLogger("mediasrv.app")

class ConfigRouter:
    """Routing v1: the tracking numbers of the config file."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def route(self, dialled: str, caller: str) -> Route | None:
        number = self.config.number_for(dialled)
        if number is None:
            return None
        return self._route(number)

    def _route(self, number: NumberConfig) -> Route:
        trunk = self.config.trunk_named(number.trunk) if number.trunk else None
        credentials = None
        if trunk is not None and trunk.username:
            credentials = DigestCredentials(trunk.username, trunk.password, trunk.realm or None)
        destinations = tuple(
            Destination(uri, number.ring_timeout, credentials) for uri in number.destinations
        )
        return Route(
            tracking_number=number.number,
            business=number.business,
            medium=number.medium,
            campaign=number.campaign,
            destinations=destinations,
            record=RecordMode(number.record.value),
        )


class AuthMetrics:
    """Digest authentication results and auth-guard blocks onto Prometheus (the guard only
    knows the GuardObserver protocol)."""

    def __init__(self, metrics: Metrics) -> None:
        self._attempts = {
            result: metrics.sip_auth_attempts_total.labels(result=result)
            for result in ("ok", "stale", "failed", "rejected", "bad_uri", "challenged", "blocked")
        }
        self._blocks = {
            scope: metrics.sip_auth_blocks_total.labels(scope=scope.value) for scope in GuardScope
        }

    def attempt(self, result: str) -> None:
        self._attempts[result].inc()

    def auth_blocked(self, scope: GuardScope, seconds: float) -> None:
        self._blocks[scope].inc()


class _NoAuthMetrics:
    def attempt(self, result: str) -> None:
        return None

    def auth_blocked(self, scope: GuardScope, seconds: float) -> None:
        return None


def guard_policy(cfg: AuthGuardConfig) -> GuardPolicy:
    return GuardPolicy(
        max_failures=cfg.max_failures,
        max_user_failures=cfg.max_user_failures,
        window=cfg.window,
        backoff=cfg.backoff,
        base_block=cfg.base_block,
        max_block=cfg.max_block,
        max_entries=cfg.max_entries,
        exempt=parse_exempt(cfg.exempt),
    )


class TrunkAdmission:
    """Per-trunk source-IP ACL (403) and digest authentication as UAS (401), F1, with the
    auth guard in front of the password check (issue 8, finding 3)."""

    def __init__(
        self,
        trunks: tuple[TrunkConfig, ...],
        secret: bytes,
        guard_config: AuthGuardConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: AuthMetrics | None = None,
    ) -> None:
        cfg = guard_config or AuthGuardConfig()
        self.trunks = trunks
        self._metrics: AuthMetrics | _NoAuthMetrics = metrics or _NoAuthMetrics()
        self._drop = cfg.blocked_policy is BlockedPolicy.DROP
        self.guard = AuthGuard(guard_policy(cfg), clock, metrics) if cfg.enabled else None
        self._digest: dict[str, DigestServer] = {}
        for trunk in trunks:
            if trunk.inbound_auth:
                # RFC 8760 §2.4: offer and accept only the configured algorithm
                self._digest[trunk.name] = DigestServer(
                    trunk.realm,
                    secret,
                    (DigestAlgorithm(trunk.algorithm.value),),
                    max_failures=cfg.nonce_max_failures,
                    max_nonces=cfg.nonce_table_size,
                )

    def nonces(self) -> int:
        """Nonces held in all trunks' tables (a gauge: bounded under a flood)."""
        return sum(len(server.nonces) for server in self._digest.values())

    def __call__(self, request: Request, peer: Peer) -> Admission:
        if not self.trunks:
            return Admission.accept()  # no trunks configured: an open server (log says so)
        trunk = next((t for t in self.trunks if t.allows(peer.host)), None)
        if trunk is None:
            return Admission.reject(403, "Forbidden (source address not allowed)")
        server = self._digest.get(trunk.name)
        if server is None:
            return Admission.accept(trunk.name)
        return self._authenticate(request, peer.host, trunk, server)

    def _authenticate(
        self, request: Request, source: str, trunk: TrunkConfig, server: DigestServer
    ) -> Admission:
        guard = self.guard
        if guard is not None and guard.refused(source) is not None:
            return self._refuse()  # blocked: not even a challenge
        authorization = request.headers.get("Authorization")
        if authorization is None:
            self._metrics.attempt("challenged")
            return self._challenge(server, source)
        try:
            params = parse_digest_params(authorization)
        except SipParseError:
            self._metrics.attempt("rejected")
            return Admission.reject(403, "Forbidden (bad credentials)")
        user = params.get("username")
        account = f"{trunk.name}/{user}" if user == trunk.username else None
        if guard is not None and account is not None and guard.refused(source, account):
            return self._refuse()  # the right password is refused too while it lasts
        result = server.verify_params(
            params,
            request.method,
            lambda name: trunk.password if name == trunk.username else None,
            request.uri,
            source,
        )
        return self._answer(result, trunk.name, server, source, account)

    def _answer(
        self,
        result: DigestResult,
        trunk: str,
        server: DigestServer,
        source: str,
        account: str | None,
    ) -> Admission:
        guard = self.guard
        if result.ok:
            self._metrics.attempt("ok")
            if guard is not None:
                guard.success(source, account)
            return Admission.accept(trunk)
        if result.status is DigestStatus.STALE:
            self._metrics.attempt("stale")
            return self._challenge(server, source, stale=True)
        if result.status is DigestStatus.URI_MISMATCH:
            # RFC 7616 §3.4.6: "SHOULD return a 400 Bad Request"
            self._metrics.attempt("bad_uri")
            return Admission.reject(400, "Bad Request (digest uri is not the Request-URI)")
        if result.guess:
            self._metrics.attempt("failed")
            if guard is not None:
                guard.failure(source, account)
        else:
            self._metrics.attempt("rejected")
        return Admission.reject(403, "Forbidden (bad credentials)")

    def _challenge(self, server: DigestServer, source: str, stale: bool = False) -> Admission:
        values = server.challenges(stale=stale, source=source)
        return Admission.reject(401, None, tuple(("WWW-Authenticate", v) for v in values))

    def _refuse(self) -> Admission:
        self._metrics.attempt("blocked")
        return Admission.drop() if self._drop else Admission.reject(403, "Forbidden")


# ---- issue 10 "Registrar": the operators' registrar, wired from [registrar] ----


def make_registrar(
    config: Config, secret: bytes, guard: AuthGuard | None
) -> tuple[Registrar, SqliteBindingStore | None]:
    """The registrar of ``[registrar]`` and, with ``store = "sqlite"``, its store to open."""
    cfg = config.registrar
    users = [
        RegistrarUser(
            u.name,
            u.password or None,
            {
                alg: value
                for alg, value in (
                    (DigestAlgorithm.MD5, u.ha1_md5),
                    (DigestAlgorithm.SHA256, u.ha1_sha256),
                )
                if value
            },
        )
        for u in cfg.users
    ]
    guard_cfg = config.sip.auth_guard
    digest = DigestServer(
        cfg.realm,
        secret,
        tuple(DigestAlgorithm(a.value) for a in cfg.algorithms),
        max_failures=guard_cfg.nonce_max_failures,
        max_nonces=guard_cfg.nonce_table_size,
    )
    policy = RegistrarPolicy(
        domain=cfg.domain,
        default_expires=cfg.default_expires,
        min_expires=cfg.min_expires,
        max_expires=cfg.max_expires,
        max_contacts=cfg.max_contacts,
        drop_blocked=guard_cfg.blocked_policy is BlockedPolicy.DROP,
        networks=parse_exempt(cfg.networks),
    )
    sqlite = (
        SqliteBindingStore(config.server.db_path)
        if cfg.store is BindingStoreKind.SQLITE
        else None
    )
    store = sqlite if sqlite is not None else MemoryBindingStore()
    return Registrar(digest, users, store, policy, guard), sqlite


# ---- end of issue 10 "Registrar" wiring ----


class MetricsObserver:
    """SIP counters into Prometheus (the UA only knows the SipObserver protocol).

    The labelled children are cached: ``Counter.labels()`` costs microseconds, and every
    SIP message passes through here.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._requests: dict[tuple[str, str], Counter] = {}
        self._responses: dict[tuple[int, str, str], Counter] = {}

    def _request(self, method: str, direction: str) -> Counter:
        key = (method, direction)
        child = self._requests.get(key)
        if child is None:
            child = self.metrics.sip_requests_total.labels(method=method, direction=direction)
            if len(self._requests) < 256:  # methods come from the network: stay bounded
                self._requests[key] = child
        return child

    def _response(self, msg: Response, direction: str) -> Counter:
        method = _cseq_method(msg)
        key = (msg.status, method, direction)
        child = self._responses.get(key)
        if child is None:
            child = self.metrics.sip_responses_total.labels(
                code=str(msg.status), method=method, direction=direction
            )
            if len(self._responses) < 1024:
                self._responses[key] = child
        return child

    def message_in(self, msg: Request | Response) -> None:
        if isinstance(msg, Request):
            self._request(msg.method, "in").inc()
        else:
            self._response(msg, "in").inc()

    def message_out(self, msg: Request | Response) -> None:
        if isinstance(msg, Request):
            self._request(msg.method, "out").inc()
        else:
            self._response(msg, "out").inc()

    def malformed(self, transport: str) -> None:
        self.metrics.sip_malformed_total.labels(transport=transport).inc()

    def transaction_timeout(self, kind: str) -> None:
        self.metrics.sip_transaction_timeouts_total.labels(kind=kind).inc()

    def tcp_refused(self, reason: str) -> None:
        self.metrics.sip_tcp_refused_total.labels(reason=reason).inc()

    def tcp_idle_closed(self) -> None:
        self.metrics.sip_tcp_idle_closed_total.inc()


class AnalysisMetrics:
    """The analysis pool's hooks, onto Prometheus."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.audio_seconds = 0.0
        self.cpu_seconds = 0.0

    def analysis_queue_depth(self, depth: int) -> None:
        self.metrics.analysis_queue_depth.set(depth)

    def analysis_job_done(self, audio_seconds: float, cpu_seconds: float) -> None:
        self.metrics.analysis_jobs_total.labels(result="done").inc()
        self.audio_seconds += audio_seconds
        self.cpu_seconds += cpu_seconds

    def analysis_job_failed(self) -> None:
        self.metrics.analysis_jobs_total.labels(result="failed").inc()

    def audio_per_cpu_second(self) -> float:
        return self.audio_seconds / self.cpu_seconds if self.cpu_seconds else 0.0


def analysis_config(settings: AnalysisSettings) -> AnalysisConfig:
    # Imported here: the analysis stack (onnxruntime, scipy) costs the server process ~90 MB
    # and is only needed when analysis is enabled.
    from mediasrv.analysis.analyzer import AnalysisConfig
    from mediasrv.analysis.manifest import default_models_dir

    models_dir = (
        Path(settings.models_dir).expanduser() if settings.models_dir else default_models_dir()
    )
    language = None if settings.language == "auto" else settings.language
    return AnalysisConfig(
        models_dir=models_dir,
        whisper_model=settings.whisper_model,
        language=language,
        beam_size=settings.beam_size,
    )


def models_ready(config: AnalysisConfig) -> str | None:
    """None when the configured models are built; else what is missing and what to do."""
    from mediasrv.analysis.manifest import Manifest, ModelError

    try:
        manifest = Manifest.load(config.models_dir)
    except ModelError as exc:
        return str(exc)
    if config.whisper_model not in manifest.models:
        return (
            f"model {config.whisper_model!r} is not built in {config.models_dir}; "
            "run `mediasrv models build`"
        )
    return None


# --- file descriptors and TCP caps (issue 8, finding 4) ---
FDS_PER_CALL = 5  # two legs x (RTP + RTCP socket), plus the recording file
BASE_FD_RESERVE = 64  # store (db, WAL, shm), log, listeners, HTTP clients, worker pipes


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (the soft default of 1024 exists for
    select(), which an epoll loop does not use). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit", extra={"error": str(exc)})
    return int(soft) if soft != resource.RLIM_INFINITY else 1_048_576


def tcp_limits(config: Config, nofile: int) -> TcpLimits:
    """The TCP caps: ``[sip] tcp_max_connections``, or what RLIMIT_NOFILE leaves after
    reserving fds for every call the RTP port range can hold (:data:`FDS_PER_CALL`)."""
    sip, media = config.sip, config.media
    total = sip.tcp_max_connections
    if total == 0:
        calls = (media.rtp_port_max - media.rtp_port_min + 1) // 4
        reserve = BASE_FD_RESERVE + FDS_PER_CALL * calls
        total = derive_max_total(nofile, reserve)
        if nofile - reserve < total:
            log.warning(
                "the open-files limit cannot hold the RTP port range's calls; raise it",
                extra={"nofile": nofile, "calls": calls, "fds_needed": reserve},
            )
    return TcpLimits(sip.tcp_idle_timeout, sip.tcp_max_per_source, total)


def server_token_store(config: Config) -> tuple[TokenStore, str | None]:
    """The API's token store, and a token just generated (to show once) if there is one.

    ``[http] api_token_sha256`` / ``api_token_file`` name the server token; without either,
    one is generated at first start and its sha256 kept in the data dir. Blocking file I/O.
    """
    digest = config.http.api_token_sha256
    token = None
    if not digest:
        digest, token = ensure_server_token(config.server.data_dir)
    scoped = [(t.token_sha256, t.business) for t in config.http.business_tokens]  # issue 13
    return StaticTokenStore.with_business_tokens(digest, scoped), token


def _show_new_token(token: str, config: Config) -> None:
    """Printed once, on the console only: a secret does not belong in shipped logs."""
    print(
        f"mediasrv: generated the HTTP API token (shown only now): {token}\n"
        f"mediasrv: use it as 'Authorization: Bearer <token>'; its sha256 is in "
        f"{config.server.data_dir / TOKEN_FILE_NAME}; `mediasrv token rotate` makes a new one",
        file=sys.stderr,
        flush=True,
    )
    log.warning("generated a new HTTP API token (printed on the console, not logged)")
class SourceScreening:
    """Issue 8 wiring: who is trusted, the pre-parse guard, the screen, refused-request counts.

    One object so that ``Server`` gains a few lines only: ``guard.admit`` is the transport's
    source gate, ``screen`` the user agent's out-of-dialog screen, ``note`` counts a refusal.
    """

    def __init__(self, config: Config, metrics: Metrics, clock: Callable[[], float]) -> None:
        self.config = config
        self.metrics = metrics
        self.trunks = config.trunks
        sip = config.sip
        rl = sip.rate_limit
        self.rejections = RejectionLog(config.server.db_path, on_note=self._count)
        self._counters: dict[str, Counter] = {}
        self.policy = SourcePolicy(
            self.is_trusted,
            UntrustedPolicy(sip.untrusted_source_policy.value),
            SipOptionsPolicy(sip.options_policy.value),
        )
        self.budget = UnknownNumberBudget(
            clock,
            Limit(rl.unknown_number_rate, rl.unknown_number_burst) if rl.enabled else Limit(0, 0),
            rl.unknown_number_block_seconds,
            rl.max_sources,
        )
        self._clock = clock
        self.guard: SourceGuard | None = None

    def is_trusted(self, host: str) -> bool:
        """In a trunk's ACL; every source is, when no trunk is configured (an open server)."""
        return not self.trunks or any(t.allows(host) for t in self.trunks)

    def make_guard(self, is_peer: Callable[[str], bool]) -> SourceGuard:
        rl = self.config.sip.rate_limit
        drop = self.config.sip.untrusted_source_policy is UntrustedSourcePolicy.DROP
        self.guard = SourceGuard(
            self._clock,
            self.is_trusted,
            is_peer,
            untrusted=Limit(rl.rate, rl.burst),
            trusted=Limit(rl.trusted_rate, rl.trusted_burst),
            block_seconds=rl.block_seconds,
            max_sources=rl.max_sources,
            drop_untrusted=drop and bool(self.trunks),
            enabled=rl.enabled,
        )
        self.rejections.collectors.append(self.guard.collect)
        self.metrics.add_gauge_callback(
            "sip_blocked_sources",
            "Source addresses blocked now by the per-source request rate limit",
            lambda: float(self.guard.limiter.blocked_now()) if self.guard else 0.0,
        )
        return self.guard

    def screen(self, request: Request, peer: Peer) -> Screen:
        verdict = self.policy.screen(request, peer)
        if verdict is not Screen.PASS:
            self.rejections.note(peer.host, "untrusted-source", "")
        return verdict

    def note(self, source: str, reason: str, number: str) -> None:
        self.rejections.note(source, reason, number)

    def _count(self, reason: str, count: int) -> None:
        child = self._counters.get(reason)
        if child is None:
            child = self.metrics.sip_refused_total.labels(reason=reason)
            self._counters[reason] = child  # reasons are ours, a handful: bounded
        child.inc(count)

    async def sweep_forever(self, period: float = 30.0) -> None:
        while True:
            await asyncio.sleep(period)
            if self.guard is not None:
                self.guard.sweep()
            self.budget.sweep()


def _cseq_method(msg: Response) -> str:
    try:
        return msg.cseq[1]
    except ValueError:
        return "?"


@dataclass(slots=True)
class _Drain:
    deadline: float = 0.0


class Server:
    """The running media server."""

    def __init__(self, config: Config, tokens: TokenStore, nofile: int = 1024) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.metrics = Metrics()
        self.store = CallLogStore(config.server.db_path)
        # issue 10: business configuration (versions, version_for, round-robin pointers)
        self.business = SqliteBusinessStore(config.server.db_path)
        # issue 12 §5: callback numbers leased to callers for their emails
        self.callback_leases = CallbackLeases(
            config.server.db_path,
            self.business.get,
            count=lambda o: self.metrics.callback_leases_total.labels(result=o.value).inc(),
        )
        self.notifier = Notifier(
            config.notify,
            config.server.db_path,
            self.metrics,
            callback_number=self.callback_leases.number_for_email,
        )
        self._business_task: asyncio.Task[None] | None = None
        self.attributes = attribute_policy(config.call_attributes)
        area_table()  # read the numbering-area tables now, not at the first INVITE
        self.flows: FlowRuntime | None = None  # every call runs a plan (issue 10); in start()
        self.checkpoint = LiveCallCheckpoint(
            self.store.checkpoint_live, self._live_call_ids, config.store.checkpoint_interval
        )
        self._stopped = asyncio.Event()
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._loop_lag = 0.0
        host, port = config.server.sip_hostport
        self.advertised = config.server.advertised_host
        self.media = MediaEngine(
            self.loop,
            self.advertised if host in ("0.0.0.0", "::") else host,
            config.media.rtp_port_min,
            config.media.rtp_port_max,
            self._on_media_event,
            no_rtp_timeout=config.media.no_rtp_timeout,
            recording_format=config.media.recording_format.value,
            latch_learning=config.media.latch_learning_ms / 1000.0,
            digit_window=config.media.dtmf_merge_window_ms / 1000.0,
            inband_dtmf=config.media.inband_dtmf,
        )
        self.sip_observer = MetricsObserver(self.metrics)
        self.transport = SipTransport(
            self.loop,
            host,
            port,
            self._receive,
            self._malformed_stream,
            limits=tcp_limits(config, nofile),
            observer=self.sip_observer,
            peers_in_use=self._peers_in_use,
        )
        self.ua: UserAgent | None = None
        self.router: Router = CallbackRouter(
            ConfigRouter(config),
            self.business,
            self.callback_leases.active,
            config.trunk_named,
            ring_timeout=config.sip.ring_timeout,
        )
        self.trunk_admission = TrunkAdmission(
            config.trunks,
            secrets.token_bytes(32),
            config.sip.auth_guard,
            clock=self.loop.time,
            metrics=AuthMetrics(self.metrics),
        )
        self.screening = SourceScreening(config, self.metrics, self.loop.time)
        # issue 10: operators' softphones REGISTER here; flows call registrar.contacts_for
        self.registrar: Registrar | None = None
        self._bindings: SqliteBindingStore | None = None
        if config.registrar.enabled:
            self.registrar, self._bindings = make_registrar(
                config, secrets.token_bytes(32), self.trunk_admission.guard
            )
        # issue 13: the live board, fed where the call events are made (below)
        registrar = self.registrar
        self.board = LiveBoard(
            time.time,
            self.loop.call_later,
            CallDerivedStates(
                softphone_reachable(registrar.contacts_for if registrar else lambda _a: [1])
            ),
        )
        self.admission = KnownNumberAdmission(
            self.trunk_admission,
            # issue 10: numbers of the business store are known too
            StoreRouter(self.router, self.business),
            self.screening.note,
            self.screening.budget,
        )
        self._sweep_task: asyncio.Task[None] | None = None
        self.prompts: PromptStore | None = None  # issue 9 §5: opened in start()
        self.analysis_queue: AnalysisJobQueue | None = None
        self.analysis_pool: AnalysisWorkerPool | None = None
        self.analysis_metrics = AnalysisMetrics(self.metrics)
        hh, hp = config.server.http_hostport
        http = config.http
        policy = HttpPolicy(
            tokens,
            frozenset(http.open_endpoints),
            http.allowed_hosts,
            http.server_header,
            http.idle_timeout,
        )
        self.api_store = ApiStore(config.server.db_path)  # issue 12: tokens, idempotency keys
        acc = config.accounts  # issue 13 §5: console users and their sessions
        self.accounts = Accounts(AccountStore(config.server.db_path),
                                 LoginThrottle(acc.login_max_failures, acc.login_window,
                                               time.monotonic), acc.session_ttl)
        self.http = HttpServer(
            hh,
            hp,
            self.metrics,
            self.store,
            self.health,
            config.server.recordings_dir,
            policy=policy,
            attributes=self.attributes,
            reports=self._report,
            board=self.board,
            v1=V1Api(self._api_services(), PRINCIPAL),
        )

    def _api_services(self) -> Services:
        a = self.config.api
        return Services(
            api=self.api_store,
            accounts=self.accounts,
            businesses=self.business,
            calls=self.store,
            outbox=self.notifier.store,
            prompts=lambda: self.prompts,
            recordings_dir=self.config.server.recordings_dir,
            limits=Limits(a.max_body_bytes, a.max_upload_bytes, a.idempotency_ttl, a.max_page,
                          a.secret_overlap),
            reports=self._report,
            time_zone=self.attributes.time_zone,
            callback_leases=self.callback_leases.leases,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        await self.api_store.open()
        await self.accounts.store.open()
        await self.notifier.open()  # its tables exist before a call row carries an event
        await self.screening.rejections.open()
        await self._start_business()
        if self._bindings is not None:
            kept = await self._bindings.open()
            log.info("registrar bindings loaded", extra={"bindings": kept})
        await self._start_analysis()
        self.prompts = await self.loop.run_in_executor(
            None, open_prompt_store, self.config.prompts.dir, self.config.prompts.max_seconds
        )
        repaired = await self.loop.run_in_executor(
            None, repair_recordings, self.config.server.recordings_dir
        )
        if repaired:
            log.warning("recordings repaired after an unclean stop", extra={"files": repaired})
        await self._forget_missing_recordings()
        live = await self.store.list_calls(limit=10_000, disposition=Disposition.IN_PROGRESS)
        cut_off = await self.store.mark_unfinished()
        if cut_off.total:
            log.warning(
                "calls cut off by the previous run closed at their last checkpoint",
                extra={"answered": cut_off.answered, "failed": cut_off.failed},
            )
            await self._notify_cut_off([r.call_id for r in live])

        self.metrics.set_engine(self.media.engine_name)
        await self.transport.start()
        local = LocalContact(
            self.advertised,
            self.transport.port,
            self.config.sip.user_agent,
            max_forwards=self.config.sip.max_forwards,
        )
        sip = self.config.sip
        self.ua = UserAgent(
            self.loop,
            self.transport.send_to,
            local,
            self._on_incoming,
            admission=self.admission,
            cfg=TimerConfig(sip.t1, sip.t2, sip.t4),
            observer=self.sip_observer,
            screen=self.screening.screen,
            registrar=self.registrar,
        )
        self.transport.admit_source = self.screening.make_guard(self._is_peer).admit
        self.flows = FlowRuntime(
            loop=self.loop,
            media=self.media,
            ua=self.ua,
            router=self.router,
            calllog=CallPipeline(
                store=self.store,
                notifier=self.notifier,
                board=self.board,
                metrics=self.metrics,
                attributes=self.attributes,
                flush_media=self.media.flush,
                enqueue_analysis=self._enqueue_recording,
                clock=self.loop.time,
            ),
            metrics=self.metrics,
            recording_path=self._recording_path,
            voicemail_dir=self.config.server.recordings_dir / "voicemail",
            identify=self._identify_caller,
            valid_threshold=self.attributes.valid_threshold,
            business=self.business,
            registrar=self.registrar,
            prompts=lambda: self.prompts,
            route_phone=self._phone_uri,  # PHONE operators and callbacks: the trunk's outbound_uri
        )
        self._sweep_task = self.loop.create_task(self.screening.sweep_forever())
        self.metrics.add_gauge_callback(
            "mediasrv_sip_transactions", "SIP transactions in progress", self._transactions
        )
        self.metrics.add_gauge_callback("mediasrv_sip_dialogs", "SIP dialogs", self._dialogs)
        self.metrics.add_gauge_callback(
            "mediasrv_sip_tcp_connections",
            "SIP TCP connections open (both directions)",
            lambda: float(self.transport.tcp_connections()),
        )
        self.metrics.add_gauge_callback(
            "mediasrv_sip_tcp_connections_limit",
            "Cap on accepted SIP TCP connections (from RLIMIT_NOFILE unless configured)",
            lambda: float(self.transport.limits.max_total),
        )
        self._add_auth_gauges()
        if self.registrar is not None:  # issue 10: registered operators' phones
            registrar = self.registrar
            self.metrics.add_gauge_callback(
                "registrar_contacts",
                "Live contacts bound by the registrar (operators' phones)",
                lambda: float(sum(len(registrar.contacts_for(a)) for a in registrar.store.aors())),
            )
        self.metrics.rtp_ports_in_use.set_function(self._ports)
        self.metrics.add_gauge_callback(
            "event_loop_lag_seconds",
            "Worst event-loop wake-up delay over the last 5 s",
            lambda: self._loop_lag,
        )
        self._lag_task = self.loop.create_task(self._watch_loop_lag())
        await self.http.start()
        await self.notifier.start()
        self.checkpoint.start()
        if not self.config.trunks:
            log.warning("no [[trunks]] configured: accepting INVITEs from any source address")
        log.info(
            "mediasrv started",
            extra={
                "sip": f"{self.transport.host}:{self.transport.port}",
                "http": f"{self.config.server.http_listen}",
                "engine": self.media.engine_name,
                "pid": os.getpid(),
            },
        )

    async def _start_business(self) -> None:
        await self.business.open()
        await self.callback_leases.open()
        seeded = await import_seed(self.business, self.config)
        if any(r.created for r in seeded):
            log.info("[[numbers]] seed imported", extra={"versions": [r.version for r in seeded]})
        await self._board_rosters()
        await self._seed_board_today()
        self._business_task = self.loop.create_task(self._refresh_business())

    async def _board_rosters(self) -> None:
        """The live board's operators, from each business's configuration (issue 13)."""
        for info in await self.business.businesses():
            business = await self.business.get(info.slug)
            if business is not None:
                self.board.set_roster(business.slug, roster_of(business), business.time_zone)

    async def _seed_board_today(self, pages: int = 20, page: int = 1000) -> None:
        """Today's answered calls from the call log, so a restart keeps the board's counts."""
        since = time.time() - 86400.0  # the board keeps those of each business's own day
        for n in range(pages):
            rows = await self.store.list_calls(limit=page, offset=n * page, since=since)
            self.board.seed_today(rows)
            if len(rows) < page:
                break

    async def _refresh_business(self) -> None:
        """Pick up `mediasrv business apply` from another process (new calls only)."""
        while True:
            await asyncio.sleep(self.config.store.business_refresh_interval)
            try:
                if await self.business.refresh():
                    log.info("business configuration changed: reloaded")
                    await self._board_rosters()
            except Exception:  # the store unreachable: keep routing with what we have
                log.exception("business configuration refresh failed; keeping the last one")

    def _is_peer(self, host: str) -> bool:
        """Passes the pre-parse gate as a known peer: a dialog or transaction with us, or
        (issue 10) a source in the registrar's explicitly listed ``networks``."""
        assert self.ua is not None
        if self.ua.is_peer(host):
            return True
        registrar = self.registrar
        return registrar is not None and bool(registrar.policy.networks) and (
            registrar.policy.allows(host)
        )

    async def _forget_missing_recordings(self) -> None:
        """Rows of calls cut off by a crash name the recording they would have had; keep the
        name only where the file exists (the call may have died before it was answered)."""
        cut_off = await self.store.list_calls(limit=10_000, disposition=Disposition.IN_PROGRESS)
        for record in cut_off:
            path = record.recording_path
            if path and not await self.loop.run_in_executor(None, os.path.exists, path):
                record.recording_path = None
                await self.store.record_call(record)

    async def _start_analysis(self) -> None:
        """The durable queue always opens (jobs wait for models); workers start when the
        models are built."""
        settings = self.config.analysis
        if not settings.enabled:
            return
        self.analysis_queue = AnalysisJobQueue(self.config.server.db_path, clock=time.time)
        await self.analysis_queue.open()
        config = analysis_config(settings)
        missing = models_ready(config)
        if missing is not None:
            log.error("post-call analysis waits for its models: " + missing)
            return
        self.analysis_pool = AnalysisWorkerPool(
            self.analysis_queue,
            config,
            self._analysis_done,
            metrics=self.analysis_metrics,
            workers=settings.workers or None,
        )
        await self.analysis_pool.start()
        self.metrics.add_gauge_callback(
            "analysis_audio_seconds_per_cpu_second",
            "Seconds of audio analysed per second of worker CPU",
            self.analysis_metrics.audio_per_cpu_second,
        )

    async def _analysis_done(self, call_id: str, result: dict[str, object]) -> None:
        record = await self.store.get_call(call_id)
        also = (
            self.notifier.statements(record, ("analysis.completed",), analysis_summary(result))
            if record is not None
            else []
        )
        try:
            await self.store.update_analysis(call_id, result, also)
            self._notified(also)
        except KeyError:
            log.warning("analysis result for an unknown call", extra={"call": call_id})

    async def _notify_cut_off(self, call_ids: list[str]) -> None:
        """``call.completed`` for the calls the previous run left in progress, now closed.

        Not in the transaction that closed them (that ran before): a crash in between loses
        these events (said in the issue note)."""
        statements: list[SqlStatement] = []
        for call_id in call_ids:
            record = await self.store.get_call(call_id)
            if record is not None and record.disposition is not Disposition.IN_PROGRESS:
                statements += self.notifier.statements(record, ("call.completed",))
        if statements:
            try:
                await self.notifier.store.execute(statements)
            except Exception:
                log.exception("could not queue call.completed for the cut-off calls")

    def _notified(self, statements: list[SqlStatement]) -> None:
        if statements:
            self.notifier.committed()

    async def _enqueue_recording(
        self, call_id: str, recording: Path | None, nbytes: int, business: str
    ) -> None:
        if self.analysis_queue is None or recording is None or not nbytes:
            return
        await self.media.flush()  # the file must be complete before a worker reads it
        try:
            if self.analysis_pool is not None:
                await self.analysis_pool.enqueue(call_id, str(recording), business)
            else:
                await self.analysis_queue.enqueue(call_id, str(recording), business)
        except Exception:
            log.exception("could not queue the call for analysis", extra={"call": call_id})

    async def _watch_loop_lag(self, period: float = 0.05, window: float = 5.0) -> None:
        """How late the event loop wakes up: the worst delay over each ``window`` seconds.

        A late loop is what a carrier sees as retransmissions; this gauge shows it first.
        """
        worst = 0.0
        window_start = self.loop.time()
        while True:
            before = self.loop.time()
            await asyncio.sleep(period)
            now = self.loop.time()
            worst = max(worst, now - before - period)
            if now - window_start >= window:
                self._loop_lag = worst
                if worst > 0.2:
                    log.warning("event loop stalled", extra={"lag_s": round(worst, 3)})
                worst, window_start = 0.0, now

    def _add_auth_gauges(self) -> None:
        admission = self.trunk_admission
        self.metrics.add_gauge_callback(
            "sip_auth_nonces", "Digest nonces held (bounded per trunk)", admission.nonces
        )
        guard = admission.guard
        if guard is None:
            return
        for scope in GuardScope:
            self.metrics.add_gauge_callback(
                f"sip_auth_blocked_{scope.value}s",
                f"Keys ({scope.value}) the auth guard blocks now",
                functools.partial(guard.blocked_count, scope),
            )

    def _transactions(self) -> float:
        return float(self.ua.transaction_count()) if self.ua else 0.0

    def _peers_in_use(self) -> list[Peer]:
        return self.ua.peers_in_use() if self.ua is not None else []

    def _dialogs(self) -> float:
        return float(self.ua.dialog_count()) if self.ua else 0.0

    def _ports(self) -> float:
        return float(self.media.active_ports())

    def health(self) -> dict[str, object]:
        return {
            "status": "draining" if self._draining else "ok",
            "active_calls": len(self._live_call_ids()),
            "engine": self.media.engine_name,
            "sip_port": self.transport.port,
        }

    async def drain(self, timeout: float | None = None) -> None:
        """SIGTERM: new INVITEs get 503; calls in progress get until the deadline."""
        if self._draining:
            return
        self._draining = True
        self.metrics.draining.set(1)
        if self.ua is not None:
            self.ua.draining = True
        deadline = timeout if timeout is not None else self.config.server.drain_timeout
        active = len(self._live_call_ids())
        log.info("draining", extra={"active_calls": active, "deadline_s": deadline})
        if self.flows is not None:  # the supervisor ends what is left at the deadline
            await self.flows.drain(deadline)
        await self.stop()

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        if self._sweep_task is not None:
            self._sweep_task.cancel()
        if self.flows is not None:
            await asyncio.wait_for(self.flows.drain(0.0), 5.0)
        await self.checkpoint.stop()
        await self.http.stop()
        await self.transport.stop()
        await self.media.close()
        if self.analysis_pool is not None:
            await self.analysis_pool.stop()
        if self.analysis_queue is not None:
            await self.analysis_queue.close()
        await self.screening.rejections.close()
        await self.notifier.stop()
        if self._business_task is not None:
            self._business_task.cancel()
        await self.callback_leases.close()
        await self.business.close()
        if self._bindings is not None:
            await self._bindings.close()
        await self.api_store.close()
        await self.accounts.store.close()
        await self.store.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        if self._drain_task is None:
            self._drain_task = self.loop.create_task(self.drain())

    # -- SIP input ------------------------------------------------------------------------------
    def _receive(self, data: bytes, peer: Peer) -> None:
        if self.ua is not None:
            self.ua.receive(data, peer)

    def _malformed_stream(self, transport: str) -> None:
        self.metrics.sip_malformed_total.labels(transport=transport).inc()

    def _live_call_ids(self) -> list[str]:
        return self.flows.live_ids() if self.flows is not None else []

    def _on_incoming(self, leg: InboundLeg, trunk: str) -> None:
        assert self.flows is not None
        self.flows.on_incoming(leg, trunk)

    async def _report(self, query: ReportQuery) -> list[ReportRow]:
        return await run_report(self.store.read_connection(), query)

    def _identify_caller(self, leg: InboundLeg, trunk: str) -> CallerId:
        """From, or the trusted trunk's P-Asserted-Identity; Privacy honoured (issue 11)."""
        trunk_cfg = self.config.trunk_named(trunk) if trunk else None
        trusted = trunk_cfg is not None and trunk_cfg.trust_asserted_identity
        return identify_caller(
            leg.caller_user, leg.caller_display, leg.asserted_identities, leg.privacy, trusted
        )

    def _recording_path(self, call_id: str, start_time: float) -> Path:
        return recording_path(self.config.server.recordings_dir, call_id, start_time)

    def _phone_uri(self, number: str, trunk: str) -> str | None:
        """A phone number dialled through ``trunk``: its ``outbound_uri`` filled in."""
        cfg = self.config.trunk_named(trunk)
        if cfg is None or not cfg.outbound_uri:
            return None
        return outbound_target(cfg.outbound_uri, to_e164(number) or number)

    def _on_media_event(self, event: MediaEvent) -> None:
        if self.flows is not None:
            self.flows.media_event(event)


def attribute_policy(cfg: CallAttributesConfig) -> StaticPolicy:
    """Valid threshold, duplicate window and time zone from ``[call_attributes]``."""
    return StaticPolicy(cfg.valid_call_seconds, cfg.duplicate_window, cfg.time_zone)


def repair_recordings(root: Path) -> int:
    """Fix the WAV headers of recordings cut off by a kill (runs in an executor at start).

    Only files modified in the last two days are looked at: older ones were closed cleanly
    or repaired by an earlier start.
    """
    if not root.is_dir():
        return 0
    horizon = time.time() - 2 * 86400
    repaired = 0
    for path in root.rglob("*.wav"):
        try:
            if path.stat().st_mtime >= horizon and repair_wav(path):
                repaired += 1
        except OSError as exc:
            log.warning("cannot check recording", extra={"path": str(path), "error": str(exc)})
    return repaired


async def serve(config: Config) -> int:
    """Run until SIGTERM/SIGINT has drained the server. Returns the exit code."""
    config.server.data_dir.mkdir(parents=True, exist_ok=True)
    Path(config.server.recordings_dir).mkdir(parents=True, exist_ok=True)
    nofile = raise_open_files_limit()
    loop = asyncio.get_running_loop()
    tokens, new_token = await loop.run_in_executor(None, server_token_store, config)
    server = Server(config, tokens, nofile)
    await server.start()
    if new_token is not None:
        _show_new_token(new_token, config)
    log.info(
        "SIP TCP limits",
        extra={
            "open_files": nofile,
            "max_connections": server.transport.limits.max_total,
            "max_per_source": server.transport.limits.max_per_source,
            "idle_timeout_s": server.transport.limits.idle_timeout,
        },
    )
    # Long-lived start-up objects leave the collector's view. Young collections stay
    # frequent and small: measured at 400 calls/s, rare big young collections (threshold
    # 50,000) paused the loop for 0.57 s, which SIPp saw as retransmissions.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    server.install_signal_handlers()
    await server.wait_stopped()
    return 0
