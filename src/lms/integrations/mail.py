"""Email: SMTP through aiosmtplib when LMS_SMTP_URL is set, else a log line (development)."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

log = logging.getLogger("lms.mail")

SEND_TIMEOUT = 20.0


class PermanentDeliveryError(Exception):
    """The provider refused this message for good (bad address): retrying will not help."""


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    html: str | None = None


class Mailer(Protocol):
    async def send(self, email: Email) -> None: ...


def build_message(sender: str, email: Email) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">") or None)
    message.set_content(email.text)
    if email.html:
        message.add_alternative(email.html, subtype="html")
    return message


class SmtpMailer:
    """smtp://[user:password@]host[:port][?starttls=true|false] or smtps:// (implicit TLS).
    Without the query, STARTTLS is used when the server offers it."""

    def __init__(self, url: str, sender: str) -> None:
        parts = urlsplit(url)
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        self.sender = sender
        self.hostname = parts.hostname or "localhost"
        self.implicit_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.implicit_tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        starttls = query.get("starttls")
        self.start_tls: bool | None = None if starttls is None else starttls in ("1", "true", "yes")
        self.verify_tls = query.get("verify", "true") not in ("0", "false", "no")

    async def send(self, email: Email) -> None:
        context = ssl.create_default_context()
        if not self.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            await aiosmtplib.send(
                build_message(self.sender, email),
                hostname=self.hostname,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.implicit_tls,
                start_tls=False if self.implicit_tls else self.start_tls,
                tls_context=context,
                timeout=SEND_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentDeliveryError(f"recipient refused: {exc}") from exc
            raise


class LogMailer:
    """Development: the message goes to the log (codes included), nothing is sent."""

    async def send(self, email: Email) -> None:
        log.info(
            "email (not sent, LMS_SMTP_URL unset) to=%s subject=%r\n%s",
            email.to,
            email.subject,
            email.text,
        )


def make_mailer(smtp_url: str | None, sender: str) -> Mailer:
    return SmtpMailer(smtp_url, sender) if smtp_url else LogMailer()
