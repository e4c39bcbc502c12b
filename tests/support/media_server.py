"""A local HTTP server standing in for wherever a lesson's video lives: it serves the bodies,
redirects and slow streams it is given, and records every request it gets, so a test can prove
that a refused URL was never fetched (the server saw nothing)."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Route:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    length: bool = True  # send Content-Length (else the body ends when the connection closes)
    trickle: float = 0.0  # seconds between single bytes of the body (a slow, not silent, server)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class MediaServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    scheme: str = "http"

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """Its LMS_VIDEO_FETCH_ALLOW entry: this server, nothing else on loopback."""
        return f"127.0.0.1:{self.port}"

    def serve(
        self, path: str, body: bytes, *, status: int = 200, length: bool = True, trickle: float = 0
    ) -> str:
        self.routes[path] = Route(status=status, body=body, length=length, trickle=trickle)
        return f"{self.url}{path}"

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = Route(status=status, headers=(("Location", location),))
        return f"{self.url}{path}"

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]


def _handler(media: MediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            media.requests.append(Seen(path, {k.lower(): v for k, v in self.headers.items()}))
            route = media.routes.get(path, Route(status=404, body=b"not found"))
            self.send_response(route.status)
            for name, value in route.headers:
                self.send_header(name, value)
            if route.length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                if route.trickle:
                    for index in range(len(route.body)):
                        self.wfile.write(route.body[index : index + 1])
                        self.wfile.flush()
                        time.sleep(route.trickle)
                else:
                    self.wfile.write(route.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up: that is what the test wants

    return Handler


@contextmanager
def media_server(tls: ssl.SSLContext | None = None) -> Iterator[MediaServer]:
    """A server on 127.0.0.1; HTTPS with `tls` (a server context holding its certificate)."""
    media = MediaServer(scheme="https" if tls else "http")
    media.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(media))
    if tls is not None:
        media.server.socket = tls.wrap_socket(media.server.socket, server_side=True)
    media.server.daemon_threads = True
    thread = threading.Thread(target=media.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield media
    finally:
        media.server.shutdown()
        media.server.server_close()
