"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for reading mailed codes.

It can be told to refuse mail with a temporary error, to play a provider outage.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

SIX_DIGITS = re.compile(r"(?<!\d)\d{6}(?!\d)")


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    refuse_with: str | None = None  # e.g. "451 4.3.0 try again later"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse_with:
            return self.refuse_with
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def clear(self) -> None:
        self.messages.clear()
        self.refuse_with = None

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    async def wait_for(self, address: str, count: int = 1, within: float = 10.0) -> EmailMessage:
        """The `count`-th message to `address`, waiting for the outbox to deliver it."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            received = self.to(address)
            if len(received) >= count:
                return received[count - 1]
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"no message #{count} to {address} within {within}s (got {len(self.to(address))})"
        )


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def code_in(message: EmailMessage) -> str:
    """The message's code: the text must hold exactly one 6-digit number."""
    codes = SIX_DIGITS.findall(text_of(message))
    assert len(codes) == 1, f"expected one 6-digit number, got {codes}"
    return str(codes[0])


def start_smtp_server(port: int) -> tuple[Controller, Mailbox]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, mailbox
