"""The bench's browser variant (bench.browser): the headers are those Chromium sent (the fixture),
and the heartbeat players preflight as Chromium does: an OPTIONS before an enrollment's first
heartbeat, and again only when the answer's Access-Control-Max-Age has run out. A preflight's
answer carries nothing that names its enrollment, so the wrk script releases the thread's oldest
waiting one: the counts are exact, the order between two enrollments may not be (the stand-in
counts a heartbeat with no preflight before it, and that stays rare)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from bench import browser, catalog, learning, suite
from bench.harness import PGBENCH_MISSING, BenchError

ROOT = Path(__file__).resolve().parents[2]

needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)"
)
MAX_AGE = 2  # seconds: short, so that a 4 s run sees a preflight expire
SLACK = 0.5


class Seen:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.preflights: dict[str, list[float]] = {}  # lesson path -> when answered
        self.posts: dict[str, list[float]] = {}
        self.refused: list[str] = []
        self.headers: dict[str, dict[str, str]] = {}  # method -> the last request's headers


@contextlib.contextmanager
def stand_in(seen: Seen) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def answer(self, status: int, extra: dict[str, str]) -> None:
            self.send_response(status)
            request_id = self.headers.get("X-Request-ID")
            if request_id:
                self.send_header("X-Request-ID", request_id)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_OPTIONS(self) -> None:
            with seen.lock:
                seen.headers["OPTIONS"] = dict(self.headers.items())
                seen.preflights.setdefault(self.path, []).append(time.monotonic())
            self.answer(
                204,
                {
                    "Access-Control-Allow-Origin": browser.ORIGIN,
                    "Access-Control-Allow-Methods": "POST",
                    "Access-Control-Allow-Headers": "authorization, content-type, x-request-id",
                    "Access-Control-Max-Age": str(MAX_AGE),
                },
            )

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.monotonic()
            with seen.lock:
                seen.headers["POST"] = dict(self.headers.items())
                answered = seen.preflights.get(self.path, [])
                # The player checks its cache when it sends; on a busy machine the POST may be
                # read here a little later.
                fresh = bool(answered) and now - answered[-1] < MAX_AGE + SLACK
                seen.posts.setdefault(self.path, []).append(now)
                if not fresh:
                    seen.refused.append(self.path)
            self.answer(204, {"Access-Control-Allow-Origin": browser.ORIGIN})

        def do_GET(self) -> None:
            self.answer(200, {})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_headers_are_chromiums_with_the_benchs_origin() -> None:
    data = browser.fixture()
    assert data["chromium"].startswith("Chromium ")
    get = dict(browser.headers("get"))
    assert get["Origin"] == browser.ORIGIN and get["Referer"] == browser.ORIGIN + "/"
    assert get["Accept-Encoding"] == "gzip, deflate, br, zstd"
    assert (get["Sec-Fetch-Mode"], get["Sec-Fetch-Dest"]) == ("cors", "empty")
    assert "HeadlessChrome" not in get["User-Agent"] and "Chrome/" in get["User-Agent"]
    assert {"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "Accept-Language"} <= set(get)
    assert "Host" not in get and "Authorization" not in get
    progress = dict(browser.headers("progress"))
    assert progress["Authorization"] == "" and progress["Content-Type"] == "application/json"
    preflight = dict(browser.headers("preflight_progress"))
    assert preflight["Access-Control-Request-Method"] == "POST"
    assert preflight["Access-Control-Request-Headers"] == "authorization,content-type,x-request-id"
    assert "Authorization" not in preflight and "sec-ch-ua" not in preflight


def test_the_catalog_script_sends_the_browser_lines_and_no_request_id(tmp_path: Path) -> None:
    lines = browser.lines(browser.headers("get"))
    script = catalog.write_script(
        tmp_path, catalog.Paths(first=["/courses?limit=20"]), {"first": 1.0}, 1, raw_headers=lines
    ).read_text()
    assert lines.replace("\r\n", "\\r\\n").replace('"', '\\"') in script
    assert "\r" not in script  # every CRLF is a Lua escape


@needs_wrk
def test_browser_players_preflight_once_per_max_age_and_post_only_after_it(
    tmp_path: Path,
) -> None:
    people = [learning.Learner(uuid.uuid4(), 0, token=f"token{i}") for i in range(20)]
    pairs = [
        learning.Pair(
            learner=i % 20,
            lesson_id=uuid.uuid4(),
            enrollment_id=uuid.uuid4(),
            duration=600.0,
            start_position=None,
            play_from=float(i % 7),
        )
        for i in range(400)
    ]
    work = learning.Workload(people, pairs, "test")
    learning.assign_threads(work, 2)
    learning.enough_enrollments(work, 2, 8)
    script, data, out = learning.write_script(tmp_path, "heartbeat", 1, browser=True)
    learning.write_data(data, work)
    seen = Seen()
    args = argparse.Namespace(threads=2, connections=8, duration=4, timeout=5)
    with stand_in(seen) as url:
        run = learning.run_wrk(script, out, url, args, learning.CpuSampler(None, None))

    posts = sum(len(p) for p in seen.posts.values())
    assert len(seen.refused) <= max(2, posts // 20), (len(seen.refused), posts)
    assert run.statuses and set(run.statuses) == {204}, run.statuses
    assert run.unmatched == 0
    # Every enrollment that sent a heartbeat was preflighted first, and again once the answer
    # was MAX_AGE old: never more often.
    assert seen.posts and set(seen.posts) <= set(seen.preflights)
    for answered in seen.preflights.values():
        for earlier, later in itertools.pairwise(answered):
            assert later - earlier >= MAX_AGE - SLACK
    assert any(len(a) >= 2 for a in seen.preflights.values())  # an answer expired in the run
    total = sum(len(a) for a in seen.preflights.values())
    # Counted alike on both sides, but for requests still in flight when wrk stopped.
    assert run.preflight["refused"] == 0 and run.preflight["max_age_s"] == MAX_AGE
    assert run.preflight["answered"] <= total <= run.preflight["sent"] <= total + 8
    assert run.result["requests"] <= total + posts <= run.result["requests"] + 8
    # The requests are Chromium's: the origin, fetch metadata, encodings; the bench's token.
    post, options = seen.headers["POST"], seen.headers["OPTIONS"]
    assert post["Origin"] == browser.ORIGIN and post["Sec-Fetch-Mode"] == "cors"
    assert post["Accept-Encoding"] == "gzip, deflate, br, zstd"
    assert post["Authorization"].startswith("Bearer token")
    assert options["Access-Control-Request-Method"] == "POST"
    assert "Authorization" not in options and "X-Request-ID" not in options


def test_make_bench_without_pgbench_stops_before_it_touches_the_database(tmp_path: Path) -> None:
    # wrk "installed" (a stand-in on PATH), pgbench not; a database nobody listens on.
    wrk = tmp_path / "wrk"
    wrk.write_text("#!/bin/sh\nexit 0\n")
    wrk.chmod(0o755)
    env = {
        **os.environ,
        "PATH": str(tmp_path),
        "BENCH_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/lms_bench_nowhere",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.suite"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"bench.suite: error: {PGBENCH_MISSING}"
    assert done.stdout == ""


def test_bench_variants_and_the_full_runs_length() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    with mock.patch.dict(os.environ, env, clear=True):
        both = suite.Plan.from_env()
    with mock.patch.dict(os.environ, {**env, "BENCH_VARIANTS": "plain"}, clear=True):
        plain = suite.Plan.from_env()
    assert both.variants == ["plain", "browser"] and both.duration == 15
    assert plain.variants == ["plain"] and plain.duration == 30
    assert "preflight" not in plain.scenarios_of("plain")
    assert "preflight" in both.scenarios_of("browser")
    with (
        mock.patch.dict(os.environ, {**env, "BENCH_VARIANTS": "firefox"}, clear=True),
        pytest.raises(BenchError, match="BENCH_VARIANTS: unknown firefox"),
    ):
        suite.Plan.from_env()


def test_raw_limit_sends_the_cors_headers_lms_sends(settings: Any) -> None:
    """raw-limit writes out what lms's CORS layer (lms.api.cors) sends for lms's CORSConfig: a
    change to that configuration in lms.app fails here until raw-limit follows."""
    from bench.peers import raw_limit

    from lms.app import create_app

    config = create_app(replace(settings, cors_origins=(browser.ORIGIN,))).state.cors
    assert config is not None and config.is_origin_allowed(browser.ORIGIN)
    preflight = config.preflight_headers
    assert raw_limit.CORS_PREFLIGHT_HEADERS.decode() == preflight["Access-Control-Allow-Headers"]
    assert raw_limit.CORS_METHODS.decode() == preflight["Access-Control-Allow-Methods"]
    assert raw_limit.CORS_MAX_AGE.decode() == preflight["Access-Control-Max-Age"]
    assert raw_limit.CORS_EXPOSE.decode() == config.simple_headers["Access-Control-Expose-Headers"]
    assert raw_limit.CORS_SIMPLE_HEADERS.decode() == ", ".join(sorted(set(config.allow_headers)))
    assert not config.allow_credentials and "Access-Control-Allow-Credentials" not in preflight
