"""The outermost ASGI layer: request id, one JSON log line per request, HTTP metrics."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import weakref
from typing import Any

import msgspec

from lms.observability.flush_soon import FlushSoon
from lms.observability.logs import BatchingStreamHandler, JsonFormatter, request_id_var
from lms.observability.metrics import HTTP_DURATION, HTTP_REQUESTS
from lms.observability.tally import TALLY
from lms.request_headers import has_repeats, header_map

log = logging.getLogger("lms.request")

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is kept (to trace through a gateway) only when it is short and plain.
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

ASGIApp = Any


class RequestIds:
    """Unique 32-hex-digit request ids: a random prefix for this process, then a counter. An
    id only has to be unique, not secret, and this costs a tenth of uuid4 (a system call)."""

    def __init__(self) -> None:
        self._start()
        # Forked after it was made (Granian's workers are forks): a prefix of its own, set in
        # the child as it starts rather than checked (a system call) on every request. A weak
        # reference: the hook stays registered for the process's life, the ids need not.
        started = weakref.WeakMethod(self._start)
        os.register_at_fork(after_in_child=lambda: (start := started()) and start())

    def _start(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(4)))

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def _incoming_request_id(scope: dict[str, Any], ids: RequestIds) -> str:
    """The caller's X-Request-ID when it is plain (the first plain one, if it came more than
    once), else a new id."""
    if has_repeats(scope):
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        for name, sent in raw:
            if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(sent):
                return sent.decode()
        return ids.next()
    value = header_map(scope).get(REQUEST_ID_HEADER)
    if value is not None and _VALID_REQUEST_ID.match(value):
        return value.decode()
    return ids.next()


class RequestContextMiddleware:
    """Wraps the whole Litestar ASGI chain, so 404s and errors are logged and counted too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.ids = RequestIds()
        self.access_log = AccessLog()
        # The labelled series, looked up once each: labels() costs more than the increment.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope, self.ids)
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
            # The route template ("/courses/{course_id}"), never the raw path: bounded labels.
            route = scope.get("path_template") or "unmatched"
            method = scope["method"]
            self._count(method, route, status, duration)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                self.access_log.add(
                    method,
                    scope["path"],
                    route,
                    status,
                    duration,
                    client[0] if client else None,
                    request_id,
                )
            request_id_var.reset(token)

    def _count(self, method: str, route: str, status: int, duration: float) -> None:
        counted = self._counted.get((method, route, status))
        if counted is None:
            counted = self._counted[method, route, status] = HTTP_REQUESTS.labels(
                method, route, str(status)
            )
        timed = self._timed.get((method, route))
        if timed is None:
            timed = self._timed[method, route] = HTTP_DURATION.labels(method, route)
        TALLY.inc(counted)
        TALLY.observe(timed, duration)


class AccessLine(msgspec.Struct):
    """A request's JSON line, its keys in the order JsonFormatter writes them for the record
    AccessLog makes (the standard keys, then the record's extras as they were set)."""

    ts: str
    level: str
    logger: str
    msg: str
    request_id: str
    method: str
    path: str
    route: str
    status: int
    duration_ms: float
    client: str | None


_LINE_ENCODER = msgspec.json.Encoder()


class AccessLog:
    """The per-request lines, gathered as plain tuples and handed to logging together, at most
    FLUSH_DELAY later (or once MAX_PENDING are waiting). Made one at a time, in between the
    requests' own work, a line cost some 30 us of CPU under load (py-spy: making the record,
    formatting it, writing it, each with cold caches); made in a batch, a few. Each line
    carries the time the request ended. stop() (at shutdown) writes what is pending.

    Where the app's own JSON handler alone would write them (the usual case: `lms.request`
    has no handler or filter of its own and the root logger has just that handler), the lines
    are encoded here, byte for byte as the formatter writes them, and handed to the handler
    whole: a LogRecord and the formatter's generic work cost some 6 us a request, 5 % of a
    course page's CPU (bench: tests/unit/test_batched_logging.py checks the two agree). Any
    other set-up (text format, a test's capture handler, another handler) gets records."""

    # Ten milliseconds, not more: a batch is encoded and written on the event loop, and every
    # request arriving meanwhile waits for it. At 0.05 s one worker answering 26,000 preflights
    # a second wrote some 1,300 lines at a time, and the preflight's p99 was 8.2 ms against
    # raw-limit's 3.5 (one worker each, wrk -c64); at 0.01 s it was 4.2-5.2 ms, for the same CPU.
    FLUSH_DELAY = 0.01
    MAX_PENDING = 2000

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger
        self._pending: list[tuple[float, str, str, str, int, float, str | None, str]] = []
        self._soon = FlushSoon(self.flush, self.FLUSH_DELAY)

    def add(
        self,
        method: str,
        path: str,
        route: str,
        status: int,
        duration: float,
        client: str | None,
        request_id: str,
    ) -> None:
        self._pending.append(
            (time.time(), method, path, route, status, duration, client, request_id)
        )
        if len(self._pending) >= self.MAX_PENDING:
            self.flush()
        else:
            self._soon.ask()

    def direct_handler(self) -> BatchingStreamHandler | None:
        """The one handler that would write this logger's INFO lines, when it is the app's JSON
        handler and nothing else (a filter, another handler) sees them; else None."""
        found: list[logging.Handler] = []
        logger: logging.Logger | None = self.logger
        while logger is not None:
            if logger.filters or logger.disabled:
                return None
            found += logger.handlers
            logger = logger.parent if logger.propagate else None
        if len(found) != 1:
            return None
        (handler,) = found
        if (
            type(handler) is not BatchingStreamHandler
            or type(handler.formatter) is not JsonFormatter
            or handler.filters
            or handler.level > logging.INFO
        ):
            return None
        return handler

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        handler = self.direct_handler()
        if handler is not None:
            formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
            name = self.logger.name
            time_text = formatter.time_text
            lines = [
                AccessLine(
                    time_text(at, int((at - int(at)) * 1000)),
                    "info",
                    name,
                    f"{method} {path} {status}",
                    request_id,
                    method,
                    path,
                    route,
                    status,
                    round(duration * 1000, 3),
                    client,
                )
                for at, method, path, route, status, duration, client, request_id in pending
            ]
            # One call for the batch: each line encoded and ended with "\n" by msgspec.
            text = _LINE_ENCODER.encode_lines(lines).decode()
            terminator = handler.terminator
            if terminator != "\n":
                text = text.replace("\n", terminator)  # JSON text holds no raw newline
            handler.emit_formatted(text)
            return
        logger = self.logger
        for at, method, path, route, status, duration, client, request_id in pending:
            record = logging.LogRecord(
                logger.name, logging.INFO, __file__, 0, "%s %s %s", (method, path, status), None
            )
            record.created = at
            record.msecs = int((at - int(at)) * 1000) + 0.0
            record.request_id = request_id
            record.method = method
            record.path = path
            record.route = route
            record.status = status
            record.duration_ms = round(duration * 1000, 3)
            record.client = client
            logger.handle(record)

    def stop(self) -> None:
        self._soon.cancel()
        self.flush()
