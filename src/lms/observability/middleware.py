"""The outermost ASGI layer: request id, one JSON log line per request, HTTP metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from lms.observability.logs import request_id_var
from lms.observability.metrics import HTTP_DURATION, HTTP_REQUESTS

log = logging.getLogger("lms.request")

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is kept (to trace through a gateway) only when it is short and plain.
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

ASGIApp = Any


def _incoming_request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(value):
            return value.decode()
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Wraps the whole Litestar ASGI chain, so 404s and errors are logged and counted too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope["headers"])
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()
        header = (REQUEST_ID_HEADER, request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            # The route template ("/courses/{course_id:uuid}"), never the raw path: bounded labels.
            route = scope.get("path_template") or "unmatched"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(duration)
            client = scope.get("client")
            log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(duration * 1000, 3),
                    "client": client[0] if client else None,
                },
            )
            request_id_var.reset(token)
