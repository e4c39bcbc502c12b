"""A worker's Prometheus endpoint (LMS_WORKER_METRICS_PORT): prometheus_client's WSGI app in a
daemon thread, behind the same access rule as the API's /metrics (LMS_METRICS_TOKEN,
LMS_METRICS_ALLOW). prometheus_client's own start_http_server cannot check a caller."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from lms.observability.metrics_access import MetricsAccess, Verdict

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    """No stderr line per scrape: the worker's log is JSON lines."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def guarded(access: MetricsAccess) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The metrics WSGI app, answering 403 / 401 (in the API's error shape) to callers `access`
    refuses."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        verdict = access.check(environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION"))
        if verdict is Verdict.ALLOWED:
            exposition: Iterable[bytes] = metrics(environ, start_response)
            return exposition
        if verdict is Verdict.ADDRESS_REFUSED:
            status, code, extra = "403 Forbidden", 403, []
            detail = "metrics are not served to this address"
        else:
            status, code, extra = "401 Unauthorized", 401, [("WWW-Authenticate", "Bearer")]
            detail = "metrics need the bearer token set in LMS_METRICS_TOKEN"
        body = json.dumps({"status_code": code, "detail": detail}).encode()
        start_response(status, [("Content-Type", "application/json"), *extra])
        return [body]

    return app


def serve_metrics(host: str, port: int, access: MetricsAccess) -> WSGIServer:
    """Serve this process's metrics on host:port until the returned server's shutdown()."""

    class Server(ThreadingWSGIServer):
        # IPv4 or IPv6, whichever `host` is.
        address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    server = make_server(host, port, guarded(access), Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="lms-metrics", daemon=True).start()
    return server
