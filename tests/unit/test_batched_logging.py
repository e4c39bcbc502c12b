"""Request lines and the stream handler batch their work and lose or reorder nothing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time

import pytest

from lms.observability.logs import BatchingStreamHandler, JsonFormatter
from lms.observability.middleware import AccessLog, RequestIds


def handler_on(stream: io.StringIO) -> BatchingStreamHandler:
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    return handler


def test_on_a_loop_lines_wait_for_the_delay_and_keep_their_order() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.batched")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = handler_on(stream)
    logger.addHandler(handler)

    async def run() -> tuple[str, str]:
        for i in range(5):
            logger.info("line %d", i)
        early = stream.getvalue()
        await asyncio.sleep(BatchingStreamHandler.FLUSH_DELAY * 3)
        return early, stream.getvalue()

    try:
        early, later = asyncio.run(run())
    finally:
        logger.removeHandler(handler)
    assert early == ""
    assert [json.loads(line)["msg"] for line in later.splitlines()] == [
        f"line {i}" for i in range(5)
    ]


def test_a_warning_writes_what_waits_before_it_and_itself_at_once() -> None:
    stream = io.StringIO()
    handler = handler_on(stream)

    async def run() -> list[str]:
        handler.handle(logging.makeLogRecord({"msg": "first", "levelno": 20, "levelname": "INFO"}))
        handler.handle(
            logging.makeLogRecord({"msg": "trouble", "levelno": 30, "levelname": "WARNING"})
        )
        return [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]

    assert asyncio.run(run()) == ["first", "trouble"]


def test_off_a_loop_and_at_exit_nothing_waits() -> None:
    stream = io.StringIO()
    handler = handler_on(stream)
    handler.handle(logging.makeLogRecord({"msg": "cli", "levelno": 20, "levelname": "INFO"}))
    assert json.loads(stream.getvalue())["msg"] == "cli"

    async def pending() -> None:
        handler.handle(logging.makeLogRecord({"msg": "late", "levelno": 20, "levelname": "INFO"}))

    asyncio.run(pending())  # the loop ends before the delay
    handler.flush()  # as logging.shutdown() does at exit
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["cli", "late"]


def test_request_lines_carry_the_time_the_request_ended(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="lms.request")
    access = AccessLog()

    async def run() -> float:
        loop = asyncio.get_running_loop()
        access.add("GET", "/courses", "/courses", 200, 0.0123, "10.0.0.1", "rid-1")
        ended = loop.time()
        assert not [r for r in caplog.records if r.name == "lms.request"]
        access.stop()  # at shutdown: what waits is written
        return ended

    asyncio.run(run())
    (record,) = [r for r in caplog.records if r.name == "lms.request"]
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "GET /courses 200"
    assert (entry["request_id"], entry["route"], entry["status"]) == ("rid-1", "/courses", 200)
    assert (entry["duration_ms"], entry["client"]) == (12.3, "10.0.0.1")


def test_request_ids_are_32_hex_digits_and_unique() -> None:
    ids = RequestIds()
    made = {ids.next() for _ in range(10_000)}
    assert len(made) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    assert len({i[:16] for i in made} | {RequestIds().next()[:16]}) == 2


def test_a_forked_process_makes_request_ids_of_its_own() -> None:
    ids = RequestIds()
    parent = ids.next()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: as a Granian worker, forked after the app was built
        os.write(write, ids.next().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert len(child) == 32 and child[:16] != parent[:16]


def test_request_lines_written_directly_are_the_lines_the_formatter_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AccessLog encodes its lines itself when the app's JSON handler alone writes them; a
    subclass of the formatter gets records, so the two ways can be compared byte for byte."""
    monkeypatch.setattr(time, "time", lambda: 1_764_892_800.0429)  # both ways end at once

    class SameFormatter(JsonFormatter):
        pass

    requests = [
        ("GET", "/courses", "/courses", 200, 0.0123456, "10.0.0.1", "rid-1"),
        ("POST", "/lessons/x/progress", "/lessons/{lesson_id}/progress", 204, 0.0, None, "r2"),
        ("GET", '/a"b\\c\u202e\u00e9', "unmatched", 404, 1.5, "::1", "rid-3"),
    ]
    written: dict[str, str] = {}
    for way, formatter in (("direct", JsonFormatter()), ("records", SameFormatter())):
        stream = io.StringIO()
        logger = logging.getLogger(f"test.access.{way}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = BatchingStreamHandler(stream)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        access = AccessLog(logger)
        assert (access.direct_handler() is handler) == (way == "direct")
        try:
            for method, path, route, status, duration, client, request_id in requests:
                access.add(method, path, route, status, duration, client, request_id)
            access.stop()  # off a loop: written at once
        finally:
            logger.removeHandler(handler)
        written[way] = stream.getvalue().replace(f"test.access.{way}", "LOGGER")
    assert written["direct"] == written["records"]
    statuses = [json.loads(line)["status"] for line in written["direct"].splitlines()]
    assert statuses == [200, 204, 404]


def test_a_filter_or_a_second_handler_gets_records() -> None:
    logger = logging.getLogger("test.access.guarded")
    logger.propagate = False
    handler = handler_on(io.StringIO())
    logger.addHandler(handler)
    try:
        assert AccessLog(logger).direct_handler() is handler
        logger.addFilter(lambda record: True)
        assert AccessLog(logger).direct_handler() is None
        logger.filters.clear()
        second = logging.StreamHandler(io.StringIO())
        logger.addHandler(second)
        assert AccessLog(logger).direct_handler() is None
        logger.removeHandler(second)
        handler.setLevel(logging.WARNING)
        assert AccessLog(logger).direct_handler() is None
    finally:
        logger.removeHandler(handler)


def test_quiet_lines_are_counted_always_and_written_only_at_debug() -> None:
    """A record at DEBUG (the edge's answered preflights) reaches the metrics whatever the level,
    and is written only where the logger shows DEBUG, then as a debug line."""
    for level in (logging.INFO, logging.DEBUG):
        stream = io.StringIO()
        logger = logging.getLogger(f"test.access.quiet.{level}")
        logger.propagate = False
        logger.setLevel(level)
        handler = handler_on(stream)
        logger.addHandler(handler)
        counted: list[int] = []
        access = AccessLog(logger, lambda records, into=counted: into.extend(r[4] for r in records))
        try:
            access.add("OPTIONS", "/courses", "unmatched", 204, 0.001, None, "q1", logging.DEBUG)
            access.add("GET", "/courses", "/courses", 200, 0.002, None, "l1")
            access.add("OPTIONS", "/courses", "unmatched", 400, 0.001, None, "l2")
            access.stop()
        finally:
            logger.removeHandler(handler)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert counted == [204, 200, 400]
        written = [(line["request_id"], line["level"]) for line in lines]
        if level == logging.INFO:
            assert written == [("l1", "info"), ("l2", "info")]
        else:
            assert written == [("q1", "debug"), ("l1", "info"), ("l2", "info")]
