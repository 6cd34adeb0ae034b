"""Email notifications (F22): per-outcome templates in Japanese and English, rendered with
Jinja2 (the HTML part autoescaped) and sent with aiosmtplib.

Email endpoints are outbox endpoints whose URL is ``mailto:addr[,addr]?lang=ja|en``, so an
email is retried, logged, replayed and recovered exactly as a webhook is
(:mod:`mediasrv.outputs.outbox`). Headers are RFC 2047/6532-encoded by the standard library's
SMTP policy, so a Japanese subject arrives intact; the Message-ID is derived from the event id,
so a retried email is recognisably the same message.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosmtplib
import jinja2

__all__ = [
    "LANGUAGES",
    "MailSettings",
    "MailTarget",
    "Mailer",
    "SendResult",
    "parse_mailto",
    "template_for",
]

LANGUAGES = ("ja", "en")
_TEMPLATES = "mediasrv.outputs"
_DISPOSITION_TEMPLATES = {
    "answered": "answered",
    "after-hours": "after-hours",
    "busy": "busy",
    "no-answer": "no-answer",
}
_DISPOSITION_LABELS = {
    "ja": {
        "answered": "応答",
        "busy": "話中",
        "no-answer": "不在",
        "after-hours": "時間外",
        "blocked": "着信拒否",
        "abandoned": "放棄",
        "voicemail": "伝言",
        "failed": "失敗",
    },
    "en": {},
}


def template_for(event_type: str, data: Mapping[str, Any]) -> str | None:
    """Which template an event gets (None: the event sends no email)."""
    if event_type == "call.completed":
        return _DISPOSITION_TEMPLATES.get(str(data.get("disposition", "")))
    if event_type == "voicemail.created":
        return "voicemail"
    if event_type == "analysis.completed":
        return "analysis"
    return None


@dataclass(frozen=True, slots=True)
class MailTarget:
    recipients: tuple[str, ...]
    lang: str


def parse_mailto(url: str) -> MailTarget:
    """``mailto:a@example.com,b@example.com?lang=en`` (RFC 6068); ValueError if unusable."""
    parts = urlsplit(url)
    if parts.scheme != "mailto":
        raise ValueError(f"not a mailto: URL: {url!r}")
    recipients = tuple(unquote(a).strip() for a in parts.path.split(",") if a.strip())
    if not recipients or any("@" not in a or any(c in a for c in "\r\n<>") for a in recipients):
        raise ValueError(f"mailto: URL needs addresses like name@example.com: {url!r}")
    lang = parse_qs(parts.query).get("lang", ["ja"])[0]
    if lang not in LANGUAGES:
        raise ValueError(f"mailto: lang must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    return MailTarget(recipients, lang)


@dataclass(frozen=True, slots=True)
class MailSettings:
    """``[notify.smtp]`` in the server configuration."""

    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False  # STARTTLS after connecting (port 587)
    tls: bool = False  # TLS from the first byte (port 465)
    username: str | None = None
    password: str | None = None
    sender: str = "mediasrv@localhost"
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    code: int | None  # the SMTP reply code (250 on success)
    permanent: bool  # a 5xx reply: retrying will not help
    detail: str


def _talk(seconds: object) -> str:
    try:
        total = round(float(str(seconds)))
    except ValueError:
        return ""
    return f"{total // 60}:{total % 60:02d}"


def _when(ts: object, zone: str) -> str:
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("Asia/Tokyo")
    try:
        return datetime.fromtimestamp(float(str(ts)), tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (ValueError, OverflowError, OSError):
        return ""


class Mailer:
    """Renders and sends one notification email."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        loader = jinja2.PackageLoader(_TEMPLATES, "templates/email")
        self._html = jinja2.Environment(
            loader=loader, autoescape=True, undefined=jinja2.ChainableUndefined
        )
        self._text = jinja2.Environment(
            loader=loader, autoescape=False, undefined=jinja2.ChainableUndefined
        )
        source = resources.files(_TEMPLATES).joinpath("templates/email/subjects.toml")
        self._subjects: dict[str, dict[str, str]] = tomllib.loads(source.read_text("utf-8"))

    def render(
        self,
        event_type: str,
        data: Mapping[str, Any],
        target: MailTarget,
        message_id: str,
    ) -> EmailMessage | None:
        """The message for an event, or None when the event sends no email."""
        name = template_for(event_type, data)
        if name is None:
            return None
        lang = target.lang
        context: dict[str, Any] = {"transcript": [], **data, "lang": lang}
        context["talk"] = _talk(data.get("talk_seconds", 0))
        context["when"] = _when(data.get("start_time"), str(data.get("time_zone", "Asia/Tokyo")))
        disposition = str(data.get("disposition", ""))
        context["disposition"] = _DISPOSITION_LABELS[lang].get(disposition, disposition)
        subject = self._text.from_string(self._subjects[lang][name]).render(context)
        subject = " ".join(subject.split())  # no header injection through a display name
        context["subject"] = subject
        msg = EmailMessage(policy=SMTP)
        msg["Subject"] = subject
        msg["From"] = self.settings.sender
        msg["To"] = ", ".join(target.recipients)
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{message_id}@mediasrv>"
        msg.set_content(self._text.get_template(f"{lang}/{name}.txt").render(context))
        msg.add_alternative(
            self._html.get_template(f"{lang}/{name}.html").render(context), subtype="html"
        )
        return msg

    async def send(self, msg: EmailMessage) -> SendResult:
        s = self.settings
        try:
            _errors, reply = await aiosmtplib.send(
                msg,
                hostname=s.host,
                port=s.port,
                start_tls=s.starttls,
                use_tls=s.tls,
                username=s.username,
                password=s.password,
                timeout=s.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            return SendResult(False, exc.code, 500 <= exc.code < 600, exc.message[:300])
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return SendResult(False, None, False, f"{type(exc).__name__}: {exc}"[:300])
        return SendResult(True, 250, False, reply[:300])
