"""A local HTTP server speaking Twilio's Messages API (the part we use): it checks the account
path and basic auth, keeps each accepted message, and can be told to fail."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

ACCOUNT_SID = "ACtest0000000000000000000000000000"
AUTH_TOKEN = "test-auth-token"


@dataclass
class SmsProvider:
    messages: list[dict[str, str]] = field(default_factory=list)
    fail_with: int | None = None  # answer this status instead of accepting
    requests: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{ACCOUNT_SID}:{AUTH_TOKEN}@127.0.0.1:{self.server.server_port}"

    def clear(self) -> None:
        self.messages.clear()
        self.fail_with = None
        self.requests = 0

    def to(self, number: str) -> list[dict[str, str]]:
        return [m for m in self.messages if m["To"] == number]

    async def wait_for(self, number: str, count: int = 1, within: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if len(self.to(number)) >= count:
                return self.to(number)[count - 1]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no SMS #{count} to {number} within {within}s")


def code_in_sms(message: dict[str, str]) -> str:
    codes = re.findall(r"(?<!\d)\d{6}(?!\d)", message["Body"])
    assert len(codes) == 1, codes
    return str(codes[0])


def _handler(provider: SmsProvider) -> type[BaseHTTPRequestHandler]:
    expected_path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _answer(self, status: int, body: dict[str, object]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            provider.requests += 1
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path != expected_path:
                return self._answer(404, {"code": 20404, "message": "not found"})
            if self.headers.get("Authorization") != expected_auth:
                return self._answer(401, {"code": 20003, "message": "authenticate"})
            if provider.fail_with:
                return self._answer(
                    provider.fail_with, {"code": 30001, "message": "provider trouble"}
                )
            if not form.get("To", "").startswith("+") or not form.get("Body"):
                return self._answer(400, {"code": 21211, "message": "invalid 'To' phone number"})
            provider.messages.append(form)
            return self._answer(201, {"sid": f"SM{uuid.uuid4().hex}", "status": "queued", **form})

    return Handler


def start_sms_provider() -> SmsProvider:
    provider = SmsProvider()
    provider.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    threading.Thread(target=provider.server.serve_forever, daemon=True).start()
    return provider
