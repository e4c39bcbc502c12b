"""What the edge (lms.edge) keeps of every request: its id, one JSON log line, HTTP metrics."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

import msgspec

from lms.observability.flush_soon import FlushSoon
from lms.observability.logs import MILLISECONDS, BatchingStreamHandler, JsonFormatter
from lms.observability.metrics import HTTP_DURATION, HTTP_REQUESTS
from lms.observability.tally import TALLY
from lms.request_headers import has_repeats

log = logging.getLogger("lms.request")

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is kept (to trace through a gateway) only when it is short and plain.
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


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


def incoming_request_id(scope: dict[str, Any], request: dict[bytes, bytes], ids: RequestIds) -> str:
    """The caller's X-Request-ID when it is plain (the first plain one, if it came more than
    once), else a new id. `request` is the scope's header map (lms.request_headers)."""
    if has_repeats(scope):
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        for name, sent in raw:
            if name == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(sent):
                return sent.decode()
        return ids.next()
    value = request.get(REQUEST_ID_HEADER)
    if value is not None and _VALID_REQUEST_ID.match(value):
        return value.decode()
    return ids.next()


class RequestRecorder:
    """What the edge (lms.edge) keeps of each request: its id source, and its access-log line and
    HTTP metrics, both made from one record per request, together, in AccessLog's batches: per
    request only a tuple is appended (counting each in the tally as it ended cost a preflight
    some 1.5 us of its 38, one pinned worker under wrk)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.ids = RequestIds()
        self.access_log = AccessLog(logger, self._count)
        # The labelled series, looked up once each: labels() costs more than the increment.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def add(
        self,
        scope: dict[str, Any],
        status: int,
        duration: float,
        request_id: str,
        level: int = logging.INFO,
    ) -> None:
        """One request that ended; its line is written at `level` (AccessLog), it is counted
        whatever the level."""
        client = scope.get("client")
        self.access_log.add_record(
            (
                time.time(),
                scope["method"],
                scope["path"],
                # The route template ("/courses/{course_id}"), never the raw path: bounded labels.
                scope.get("path_template") or "unmatched",
                status,
                duration,
                client[0] if client else None,
                request_id,
                level,
            )
        )

    def stop(self) -> None:
        self.access_log.stop()

    def _count(self, records: list[AccessRecord]) -> None:
        """The HTTP metrics of a batch of requests, into the tally."""
        counts: dict[tuple[str, str, int], int] = {}
        durations: dict[tuple[str, str], list[float]] = {}
        for _, method, _, route, status, duration, _, _, _ in records:
            key = (method, route, status)
            counts[key] = counts.get(key, 0) + 1
            timed = durations.get((method, route))
            if timed is None:
                durations[method, route] = [duration]
            else:
                timed.append(duration)
        for key, count in counts.items():
            counted = self._counted.get(key)
            if counted is None:
                method, route, status = key
                counted = self._counted[key] = HTTP_REQUESTS.labels(method, route, str(status))
            TALLY.inc(counted, count)
        for labels, values in durations.items():
            series = self._timed.get(labels)
            if series is None:
                series = self._timed[labels] = HTTP_DURATION.labels(*labels)
            TALLY.observe_many(series, values)


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


def duration_ms(seconds: float) -> float:
    """A request's duration in milliseconds, to the microsecond (round(x, 3) cost a line a
    fifth of a microsecond: it rounds through a decimal string)."""
    return int(seconds * 1_000_000 + 0.5) / 1000


# What AccessLog keeps of a request: when it ended (time.time()), method, path, route, status,
# duration in seconds, client address, request id, the level of its line.
AccessRecord = tuple[float, str, str, str, int, float, "str | None", str, int]


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

    def __init__(
        self,
        logger: logging.Logger = log,
        also: Callable[[list[AccessRecord]], None] | None = None,
    ) -> None:
        """`also` gets every batch of records too, whether or not lines are written (the edge's
        metrics); the tally asks for the batch before Prometheus reads it."""
        self.logger = logger
        self.also = also
        self._pending: list[AccessRecord] = []
        self._soon = FlushSoon(self.flush, self.FLUSH_DELAY)
        if also is not None:
            TALLY.feed_from(self)

    def add(
        self,
        method: str,
        path: str,
        route: str,
        status: int,
        duration: float,
        client: str | None,
        request_id: str,
        level: int = logging.INFO,
    ) -> None:
        self.add_record(
            (time.time(), method, path, route, status, duration, client, request_id, level)
        )

    def add_record(self, record: AccessRecord) -> None:
        pending = self._pending
        pending.append(record)
        waiting = len(pending)
        if waiting == 1:  # the first since the last flush: the flush is due FLUSH_DELAY later
            self._soon.ask()
        elif waiting >= self.MAX_PENDING:
            self.flush()

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
        if self.also is not None:
            self.also(pending)
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        # Lines below INFO (an answered preflight's) are written where DEBUG is shown, and then
        # each line goes through logging at its own level: a debugging set-up, not a fast one.
        everything = logger.isEnabledFor(logging.DEBUG)
        handler = None if everything else self.direct_handler()
        if handler is not None:
            formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
            name = self.logger.name
            lines: list[AccessLine] = []
            add = lines.append
            # Each line's `ts` as formatter.time_text makes it: the seconds formatted once per
            # second of the batch (a batch spans ten milliseconds), the milliseconds looked up.
            second_of_prefix, prefix = -1, ""
            for at, method, path, route, status, duration, client, request_id, level in pending:
                if level < logging.INFO:
                    continue
                second = int(at)
                if second != second_of_prefix:
                    second_of_prefix, prefix = second, formatter.second_text(second)
                add(
                    AccessLine(
                        prefix + MILLISECONDS[int((at - second) * 1000)],
                        "info",
                        name,
                        f"{method} {path} {status}",
                        request_id,
                        method,
                        path,
                        route,
                        status,
                        duration_ms(duration),
                        client,
                    )
                )
            # One call for the batch: each line encoded and ended with "\n" by msgspec.
            text = _LINE_ENCODER.encode_lines(lines).decode()
            terminator = handler.terminator
            if terminator != "\n":
                text = text.replace("\n", terminator)  # JSON text holds no raw newline
            if text:
                handler.emit_formatted(text)
            return
        for at, method, path, route, status, duration, client, request_id, level in pending:
            if not everything and level < logging.INFO:
                continue
            record = logging.LogRecord(
                logger.name, level, __file__, 0, "%s %s %s", (method, path, status), None
            )
            record.created = at
            record.msecs = int((at - int(at)) * 1000) + 0.0
            record.request_id = request_id
            record.method = method
            record.path = path
            record.route = route
            record.status = status
            record.duration_ms = duration_ms(duration)
            record.client = client
            logger.handle(record)

    def stop(self) -> None:
        self._soon.cancel()
        self.flush()
