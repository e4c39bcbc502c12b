"""JSON log lines (one object per line) carrying the current request id."""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import msgspec

from lms.observability.flush_soon import FlushSoon

# Set by the request middleware (API) and by the taskiq middleware (worker), so every log line a
# request or the job it queued writes can be joined on one id.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


# ".000Z" to ".999Z": the end of a line's `ts`, looked up (formatting it took most of the time
# an access line took to make).
MILLISECONDS = tuple(f".{ms:03d}Z" for ms in range(1000))


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: time, level, logger, message, request id, extras.
    Every request writes one (lms.observability.middleware), so it is built for speed: the
    time's seconds are formatted once a second and msgspec encodes."""

    _second = -1
    _second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        return self.time_text(record.created, record.msecs)

    def time_text(self, created: float, msecs: float) -> str:
        """`ts` of a line made at `created` (time.time()), `msecs` its milliseconds as a record
        holds them."""
        return self.second_text(int(created)) + MILLISECONDS[int(msecs)]

    def second_text(self, second: int) -> str:
        """`ts` up to its seconds ("2026-12-05T15:00:00") for a time.time() second."""
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return self._second_text

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key != "request_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            return _ENCODER.encode(entry).decode()
        except (TypeError, ValueError, OverflowError):  # a value msgspec will not take
            return json.dumps(entry, default=str, separators=(",", ":"))


# Whatever msgspec cannot encode (an exception, a path) is written as its str(), as json's
# default=str did.
_ENCODER = msgspec.json.Encoder(enc_hook=str)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that, on an event loop's thread, gathers lines for a moment and writes
    them together. Every request logs a line; a write (a system call that releases the GIL, then
    waits to take it back from the server's own threads) cost the API some 30 us of CPU per
    request, a fifth of a certificate check. Lines wait at most FLUSH_DELAY; a warning or error,
    a line from any other thread, and the process's exit (logging.shutdown) write everything
    pending at once, in order."""

    FLUSH_DELAY = 0.01  # as lms.observability.middleware.AccessLog's: short pauses, not long
    MAX_PENDING = 64 * 1024

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._size = 0
        self._soon = FlushSoon(self._flush_later, self.FLUSH_DELAY)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= self.MAX_PENDING:
            self._write_pending(record)
        else:
            self._soon.ask()  # off an event loop: at once

    def emit_formatted(self, text: str) -> None:
        """Lines already formatted as this handler's formatter would (each ending in the
        terminator), at INFO: they wait with the others (lms.observability.middleware.AccessLog
        makes its lines this way when this handler alone would write them)."""
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(text)
            self._size += len(text)
            if self._size >= self.MAX_PENDING:
                self._write_pending(None)
                return
        self._soon.ask()

    def _flush_later(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending(None)

    def _write_pending(self, record: logging.LogRecord | None) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            if record is not None:
                self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending(None)
        super().flush()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def logging_dict_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig for our process and Granian's (Granian takes one through log_dictconfig)."""
    formatter = (
        "lms.observability.logs.JsonFormatter"
        if fmt == "json"
        else ("lms.observability.logs.TextFormatter")
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "lms.observability.logs.BatchingStreamHandler",
                "formatter": "default",
                "stream": sys.stderr,
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # Per-request lines come from our middleware; Granian's access log would double them.
            "_granian": {"level": level, "handlers": ["stderr"], "propagate": False},
            "granian.access": {"level": "WARNING"},
            "asyncio": {"level": "WARNING"},
            "nats": {"level": "WARNING"},
            "taskiq": {"level": "WARNING" if level == "INFO" else level},
            "faster_whisper": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    import logging.config

    logging.config.dictConfig(logging_dict_config(level, fmt))
