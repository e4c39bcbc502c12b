"""A real Stripe-compatible server for the payment tests: localstripe (a development dependency,
GPL-3.0, so only ever run as its own process), and a loopback relay that takes its signed
webhook deliveries and hands them, byte for byte, to the app under test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from lms.netutil import free_port


def localstripe_binary() -> Path:
    path = Path(sys.executable).parent / "localstripe"
    assert path.is_file(), "localstripe is a development dependency: `uv sync` installs it"
    return path


@dataclass
class LocalStripe:
    url: str
    process: subprocess.Popen[bytes]

    def register_webhook(self, name: str, url: str, secret: str) -> None:
        response = httpx.post(
            f"{self.url}/_config/webhooks/{name}", data={"url": url, "secret": secret}
        )
        assert response.status_code == 200, response.text


@contextlib.contextmanager
def running_localstripe(log: Path) -> Iterator[LocalStripe]:
    port = free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(localstripe_binary()), "--port", str(port), "--from-scratch"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "localstripe did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/balance", auth=("sk_test_x", "")).status_code < 500:
                    break
            time.sleep(0.1)
        yield LocalStripe(url, proc)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass(frozen=True)
class Delivery:
    body: bytes
    signature: str


Forward = Callable[[bytes, str], Awaitable[int]]


@dataclass
class WebhookRelay:
    """An HTTP endpoint on loopback for localstripe's deliveries. Each is kept, and forwarded to
    the app unless `drop` is set (a webhook lost on the way)."""

    forward: Forward
    deliveries: list[Delivery] = field(default_factory=list)
    drop: bool = False
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/stripe"

    def clear(self) -> None:
        self.deliveries.clear()
        self.drop = False

    def of_type(self, event_type: str) -> list[Delivery]:
        import json

        return [d for d in self.deliveries if json.loads(d.body)["type"] == event_type]

    async def wait_for(self, event_type: str, within: float = 15.0) -> Delivery:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.of_type(event_type)
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event_type} delivery within {within}s")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            delivery = Delivery(body, headers.get("stripe-signature", ""))
            self.deliveries.append(delivery)
            status = 200 if self.drop else await self.forward(delivery.body, delivery.signature)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
