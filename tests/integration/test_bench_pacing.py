"""The bench's heartbeat players against a stand-in server that applies the API's 0.5 s rule: the
wrk script never sends two heartbeats of one enrollment too close together, its positions follow
real time up to the video's end, and a run whose learners run out says so. `make bench` without
wrk stops before it touches the database."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from bench import learning
from bench.harness import BenchError

ROOT = Path(__file__).resolve().parents[2]
needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (make bench installs it)"
)
LESSON = re.compile(r"^/lessons/([0-9a-f-]{36})/progress$")
MIN_GAP = 0.5  # the API's rule: a heartbeat this soon after the enrollment's previous one is 429


@dataclass
class Seen:
    """What the stand-in server saw of one enrollment: (arrival, position) per heartbeat."""

    heartbeats: list[tuple[float, float]] = field(default_factory=list)
    last_accepted: float | None = None
    refused: int = 0


class Players:
    """What a stand-in API saw: every heartbeat per lesson (one lesson per enrollment here), 429
    for one less than MIN_GAP after the enrollment's previous accepted one, as the API answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, Seen] = {}

    def forget(self) -> None:
        """A second wrk run starts the players over: only what it sends is checked."""
        with self.lock:
            self.seen.clear()

    def heartbeat(self, lesson: str, position: float) -> int:
        with self.lock:
            seen = self.seen.setdefault(lesson, Seen())
            now = time.monotonic()
            seen.heartbeats.append((now, position))
            if seen.last_accepted is not None and now - seen.last_accepted < MIN_GAP:
                seen.refused += 1
                return 429
            seen.last_accepted = now
            return 204


@contextlib.contextmanager
def stand_in(players: Players, latency: tuple[float, float]) -> Iterator[str]:
    """An HTTP/1.1 keep-alive server on a free port that answers each heartbeat after a random
    `latency` (so answers come back out of order), echoing X-Request-ID as lms does."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            return

        def answer(self, status: int) -> None:
            self.send_response(status)
            request_id = self.headers.get("X-Request-ID")
            if request_id:
                self.send_header("X-Request-ID", request_id)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self.answer(200)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = LESSON.match(self.path)
            if match is None:
                self.answer(404)
                return
            position = float(json.loads(body)["positionSeconds"])
            status = players.heartbeat(match.group(1), position)
            time.sleep(random.uniform(*latency))
            self.answer(status)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def workload(learners: int, enrollments_each: int, short: int) -> learning.Workload:
    """`learners` x `enrollments_each` pairs, one lesson each; the first `short` pairs (the
    first to start) have 2.5 s videos, so they play to the end within the run."""
    people = [learning.Learner(uuid.uuid4(), 0, token=f"token{i}") for i in range(learners)]
    pairs = []
    for rank in range(enrollments_each):
        for index in range(learners):
            n = len(pairs)
            pairs.append(
                learning.Pair(
                    learner=index,
                    lesson_id=uuid.uuid4(),
                    enrollment_id=uuid.uuid4(),
                    duration=2.5 if n < short else 600.0,
                    start_position=None,
                    play_from=0.0 if n < short else float(rank),
                )
            )
    return learning.Workload(people, pairs, "test")


def play(
    tmp_path: Path,
    work: learning.Workload,
    url: str,
    connections: int,
    seconds: int,
    players: Players | None = None,
) -> learning.WrkRun:
    learning.assign_threads(work, 2)
    learning.enough_enrollments(work, 2, connections)
    script, data, out = learning.write_script(tmp_path, "heartbeat", 1)
    learning.write_data(data, work)
    args = argparse.Namespace(threads=2, connections=connections, duration=seconds, timeout=5)
    return learning.run_wrk(
        script,
        out,
        url,
        args,
        learning.CpuSampler(None, None),
        before_again=None if players is None else players.forget,
    )


@needs_wrk
def test_players_send_one_heartbeat_a_second_per_enrollment_at_most(tmp_path: Path) -> None:
    players = Players()
    work = workload(learners=50, enrollments_each=20, short=16)
    with stand_in(players, latency=(0.0, 0.04)) as url:
        run = play(tmp_path, work, url, connections=8, seconds=4, players=players)

    assert run.statuses and set(run.statuses) == {204}, run.statuses
    assert sum(s.refused for s in players.seen.values()) == 0
    by_lesson = {str(p.lesson_id): p for p in work.pairs}
    gaps = []
    for lesson, seen in players.seen.items():
        pair = by_lesson[lesson]
        for (at, position), (next_at, next_position) in zip(
            seen.heartbeats, seen.heartbeats[1:], strict=False
        ):
            gaps.append(next_at - at)
            # Sent at least a second apart, the position moved on with the clock, never past
            # the video's end.
            assert next_at - at >= MIN_GAP
            assert next_position <= pair.duration
            if next_position < pair.duration:
                assert next_position - position >= 0.998
            assert next_position - position <= next_at - at + 1.0
        assert seen.heartbeats[0][1] == pair.play_from
    assert gaps and min(gaps) >= MIN_GAP
    # Players start as the server takes them: 8 connections answered in 0-40 ms cannot keep
    # more than some 400 enrollments busy at one heartbeat a second.
    assert 0 < run.pacing["enrollments_started"] < len(work.pairs)
    assert run.pacing["enrollments_started"] == len(players.seen)
    assert run.pacing["min_interval_s"] >= 1.0 - 0.005
    assert run.pacing["sent_early"] == 0 and run.pacing["waits_for_a_due_enrollment"] == 0
    # The 2.5 s videos started first ended within the run: their last heartbeat was at the end.
    ended = [s for lesson, s in players.seen.items() if by_lesson[lesson].duration == 2.5]
    assert run.pacing["enrollments_retired"] >= 1
    assert any(s.heartbeats[-1][1] == 2.5 for s in ended)
    assert learning.pacing_failures(run.pacing, len(work.pairs)) == []


@needs_wrk
def test_a_run_whose_learners_run_out_fails_instead_of_sending_early(tmp_path: Path) -> None:
    players = Players()
    work = workload(learners=8, enrollments_each=4, short=0)  # 16 per thread, 4 per connection
    with stand_in(players, latency=(0.0, 0.005)) as url:
        run = play(tmp_path, work, url, connections=8, seconds=3, players=players)

    assert sum(s.refused for s in players.seen.values()) == 0
    assert run.pacing["enrollments_started"] == len(work.pairs)
    assert run.pacing["waits_for_a_due_enrollment"] > 0
    assert run.pacing["min_interval_s"] >= 1.0 - 0.005
    failures = learning.pacing_failures(run.pacing, len(work.pairs))
    assert len(failures) == 1 and failures[0].startswith("the learners ran out")


def test_too_few_enrollments_for_the_connections_stop_the_run_before_it_starts() -> None:
    work = workload(learners=8, enrollments_each=3, short=0)
    learning.assign_threads(work, 2)
    with pytest.raises(BenchError, match="a wrk thread has 12 enrollments"):
        learning.enough_enrollments(work, 2, 8)


def test_make_bench_without_wrk_stops_before_it_touches_the_database(tmp_path: Path) -> None:
    # No wrk and no apt-get on PATH; a database nobody listens on: reaching it would say so.
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
    assert done.stderr.strip() == (
        "bench.suite: error: wrk is not installed: apt-get install wrk (Debian/Ubuntu) or "
        "brew install wrk"
    )
    assert done.stdout == ""
