"""A webhook receiver on loopback that verifies every delivery with the `standardwebhooks`
library (the reference implementation, not our code), records what it accepted, and can be made
to fail (an HTTP status), to be slow, or be stopped and started again on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    id: str
    type: str
    data: dict[str, Any]
    body: bytes


@dataclass
class WebhookReceiver:
    secret: str = ""
    answer: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    port: int = 0
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError as exc:
                    with receiver.lock:
                        receiver.rejected.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                status = receiver.answer
                if status < 300:
                    payload = json.loads(body)
                    with receiver.lock:
                        receiver.received.append(
                            Received(
                                self.headers["webhook-id"], payload["type"], payload["data"], body
                            )
                        )
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a slow receiver)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_port)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: new connections are refused (a request in flight may still be answered)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def ids(self) -> list[str]:
        with self.lock:
            return [r.id for r in self.received]
