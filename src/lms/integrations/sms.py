"""SMS through an HTTP provider speaking Twilio's Messages API, else a log line (development).

LMS_SMS_URL is the API base with the account SID and auth token as its user and password,
e.g. https://ACxxxx:token@api.twilio.com; the message goes to
POST {base}/2010-04-01/Accounts/{sid}/Messages.json as form fields To, From, Body.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

import httpx

from lms.integrations.mail import PermanentDeliveryError

log = logging.getLogger("lms.sms")

SEND_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Sms:
    to: str
    body: str


class SmsSender(Protocol):
    async def send(self, sms: Sms) -> None: ...

    async def close(self) -> None: ...


class TwilioSmsSender:
    def __init__(self, url: str, sender: str | None) -> None:
        parts = urlsplit(url)
        if not parts.username or not parts.password:
            raise ValueError("LMS_SMS_URL needs the account SID and auth token as user:password")
        self.account_sid = unquote(parts.username)
        self.auth_token = unquote(parts.password)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        self.base_url = f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"
        self.sender = sender
        self._client: httpx.AsyncClient | None = None

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{quote(self.account_sid)}/Messages.json"

    async def send(self, sms: Sms) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=SEND_TIMEOUT)
        form = {"To": sms.to, "Body": sms.body}
        if self.sender:
            form["From"] = self.sender
        response = await self._client.post(
            self.messages_url, data=form, auth=(self.account_sid, self.auth_token)
        )
        if response.is_success:
            return
        detail = f"SMS provider answered {response.status_code}: {response.text[:300]}"
        # 4xx other than throttling and auth trouble means this message will never go through.
        if 400 <= response.status_code < 500 and response.status_code not in (401, 403, 408, 429):
            raise PermanentDeliveryError(detail)
        raise RuntimeError(detail)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class LogSmsSender:
    async def send(self, sms: Sms) -> None:
        log.info("sms (not sent, LMS_SMS_URL unset) to=%s: %s", sms.to, sms.body)

    async def close(self) -> None:
        return None


def make_sms_sender(sms_url: str | None, sender: str | None) -> SmsSender:
    return TwilioSmsSender(sms_url, sender) if sms_url else LogSmsSender()
