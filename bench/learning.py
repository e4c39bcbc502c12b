"""Load-test the learner's write paths with wrk (the progress heartbeat, lesson completion), then
check in PostgreSQL that nothing was lost; and time one admin bulk enrollment."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import resource
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench import harness
from bench.catalog import (
    REPO_ROOT,
    RESULTS_DIR,
    _serving,
    free_port,
    git_commit,
    granian_workers,
    human_bytes,
    percentiles,
    resolved_environ,
    wrk_failures,
)
from bench.harness import WRK_REPORT_LUA, BenchError, add_load_arguments, run_main
from bench.seed import BENCH_EMAIL_DOMAIN, percent

SCENARIOS = ("heartbeat", "complete", "bulk")
WRK_SCENARIOS = ("heartbeat", "complete")
# heartbeat: a player's clock. An enrollment (one learner's course: the API keeps one watch clock
# for it) sends its next heartbeat HEARTBEAT_PERIOD seconds after the previous one was sent, and
# never sooner than HEARTBEAT_MIN_GAP after it was answered, so that even a slow answer followed
# by a fast one cannot reach the server within that gap (the API answers 429 below 0.5 s).
HEARTBEAT_PERIOD = 1.0
HEARTBEAT_MIN_GAP = 0.5
# Enrollments each wrk connection must be able to draw on before the run: a thread's share of
# the workload below this many per connection fails at once (the learners would run out).
MIN_ENROLLMENTS_PER_CONNECTION = 4
COMPLETE_WINDOW = 256  # complete: enrollments worked on side by side, lesson by lesson
MAX_COMPLETE_PAIRS = 60_000  # complete: (learner, lesson) pairs prepared; the run cycles after
DRAIN_SECONDS = 10.0  # the most we wait for the server to log requests wrk left in flight
BULK_ALREADY = 0.05  # bulk: share of addresses already enrolled in the course
BULK_UNKNOWN = 0.05  # bulk: share of addresses with no account
ADMIN_EMAIL = f"bench-admin@{BENCH_EMAIL_DOMAIN}"
ADMIN_USERNAME = "bench_admin"
ROUTES = {
    "heartbeat": ("POST /lessons/:id/progress", "/lessons/{lesson_id:uuid}/progress", 204),
    "complete": ("POST /lessons/:id/complete", "/lessons/{lesson_id:uuid}/complete", 200),
}
# Stored positions must equal the sent ones; both are the same decimal text parsed to a double,
# so they are equal outright. The tolerance only absorbs a different parser's last bit, and is
# far below the ~5 s between two consecutive heartbeats of one lesson.
POSITION_TOLERANCE = 1e-6


# ---------------------------------------------------------------------------------------------
# what the run works on


@dataclass
class Learner:
    user_id: uuid.UUID
    token_version: int
    thread: int = 0  # the wrk thread (1-based) that owns the learner and all its pairs
    token: str = ""


@dataclass
class Pair:
    """One (learner, lesson): the unit no two in-flight requests may share."""

    learner: int  # index into the learners list
    lesson_id: uuid.UUID
    enrollment_id: uuid.UUID
    duration: float
    start_position: float | None  # None: no progress row before the run
    start_completed: bool = False
    play_from: float = 0.0  # heartbeat: where the player starts (the resume position, or 0)


@dataclass
class Sent:
    """What the wrk thread that owned a pair did with it (from the script's done())."""

    sent: int  # requests sent
    acked: int  # sequence number of the last answered one (sent or sent - 1)
    last_status: int  # status of the last answered one (0: none answered)
    last_position: str | None  # heartbeat: the position of the last request, as sent
    ok_position: str | None  # heartbeat: the position of the last request answered 204


@dataclass
class Workload:
    learners: list[Learner]
    pairs: list[Pair]
    description: str
    mix: dict[str, int] = field(default_factory=dict)


async def _connect(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn=database_url)


async def bench_learners(conn: asyncpg.Connection, count: int, rng: random.Random) -> list[Learner]:
    """`count` seeded LEARNERs with at least one enrollment, drawn at random."""
    rows = await conn.fetch(
        """
        SELECT u.id, u.token_version FROM users u
        WHERE u.email LIKE $1 AND u.role = 'LEARNER' AND u.is_active
          AND EXISTS (SELECT 1 FROM enrollments e WHERE e.user_id = u.id)
        ORDER BY u.id
        """,
        f"%@{BENCH_EMAIL_DOMAIN}",
    )
    if not rows:
        raise BenchError(
            "no seeded learners with enrollments: run python -m bench.seed with --learners and "
            "--progress-rows first"
        )
    chosen = rng.sample(list(rows), min(count, len(rows)))
    return [Learner(r["id"], r["token_version"]) for r in chosen]


async def heartbeat_workload(conn: asyncpg.Connection, count: int, rng: random.Random) -> Workload:
    """One (learner, lesson) per enrollment of the chosen learners, every enrollment they have:
    the lesson the player would resume (the first one not completed) from its stored position,
    a lesson never started from 0, or, in a course already finished, any lesson watched again
    from 0. The order is the order the run starts them in: every learner's first enrollment
    (learners shuffled), then every learner's second one, and so on, so that a learner plays two
    courses at once only when there are more players than learners."""
    learners = await bench_learners(conn, count, rng)
    rows = await conn.fetch(
        """
        SELECT e.user_id, e.id AS enrollment_id, l.id AS lesson_id, l.position,
               l.duration_seconds, p.position_seconds, coalesce(p.completed, false) AS completed
        FROM enrollments e
        JOIN lessons l ON l.course_id = e.course_id
        LEFT JOIN lesson_progress p ON p.enrollment_id = e.id AND p.lesson_id = l.id
        WHERE e.user_id = ANY($1::uuid[])
        ORDER BY e.user_id, e.id, l.position
        """,
        [learner.user_id for learner in learners],
    )
    by_enrollment: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    enrollments_of: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        if not by_enrollment[row["enrollment_id"]]:
            enrollments_of[row["user_id"]].append(row["enrollment_id"])
        by_enrollment[row["enrollment_id"]].append(row)
    ranked: list[list[Pair]] = []  # [k]: every learner's k-th enrollment
    mix: Counter[str] = Counter()
    for index, learner in enumerate(learners):
        enrollments = enrollments_of[learner.user_id]
        for rank, enrollment_id in enumerate(rng.sample(enrollments, len(enrollments))):
            lessons = by_enrollment[enrollment_id]
            current = next((r for r in lessons if not r["completed"]), None)
            if current is None:
                current, kind = rng.choice(lessons), "rewatch of a completed lesson"
            elif current["position_seconds"] is None:
                kind = "lesson not started (the first heartbeat inserts its row)"
            else:
                kind = "resume of a lesson in progress"
            mix[kind] += 1
            duration = float(current["duration_seconds"] or 600.0)
            resume = current["position_seconds"] if not current["completed"] else None
            if rank == len(ranked):
                ranked.append([])
            ranked[rank].append(
                Pair(
                    learner=index,
                    lesson_id=current["lesson_id"],
                    enrollment_id=enrollment_id,
                    duration=duration,
                    start_position=current["position_seconds"],
                    start_completed=current["completed"],
                    play_from=min(float(resume or 0.0), duration),
                )
            )
    pairs: list[Pair] = []
    for group in ranked:
        rng.shuffle(group)
        pairs += group
    description = (
        f"{len(learners):,} learners with {len(pairs):,} enrollments, one lesson each, played "
        f"as needed at one heartbeat per {HEARTBEAT_PERIOD:g} s per enrollment: "
        + ", ".join(f"{n:,} {kind}" for kind, n in mix.most_common())
    )
    return Workload(learners, pairs, description, dict(mix))


async def complete_workload(conn: asyncpg.Connection, count: int, rng: random.Random) -> Workload:
    """The learners' lessons not completed yet, in enrollments not completed yet, ordered so
    that COMPLETE_WINDOW enrollments at a time are worked through lesson by lesson: courses get
    completed (and certificates issued) all through the run, and two lessons of one enrollment
    are rarely completed at the same moment (the enrollment's row lock would queue them)."""
    if await conn.fetchval("SELECT require_watch_to_complete FROM system_settings WHERE id = 1"):
        raise BenchError(
            "requireWatchToComplete is on: the complete scenario completes lessons without "
            "watching them, so every answer would be 409; turn it off (PATCH /admin/settings "
            '{"requireWatchToComplete": false}) to measure completion'
        )
    learners = await bench_learners(conn, count, rng)
    rows = await conn.fetch(
        """
        SELECT e.user_id, e.id AS enrollment_id, l.id AS lesson_id, l.duration_seconds
        FROM enrollments e
        JOIN lessons l ON l.course_id = e.course_id
        LEFT JOIN lesson_progress p ON p.enrollment_id = e.id AND p.lesson_id = l.id
        WHERE e.user_id = ANY($1::uuid[]) AND NOT e.completed
          AND NOT coalesce(p.completed, false)
          AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.enrollment_id = e.id)
        ORDER BY e.id, l.position
        """,
        [learner.user_id for learner in learners],
    )
    index_of = {learner.user_id: i for i, learner in enumerate(learners)}
    remaining: dict[uuid.UUID, list[Pair]] = defaultdict(list)
    for row in rows:
        remaining[row["enrollment_id"]].append(
            Pair(
                learner=index_of[row["user_id"]],
                lesson_id=row["lesson_id"],
                enrollment_id=row["enrollment_id"],
                duration=float(row["duration_seconds"] or 0.0),
                start_position=None,
            )
        )
    if not remaining:
        raise BenchError("the chosen learners have no lesson left to complete: seed afresh")
    enrollments = sorted(remaining)
    rng.shuffle(enrollments)
    pairs: list[Pair] = []
    for start in range(0, len(enrollments), COMPLETE_WINDOW):
        window = [remaining[e] for e in enrollments[start : start + COMPLETE_WINDOW]]
        for step in range(max(len(lessons) for lessons in window)):
            pairs += [lessons[step] for lessons in window if step < len(lessons)]
        if len(pairs) >= MAX_COMPLETE_PAIRS:
            break
    used = {p.enrollment_id for p in pairs}
    lesson_left = Counter(len(remaining[e]) for e in used)
    description = (
        f"{len(learners):,} learners, {len(pairs):,} lessons to complete in {len(used):,} "
        f"enrollments (lessons left per enrollment: "
        + ", ".join(f"{k}: {n:,}" for k, n in sorted(lesson_left.items()))
        + ")"
    )
    return Workload(learners, pairs, description, {str(k): n for k, n in lesson_left.items()})


def assign_threads(workload: Workload, threads: int) -> None:
    """Learner i belongs to wrk thread i % threads + 1, and so do all its pairs: one thread's
    requests never carry another thread's learner."""
    for index, learner in enumerate(workload.learners):
        learner.thread = index % threads + 1


async def log_in(conn: asyncpg.Connection, settings: Any, learners: Sequence[Learner]) -> None:
    """Each learner signs in: a login of its own (lms.domain.auth.logins: all of them in one
    statement), whose access token the run sends, so that lms checks that login on every request
    as it does a user's."""
    from lms.domain.auth.logins import open_logins

    logins = await open_logins(
        conn, settings, [learner.user_id for learner in learners], user_agent="bench.learning"
    )
    for learner, login in zip(learners, logins, strict=True):
        learner.token = login.access_token


def write_data(path: Path, workload: Workload) -> None:
    """T lines (thread, learner, token), then P lines (thread, learner, lesson, duration, where
    the player starts): a pair's id is its P line's number, in the order the run uses them."""
    used = {p.learner for p in workload.pairs}
    with path.open("w") as out:
        for index, learner in enumerate(workload.learners):
            if index in used:
                out.write(f"T\t{learner.thread}\t{index}\t{learner.token}\n")
        for pair in workload.pairs:
            learner = workload.learners[pair.learner]
            out.write(
                f"P\t{learner.thread}\t{pair.learner}\t{pair.lesson_id}\t{pair.duration!r}\t"
                f"{pair.play_from!r}\n"
            )


# ---------------------------------------------------------------------------------------------
# wrk

LUA_TEMPLATE = Template("""\
-- Generated by bench/learning.py: the $scenario scenario. Each wrk thread loads only its own
-- learners and (learner, lesson) pairs from the data file; no two in-flight requests ever carry
-- the same pair. done() writes what every pair sent and what came back.
--
-- heartbeat: each pair is one enrollment played like a video player plays it. Its heartbeats
-- are $period s apart (never sooner than $min_gap s after the previous one was answered), and
-- the position is where the player started plus the real time since its first heartbeat, up to
-- the video's end (then that lesson is done and the pair retires). wrk's request() does not
-- know which connection asks, so pacing is per thread and per enrollment: delay(), which wrk
-- calls before each request, reserves the enrollment due soonest, or starts a new one (the
-- next in the data file) when none is due yet, and makes the connection wait only when every
-- enrollment of the thread is playing and none is due (the learners ran out: counted). The
-- request() that follows sends the reserved enrollment due soonest: whichever connection's
-- timer fires, that one is due.
--
-- complete: each thread goes round its pairs in order and skips a pair whose request is still
-- in flight.
--
-- The browser variant (bench/browser.py) sends Chromium's headers, and before a pair's first
-- POST the CORS preflight Chromium sends (OPTIONS), again once the preflight's answer is older
-- than its Access-Control-Max-Age (Chromium's preflight cache: per URL; 5 s when the answer has
-- none, 2 h at most). The POST goes only once the preflight is answered. A preflight carries no
-- X-Request-ID (a browser sends none on it), so its answer is matched to the oldest preflight
-- of the thread still waiting: the count is exact, the pair it releases may be another's.
local data_path = $data_path
local out_path = $out_path
local scenario = "$scenario"
local seed = $seed
local period = $period
local min_gap = $min_gap
local expected_status = $expected_status
local browser = $browser
local pre_auth = $pre_auth        -- header lines before Authorization (browser: Chromium's)
local post_auth = $post_auth      -- and after it (plain: Content-Type for the heartbeat)
local preflight_head = $preflight_head  -- the preflight's header lines (browser only)
local default_max_age = $default_max_age
local max_max_age = $max_max_age
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  threads[next_id] = thread
end

-- Per-thread state: globals, so that done() can read them back with thread:get().
gids = {}         -- local pair index -> pair id (its line number among the data file's P lines)
sent = {}         -- requests sent for the pair
acked = {}        -- sequence number of its last answered request (0: none)
last_status = {}  -- status of its last answered request
last_pos = {}     -- heartbeat: position of its last request (a number: as_sent gives its text)
ok_pos = {}       -- heartbeat: position of its last request answered 204
statuses = {}     -- status -> responses
unmatched = 0     -- responses without a request id of ours
stalled = 0       -- request() calls with no pair to send (then /readyz is sent)
course_completed = 0  -- complete: 200s saying the course is completed
with_certificate = 0  -- complete: 200s carrying a certificate
-- browser: CORS preflights
preflights = 0    -- sent
preflight_ok = 0  -- answered 2xx
preflight_failed = 0  -- answered otherwise (a browser would then not send the POST)
preflight_max_age = -1  -- the last Access-Control-Max-Age answered (-1: none seen)
-- heartbeat pacing, for the report
started = 0       -- enrollments that started playing
retired = 0       -- enrollments whose lesson played to its end
waits = 0         -- delay() calls that found no enrollment due and none left to start
waited = 0.0      -- seconds those waits added up to
early = 0         -- heartbeats sent before their enrollment was due (a bug if ever > 0)
min_interval = -1     -- shortest time between two heartbeats of one enrollment (-1: none)
min_after_answer = -1 -- shortest time from an answer to the next heartbeat of that enrollment
intervals = 0     -- heartbeats that had a previous one in the run
interval_sum = 0.0
histogram = {0, 0, 0, 0, 0, 0, 0}  -- intervals below 0.5, 1, 1.1, 1.5, 2, 5 s, and longer
local edges = {0.5, 1.0, 1.1, 1.5, 2.0, 5.0}

local heads = {}
local preflight_req = {}  -- browser: pair -> its OPTIONS request
local cached_until = {}   -- browser: pair -> when its preflight answer expires
local awaiting = {}       -- browser: pairs whose preflight is in flight, oldest first
local awaiting_first = 1  -- the queue's head and tail (no holes: Lua's # would not do)
local awaiting_last = 0
local ready = {}  -- complete: pairs whose preflight was answered, to send their POST next
local ready_first = 1
local ready_last = 0
local preflight_pending = {}  -- browser: pair -> its preflight is in flight
local duration = {}
local play_from = {}
local local_of = {}
local cursor = 0
local n = 0
local idle_request = nil
-- wrk calls thread 1's request() once before the run only to check that it makes a valid
-- request, and never sends it: that call must not count as a request sent (set in init(),
-- once setup() has numbered the thread).
local checked = true

-- heartbeat: the player's clock and the enrollments by when they are due
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")
local function clock()
  ffi.C.clock_gettime(1, timespec)  -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end
local due = {}         -- pair -> when its next heartbeat may be sent
local first_at = {}    -- pair -> when its first heartbeat was sent
local sent_at = {}     -- pair -> when its last heartbeat was sent
local answered_at = {} -- pair -> when its last heartbeat was answered
local finished = {}    -- pair -> its last heartbeat was at the video's end
local waiting = {}     -- min-heap of answered pairs by due time
local reserved = {}    -- min-heap of pairs delay() promised to a connection, by due time
local fresh = 1        -- the next pair to start

local function push(heap, i)
  local k = #heap + 1
  while k > 1 do
    local parent = math.floor(k / 2)
    if due[heap[parent]] <= due[i] then break end
    heap[k] = heap[parent]
    k = parent
  end
  heap[k] = i
end

local function pop(heap)
  local top = heap[1]
  if top == nil then return nil end
  local last = heap[#heap]
  heap[#heap] = nil
  local size = #heap
  if size > 0 then
    local k = 1
    while true do
      local child = 2 * k
      if child > size then break end
      if child < size and due[heap[child + 1]] < due[heap[child]] then child = child + 1 end
      if due[heap[child]] >= due[last] then break end
      heap[k] = heap[child]
      k = child
    end
    heap[k] = last
  end
  return top
end

local function split(line)
  local fields = {}
  for value in string.gmatch(line, "[^\\t]+") do fields[#fields + 1] = value end
  return fields
end

function init(args)
  math.randomseed(seed + 7919 * thread_id)
  checked = thread_id ~= 1
  local host = wrk.headers["Host"]
  local tokens = {}
  local gid = 0
  local suffix = scenario == "heartbeat" and "/progress" or "/complete"
  for line in io.lines(data_path) do
    local f = split(line)
    if f[1] == "T" then
      if tonumber(f[2]) == thread_id then tokens[f[3]] = f[4] end
    elseif f[1] == "P" then
      gid = gid + 1
      if tonumber(f[2]) == thread_id then
        n = n + 1
        -- Everything but the request id, its length and the body is formatted once, here.
        heads[n] = "POST /lessons/" .. f[4] .. suffix .. " HTTP/1.1\\r\\nHost: " .. host ..
                   "\\r\\n" .. pre_auth .. "Authorization: Bearer " .. tokens[f[3]] ..
                   "\\r\\n" .. post_auth .. "X-Request-ID: " .. scenario .. "-" .. gid .. "-"
        if browser then
          preflight_req[n] = "OPTIONS /lessons/" .. f[4] .. suffix .. " HTTP/1.1\\r\\nHost: " ..
                             host .. "\\r\\n" .. preflight_head .. "\\r\\n"
        end
        gids[n] = gid
        local_of[gid] = n
        duration[n] = tonumber(f[5])
        play_from[n] = tonumber(f[6])
        sent[n] = 0
        acked[n] = 0
        last_status[n] = 0
      end
    end
  end
  idle_request = wrk.format("GET", "/readyz")
end

-- heartbeat: which enrollment the connection about to send will carry, and how long it waits.
local function pace()
  local now = clock()
  local i = waiting[1]
  if i ~= nil and due[i] <= now then
    pop(waiting)
  elseif fresh <= n then
    i = fresh
    fresh = fresh + 1
    due[i] = now
    started = started + 1
  elseif i ~= nil then
    pop(waiting)
    waits = waits + 1
    waited = waited + (due[i] - now)
  else
    return 0  -- every enrollment is in flight or done: request() counts it as stalled
  end
  push(reserved, i)
  local wait = due[i] - now
  if wait <= 0 then return 0 end
  -- wrk's timers have millisecond steps: round up, plus a margin, never early.
  return math.ceil(wait * 1000) + 2
end

if scenario == "heartbeat" then delay = pace end

-- browser: whether pair i must be preflighted before its POST (its cached answer expired)
local function needs_preflight(i, now)
  return browser and (cached_until[i] == nil or now >= cached_until[i])
end

local function preflight(i)
  preflights = preflights + 1
  preflight_pending[i] = true
  awaiting_last = awaiting_last + 1
  awaiting[awaiting_last] = i
  return preflight_req[i]
end

local function header(headers, name)
  local value = headers[name]
  if value == nil then
    name = string.lower(name)
    for k, v in pairs(headers) do
      if string.lower(k) == name then return v end
    end
  end
  return value
end

-- browser: a preflight answered; the oldest waiting pair may send its POST (or, refused, retires)
local function preflight_answered(status, headers)
  local i = awaiting[awaiting_first]
  awaiting[awaiting_first] = nil
  awaiting_first = awaiting_first + 1
  preflight_pending[i] = nil
  local now = clock()
  if status < 200 or status > 299 then
    preflight_failed = preflight_failed + 1
    cached_until[i] = math.huge  -- a browser would not send the POST: the pair is done
    if scenario == "heartbeat" then retired = retired + 1 end
    return
  end
  preflight_ok = preflight_ok + 1
  local max_age = tonumber(header(headers, "Access-Control-Max-Age") or "")
  if max_age ~= nil then preflight_max_age = max_age end
  max_age = math.min(max_age or default_max_age, max_max_age)
  cached_until[i] = now + max_age
  if scenario == "heartbeat" then
    due[i] = now
    push(waiting, i)
  else
    ready_last = ready_last + 1
    ready[ready_last] = i
  end
end

local function next_pair()
  for _ = 1, n do
    cursor = cursor % n + 1
    if sent[cursor] == acked[cursor] and not preflight_pending[cursor] and
       (cached_until[cursor] ~= math.huge) then
      return cursor
    end
  end
  return nil
end

local function heartbeat_request()
  local i = pop(reserved)
  if i == nil then
    stalled = stalled + 1
    return idle_request
  end
  local now = clock()
  if needs_preflight(i, now) then return preflight(i) end
  if due[i] > now then early = early + 1 end
  if sent_at[i] ~= nil then
    local gap = now - sent_at[i]
    if min_interval < 0 or gap < min_interval then min_interval = gap end
    local bucket = #edges + 1
    for b, edge in ipairs(edges) do
      if gap < edge then bucket = b break end
    end
    histogram[bucket] = histogram[bucket] + 1
    intervals = intervals + 1
    interval_sum = interval_sum + gap
    local after = now - answered_at[i]
    if min_after_answer < 0 or after < min_after_answer then min_after_answer = after end
  end
  if first_at[i] == nil then first_at[i] = now end
  -- Milliseconds, rounded down: a position at the video's end is never past it.
  local pos = math.floor((play_from[i] + (now - first_at[i])) * 1000) / 1000
  if pos >= duration[i] then
    pos = math.floor(duration[i] * 1000) / 1000
    finished[i] = true
  end
  local text = string.format("%.3f", pos)
  local seq = sent[i] + 1
  sent[i] = seq
  sent_at[i] = now
  last_pos[i] = pos
  local body = '{"positionSeconds":' .. text .. '}'
  return heads[i] .. seq .. "\\r\\nContent-Length: " .. #body .. "\\r\\n\\r\\n" .. body
end

function request()
  if not checked then
    checked = true
    return idle_request
  end
  if scenario == "heartbeat" then return heartbeat_request() end
  local i = nil
  if ready_first <= ready_last then  -- browser: the POST a preflight was just answered for
    i = ready[ready_first]
    ready[ready_first] = nil
    ready_first = ready_first + 1
  else
    i = next_pair()
  end
  if i == nil then
    stalled = stalled + 1
    return idle_request
  end
  if needs_preflight(i, clock()) then return preflight(i) end
  local seq = sent[i] + 1
  sent[i] = seq
  return heads[i] .. seq .. "\\r\\nContent-Length: 0\\r\\n\\r\\n"
end

function response(status, headers, body)
  local rid = headers["x-request-id"] or headers["X-Request-ID"] or headers["X-Request-Id"]
  local g, seq = nil, nil
  if rid then g, seq = string.match(rid, "^%a+%-(%d+)%-(%d+)$$") end
  local i = g and local_of[tonumber(g)]
  if not i then
    -- browser: an answer without our request id while preflights wait is a preflight's (the
    -- /readyz of a stalled request() answers 200 with no Access-Control-Allow-Methods)
    if awaiting[awaiting_first] ~= nil and
       (status ~= 200 or header(headers, "Access-Control-Allow-Methods") ~= nil) then
      preflight_answered(status, headers)
      return
    end
    statuses[status] = (statuses[status] or 0) + 1
    unmatched = unmatched + 1
    return
  end
  statuses[status] = (statuses[status] or 0) + 1
  acked[i] = tonumber(seq)
  last_status[i] = status
  if scenario == "heartbeat" then
    if status == expected_status then ok_pos[i] = last_pos[i] end
    local now = clock()
    answered_at[i] = now
    if finished[i] then
      retired = retired + 1
    else
      due[i] = math.max(sent_at[i] + period, now + min_gap)
      push(waiting, i)
    end
  elseif status == expected_status then
    if string.find(body, '"courseCompleted":true', 1, true) then
      course_completed = course_completed + 1
    end
    if string.find(body, '"certificate":{', 1, true) then
      with_certificate = with_certificate + 1
    end
  end
end

-- A heartbeat's position as its request sent it ("-": none). Positions cross from the threads
-- to done() as numbers, never strings: strings that wrk's thread:get copied out of a thread came
-- out with bytes no one wrote ("2003.344\\xc0\\xec..." in place of "4.232"), in most heartbeat
-- runs of one quick bench, while the numbers on the same lines were whole.
local function as_sent(pos)
  if pos == nil then return "-" end
  return string.format("%.3f", pos)
end

function done(summary, latency, requests)
  local out = assert(io.open(out_path, "w"))
  for t, thread in ipairs(threads) do
    local t_gids, t_sent, t_acked = thread:get("gids"), thread:get("sent"), thread:get("acked")
    local t_status, t_last, t_ok = thread:get("last_status"), thread:get("last_pos"),
                                   thread:get("ok_pos")
    for i, gid in ipairs(t_gids) do
      if t_sent[i] > 0 then
        out:write(string.format("P\\t%d\\t%d\\t%d\\t%d\\t%s\\t%s\\n", gid, t_sent[i], t_acked[i],
                                t_status[i], as_sent(t_last[i]), as_sent(t_ok[i])))
      end
    end
    for status, count in pairs(thread:get("statuses")) do
      out:write(string.format("S\\t%d\\t%d\\n", status, count))
    end
    out:write(string.format("C\\t%d\\t%d\\t%d\\t%d\\t%d\\n", t, thread:get("unmatched"),
                            thread:get("stalled"), thread:get("course_completed"),
                            thread:get("with_certificate")))
    local pacing = {t, thread:get("started"), thread:get("retired"), thread:get("waits"),
                    string.format("%.6f", thread:get("waited")), thread:get("early"),
                    string.format("%.6f", thread:get("min_interval")),
                    string.format("%.6f", thread:get("min_after_answer")),
                    thread:get("intervals"), string.format("%.6f", thread:get("interval_sum")),
                    table.concat(thread:get("histogram"), ",")}
    out:write("K\\t" .. table.concat(pacing, "\\t") .. "\\n")
    out:write(string.format("F\\t%d\\t%d\\t%d\\t%d\\t%s\\n", t, thread:get("preflights"),
                            thread:get("preflight_ok"), thread:get("preflight_failed"),
                            tostring(thread:get("preflight_max_age"))))
  end
  out:close()
$report
end
""")


def write_script(
    directory: Path, scenario: str, seed: int, *, browser: bool = False
) -> tuple[Path, Path, Path]:
    """(the script, the data file it reads, the file its done() writes). `browser`: the browser
    variant (bench.browser): Chromium's headers and its CORS preflights."""
    from bench import browser as chromium

    if browser:
        kind = "progress" if scenario == "heartbeat" else "complete"
        pre_auth, post_auth = chromium.split_at_authorization(kind)
        preflight_head = chromium.lines(chromium.headers("preflight_" + kind))
    else:
        pre_auth, preflight_head = "", ""
        post_auth = "Content-Type: application/json\r\n" if scenario == "heartbeat" else ""
    data, out = directory / f"{scenario}.tsv", directory / f"{scenario}.sent.tsv"
    script = directory / f"{scenario}.lua"
    script.write_text(
        LUA_TEMPLATE.substitute(
            scenario=scenario,
            data_path=json.dumps(str(data)),
            out_path=json.dumps(str(out)),
            seed=seed,
            period=repr(HEARTBEAT_PERIOD),
            min_gap=repr(HEARTBEAT_MIN_GAP),
            expected_status=ROUTES[scenario][2],
            browser="true" if browser else "false",
            pre_auth=chromium.lua_string(pre_auth),
            post_auth=chromium.lua_string(post_auth),
            preflight_head=chromium.lua_string(preflight_head),
            default_max_age=chromium.DEFAULT_PREFLIGHT_MAX_AGE,
            max_max_age=chromium.MAX_PREFLIGHT_MAX_AGE,
            report=WRK_REPORT_LUA,
        )
    )
    return script, data, out


@dataclass
class WrkRun:
    result: dict[str, Any]
    output: str
    sent: dict[int, Sent]  # pair id (0-based) -> what was sent for it
    statuses: dict[int, int]
    unmatched: int
    stalled: int
    course_completed: int
    with_certificate: int
    cpu: dict[str, Any] | None
    pacing: dict[str, Any] = field(default_factory=dict)  # heartbeat: the players' clock
    # browser variant: CORS preflights sent, answered 2xx, refused, the last max-age answered
    preflight: dict[str, Any] = field(default_factory=dict)


INTERVAL_BUCKETS = ("<0.5 s", "0.5-1 s", "1-1.1 s", "1.1-1.5 s", "1.5-2 s", "2-5 s", ">=5 s")


def pacing_summary(lines: Sequence[list[str]]) -> dict[str, Any]:
    """The threads' K lines (heartbeat pacing) added up: enrollments started and retired, waits
    for an enrollment to be due, heartbeats sent early, and the intervals between two heartbeats
    of one enrollment (the shortest, the mean, a histogram)."""
    started = retired = waits = early = intervals = 0
    waited = interval_sum = 0.0
    shortest: list[float] = []
    after_answer: list[float] = []
    histogram = [0] * len(INTERVAL_BUCKETS)
    for f in lines:
        started += int(f[2])
        retired += int(f[3])
        waits += int(f[4])
        waited += float(f[5])
        early += int(f[6])
        if float(f[7]) >= 0:
            shortest.append(float(f[7]))
        if float(f[8]) >= 0:
            after_answer.append(float(f[8]))
        intervals += int(f[9])
        interval_sum += float(f[10])
        for b, count in enumerate(f[11].split(",")):
            histogram[b] += int(count)
    return {
        "enrollments_started": started,
        "enrollments_retired": retired,
        "waits_for_a_due_enrollment": waits,
        "waited_s": round(waited, 3),
        "sent_early": early,
        "intervals": intervals,
        "min_interval_s": round(min(shortest), 4) if shortest else None,
        "mean_interval_s": round(interval_sum / intervals, 4) if intervals else None,
        "min_after_answer_s": round(min(after_answer), 4) if after_answer else None,
        "interval_histogram": dict(zip(INTERVAL_BUCKETS, histogram, strict=True)),
    }


def run_wrk(
    script: Path,
    sent_path: Path,
    url: str,
    args: argparse.Namespace,
    sampler: CpuSampler,
    *,
    before_again: Callable[[], None] | None = None,
) -> WrkRun:
    """wrk with the script, up to twice more while its report is not text; `before_again` is
    called before each further run (a stand-in that checks what it was sent forgets the last)."""
    for attempt in (1, 2, 3):
        outcome = harness.run_wrk(
            script,
            f"{url.rstrip('/')}/",
            threads=args.threads,
            connections=args.connections,
            duration=args.duration,
            timeout=args.timeout,
            sampler=sampler,
        )
        if not sent_path.exists():
            raise BenchError(f"the wrk script wrote no {sent_path.name}:\n{outcome.output}")
        try:
            sent_text = sent_path.read_text()
            break
        except UnicodeDecodeError as exc:
            # Seen once under a loaded test run: bytes no script wrote in done()'s report, the
            # kind of memory fault that also makes wrk die of SIGSEGV now and then. What it
            # counted cannot be trusted: as for a crash (bench.harness.run_wrk), run again.
            # Twice in a row once (express-prisma's browser heartbeat, a quick run): a third try.
            if attempt == 3:
                raise BenchError(f"wrk wrote a {sent_path.name} that is not text: {exc}") from None
            print(f"wrk wrote a {sent_path.name} that is not text ({exc}); running wrk again")
            if before_again is not None:
                before_again()
            sent_path.unlink()
            time.sleep(harness.WRK_CRASH_PAUSE_SECONDS)
    run = WrkRun(outcome.result, outcome.output, {}, Counter(), 0, 0, 0, 0, outcome.measured)
    pacing: list[list[str]] = []
    preflight: dict[str, Any] = {"sent": 0, "answered": 0, "refused": 0, "max_age_s": None}
    for line in sent_text.splitlines():
        f = line.split("\t")
        if f[0] == "P":
            run.sent[int(f[1]) - 1] = Sent(
                sent=int(f[2]),
                acked=int(f[3]),
                last_status=int(f[4]),
                last_position=None if f[5] == "-" else f[5],
                ok_position=None if f[6] == "-" else f[6],
            )
        elif f[0] == "S":
            run.statuses[int(f[1])] += int(f[2])
        elif f[0] == "C":
            run.unmatched += int(f[2])
            run.stalled += int(f[3])
            run.course_completed += int(f[4])
            run.with_certificate += int(f[5])
        elif f[0] == "K":
            pacing.append(f)
        elif f[0] == "F":
            preflight["sent"] += int(f[2])
            preflight["answered"] += int(f[3])
            preflight["refused"] += int(f[4])
            if float(f[5]) >= 0:
                preflight["max_age_s"] = float(f[5])
    run.pacing = pacing_summary(pacing)
    run.preflight = preflight
    return run


# ---------------------------------------------------------------------------------------------
# CPU: who used the two cores during the run


class CpuSampler:
    """CPU seconds per process group over the wrk run, from /proc (Linux; None elsewhere):
    PostgreSQL backends of the bench database, PostgreSQL's own background processes, backends
    of other databases (anything else sharing the server), the API (the process group of the
    `lms serve` we started), wrk, and the rest of the machine."""

    def __init__(self, database: str | None, api_pid: int | None) -> None:
        self.database = database
        self.api_pid = api_pid
        self.wrk_pid: int | None = None
        self.worker_pid: int | None = None
        self.receiver_threads: list[int] = []
        self._worker_ports: set[int] = set()
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: dict[int, tuple[str, float]] | None = None
        self._start_total: tuple[float, float] | None = None
        self._start_children = 0.0
        self._started = 0.0

    def watch(self, wrk_pid: int) -> None:
        self.wrk_pid = wrk_pid

    def watch_delivery(self, worker_pid: int, receiver_threads: list[int]) -> None:
        """Count the event delivery apart (issue 22's "on" runs): `lms worker` (the process
        group it leads), the bench database's backends it is the client of, and this script's
        threads that stand for the receivers and the LRS."""
        self.worker_pid = worker_pid
        self.receiver_threads = list(receiver_threads)

    @staticmethod
    def _children() -> float:
        """CPU seconds of our children that have exited: wrk's, once it is reaped (it is gone
        from /proc by the time the run is measured)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def _group(self, pid: int, comm: str, pgrp: int) -> str | None:
        if pid == self.wrk_pid or comm == "wrk":
            return None  # counted from its rusage once it has exited
        if self.api_pid is not None and pgrp == self.api_pid:
            return "api"
        if self.worker_pid is not None and pgrp == self.worker_pid:
            return "delivery_worker"
        if self.api_pid is None and comm in ("lms", "python", "python3") and self._is_api(pid):
            return "api"
        if comm.startswith("postgres"):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                return None
            if "(" not in cmdline and "[local]" not in cmdline:
                return "postgres_background"
            if self.database and f" {self.database} " in cmdline:
                port = re.search(r"\((\d+)\)", cmdline)
                if port and int(port.group(1)) in self._worker_ports:
                    return "postgres_delivery"
                return "postgres_bench"
            return "postgres_other_databases"
        if pid == os.getpid():
            return "bench"
        return f"other:{comm}"

    @staticmethod
    def _is_api(pid: int) -> bool:
        """With --url: an `lms serve` (or `python -m lms serve`) process or a Granian worker
        it forked, whoever started it."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
        for i, arg in enumerate(argv[:-1]):
            if (arg == "lms" or arg.endswith("/lms")) and argv[i + 1] == "serve":
                return True
        return False

    def _ports_of(self, pid: int) -> set[int]:
        """The local TCP ports of a process's sockets (its connections to PostgreSQL)."""
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
        ports = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if len(fields) > 9 and fields[9] in inodes:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports

    def _thread_seconds(self, tid: int) -> float:
        raw = Path(f"/proc/{os.getpid()}/task/{tid}/stat").read_text()
        rest = raw[raw.rindex(")") + 2 :].split()
        return (int(rest[11]) + int(rest[12])) / self.ticks

    def _processes(self) -> dict[int, tuple[str, float]]:
        found: dict[int, tuple[str, float]] = {}
        if self.worker_pid is not None:
            self._worker_ports = self._ports_of(self.worker_pid)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2 :].split()
            pid = int(entry.name)
            group = self._group(pid, comm, int(rest[2]))
            if group:
                found[pid] = (group, (int(rest[11]) + int(rest[12])) / self.ticks)
        # The receivers' threads, out of this script's own figure (negative keys: not pids).
        for tid in self.receiver_threads:
            with contextlib.suppress(OSError, ValueError):
                used = self._thread_seconds(tid)
                found[-tid] = ("delivery_receivers", used)
                group, mine = found.get(os.getpid(), ("bench", 0.0))
                found[os.getpid()] = (group, mine - used)
        return found

    def _machine(self) -> tuple[float, float]:
        """(busy, total) CPU seconds of the whole machine since boot."""
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        total = sum(values) / self.ticks
        idle = (values[3] + values[4]) / self.ticks
        return total - idle, total

    def start(self) -> None:
        try:
            self._start, self._start_total = self._processes(), self._machine()
            self._start_children = self._children()
        except (OSError, ValueError):
            self._start = None
        self._started = time.monotonic()

    def stop(self) -> dict[str, Any] | None:
        if self._start is None or self._start_total is None:
            return None
        try:
            end, (busy, total) = self._processes(), self._machine()
        except (OSError, ValueError):
            return None
        wall = time.monotonic() - self._started
        cpus = os.cpu_count() or 1
        seconds: Counter[str] = Counter()
        others: Counter[str] = Counter()
        for pid, (group, used) in end.items():
            before = self._start.get(pid)
            delta = used - (before[1] if before and before[0] == group else 0.0)
            if group.startswith("other:"):
                others[group.removeprefix("other:")] += delta
            else:
                seconds[group] += delta
        seconds["wrk"] = self._children() - self._start_children
        machine_busy = busy - self._start_total[0]
        # Everything else, kernel threads and processes that exited meanwhile included.
        seconds["other"] = max(machine_busy - sum(seconds.values()), 0.0)
        seconds["idle"] = max((total - self._start_total[1]) - machine_busy, 0.0)
        return {
            "wall_s": round(wall, 2),
            "cpus": cpus,
            "cpu_seconds": {k: round(v, 2) for k, v in seconds.most_common()},
            "share_of_machine": {
                k: round(v / (wall * cpus), 3) for k, v in seconds.most_common() if wall > 0
            },
            "other_top": {k: round(v, 2) for k, v in others.most_common(5) if v >= 0.01},
        }


def cpu_line(cpu: dict[str, Any] | None) -> str | None:
    if not cpu:
        return None
    share = cpu["share_of_machine"]
    names = {
        "postgres_bench": "PostgreSQL (bench backends)",
        "postgres_background": "PostgreSQL (background: WAL writer, checkpointer...)",
        "postgres_other_databases": "PostgreSQL (other databases)",
        "api": "API (Granian workers)",
        "wrk": "wrk",
        "bench": "this script",
        "delivery_worker": "lms worker (delivery)",
        "postgres_delivery": "PostgreSQL (the worker's backends)",
        "delivery_receivers": "receivers and LRS stand-ins",
        "other": "other processes",
        "idle": "idle",
    }
    parts = [f"{names.get(k, k)} {v:.0%}" for k, v in share.items() if v >= 0.005]
    line = f"cpu ({cpu['cpus']} cores, {cpu['wall_s']:.0f} s): " + ", ".join(parts)
    if share.get("other", 0) >= 0.05 and cpu.get("other_top"):
        top = ", ".join(f"{name} {sec:.1f} s" for name, sec in cpu["other_top"].items())
        line += f"\n  other processes: {top}"
    return line


# ---------------------------------------------------------------------------------------------
# the server's own log (--serve)


def read_log(log_path: Path | None, offset: int) -> list[dict[str, Any]]:
    if log_path is None or not log_path.exists():
        return []
    entries = []
    with log_path.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            try:
                entries.append(json.loads(raw))
            except ValueError:
                entries.append({"level": "error", "msg": raw.decode(errors="replace")[:300]})
    return entries


def server_log_summary(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Statuses and the API's own latency (time in the app, waits for a pooled connection
    included) per route, and any warning or error lines."""
    statuses: Counter[str] = Counter()
    durations: dict[str, list[float]] = defaultdict(list)
    problems: list[str] = []
    for entry in entries:
        if entry.get("logger") == "lms.request":
            statuses[str(entry.get("status"))] += 1
            route = f"{entry.get('method')} {entry.get('route')}"
            durations[route].append(float(entry.get("duration_ms", 0.0)))
        elif entry.get("level") in ("warning", "error", "critical"):
            problems.append(f"{entry.get('level')}: {entry.get('msg')}"[:300])
    return {
        "requests_logged": sum(statuses.values()),
        "statuses": dict(statuses),
        "in_app_ms": {route: percentiles(ms) for route, ms in durations.items()},
        "warnings_and_errors": problems[:20],
        "warnings_and_errors_total": len(problems),
    }


def drain(
    log_path: Path | None, offset: int, request_ids: set[str], served: bool
) -> dict[str, int]:
    """Give the server time to finish what wrk left in flight. With --serve, wait until its log
    has a line for each of those requests (at most DRAIN_SECONDS); else wait 2 s. Returns how the
    server answered them (status -> count, from its log)."""
    if not served:
        time.sleep(2.0)
        return {}
    deadline = time.monotonic() + DRAIN_SECONDS
    time.sleep(0.5)
    while True:
        found = {
            str(e.get("request_id")): e.get("status")
            for e in read_log(log_path, offset)
            if e.get("request_id") in request_ids
        }
        if len(found) >= len(request_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    time.sleep(0.5)  # a logged request has committed (the line is written after the handler)
    outcome = Counter(str(status) for status in found.values())
    outcome["not logged"] = len(request_ids) - len(found)
    return {k: v for k, v in outcome.items() if v}


# ---------------------------------------------------------------------------------------------
# checks


def same_position(stored: float | None, sent: str | None) -> bool:
    if stored is None or sent is None:
        return stored is None and sent is None
    return abs(stored - float(sent)) <= POSITION_TOLERANCE


async def check_heartbeats(
    conn: asyncpg.Connection,
    workload: Workload,
    run: WrkRun,
    started_at: datetime,
) -> dict[str, Any]:
    """For every (learner, lesson) the run touched, the stored resume position must be the last
    position sent, when that request was answered 204. When wrk stopped with the pair's last
    request unanswered (in flight), the server may or may not have applied it: then either that
    position or the one before it (the last answered one, else the position stored before the
    run) is correct, and which one it was is counted. Anything else is a lost update."""
    touched = sorted(run.sent)
    rows = await conn.fetch(
        """
        SELECT t.i, p.position_seconds, p.watched_seconds, p.completed,
               p.completed_at >= $4 AS completed_by_run, l.duration_seconds
        FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS t(enrollment_id, lesson_id, i)
        JOIN lessons l ON l.id = t.lesson_id
        LEFT JOIN lesson_progress p
               ON p.enrollment_id = t.enrollment_id AND p.lesson_id = t.lesson_id
        """,
        [workload.pairs[i].enrollment_id for i in touched],
        [workload.pairs[i].lesson_id for i in touched],
        touched,
        started_at,
    )
    stored = {r["i"]: r for r in rows}
    lost: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    for i in touched:
        sent, pair, row = run.sent[i], workload.pairs[i], stored[i]
        position = row["position_seconds"]
        before = sent.ok_position
        if before is None and pair.start_position is not None:
            before = repr(pair.start_position)
        answered = sent.acked == sent.sent
        if sent.acked < sent.sent - 1:
            counts["overlapping requests (a bug in the script)"] += 1
        if answered and sent.last_status == 204:
            ok = same_position(position, sent.last_position)
            counts["last request answered 204"] += 1
        elif answered:
            ok = same_position(position, before)
            counts["last request answered with an error"] += 1
        elif same_position(position, sent.last_position):
            ok = True
            counts["in flight at the stop, applied"] += 1
        else:
            ok = same_position(position, before)
            counts["in flight at the stop, not applied"] += 1
        if row["completed_by_run"]:
            counts["lessons completed by watching (95% reached)"] += 1
        duration, watched = row["duration_seconds"], row["watched_seconds"]
        if duration is not None and watched is not None and watched > duration + 1e-6:
            counts["watched more than the video (inconsistent)"] += 1
        if not ok:
            lost.append(
                {
                    "lesson_id": str(pair.lesson_id),
                    "enrollment_id": str(pair.enrollment_id),
                    "stored": position,
                    "last_sent": sent.last_position,
                    "acknowledged_before": before,
                    "requests": sent.sent,
                    "answered": sent.acked,
                    "last_status": sent.last_status,
                }
            )
    return {
        "pairs_touched": len(touched),
        "requests_sent": sum(s.sent for s in run.sent.values()),
        "lost_updates": len(lost),
        "lost_examples": lost[:10],
        "outcomes": dict(counts),
        "in_flight_at_stop": sum(1 for s in run.sent.values() if s.acked < s.sent),
    }


async def check_completions(
    conn: asyncpg.Connection,
    workload: Workload,
    run: WrkRun,
    started_at: datetime,
) -> dict[str, Any]:
    """Every lesson whose completion was answered 200 is stored completed; every enrollment the
    run touched has progress = round(100 * completed rows / lessons, 2), is completed exactly
    when all its lessons are, and has exactly one certificate if completed (none otherwise),
    issued during the run, whose VC-JWT verifies with a published key and names that
    enrollment. All these enrollments were incomplete and without a certificate before."""
    touched = sorted(run.sent)
    pair_rows = await conn.fetch(
        """
        SELECT t.i, coalesce(p.completed, false) AS completed
        FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS t(enrollment_id, lesson_id, i)
        LEFT JOIN lesson_progress p
               ON p.enrollment_id = t.enrollment_id AND p.lesson_id = t.lesson_id
        """,
        [workload.pairs[i].enrollment_id for i in touched],
        [workload.pairs[i].lesson_id for i in touched],
        touched,
    )
    completed_pairs = {r["i"] for r in pair_rows if r["completed"]}
    problems: Counter[str] = Counter()
    examples: list[str] = []
    outcomes: Counter[str] = Counter()

    def problem(kind: str, detail: str) -> None:
        problems[kind] += 1
        if len(examples) < 10:
            examples.append(f"{kind}: {detail}")

    for i in touched:
        sent = run.sent[i]
        if sent.acked == sent.sent and sent.last_status == 200:
            outcomes["answered 200"] += 1
            if i not in completed_pairs:
                problem("lost completion", f"lesson {workload.pairs[i].lesson_id}")
        elif sent.acked < sent.sent and sent.sent > 1:
            # A repeat of a completion already answered 200: idempotent, nothing to tell apart.
            outcomes["in flight at the stop, a repeat"] += 1
        elif sent.acked < sent.sent:
            applied = i in completed_pairs
            outcomes[f"in flight at the stop, {'applied' if applied else 'not applied'}"] += 1
        else:
            outcomes[f"answered {sent.last_status}"] += 1

    enrollment_ids = sorted({workload.pairs[i].enrollment_id for i in touched})
    rows = await conn.fetch(
        """
        SELECT e.id, e.progress, e.completed, e.completed_at,
               (SELECT count(*) FROM lesson_progress p
                WHERE p.enrollment_id = e.id AND p.completed) AS done,
               (SELECT count(*) FROM lessons l WHERE l.course_id = e.course_id) AS total,
               (SELECT count(*) FROM certificates c WHERE c.enrollment_id = e.id) AS certificates
        FROM enrollments e WHERE e.id = ANY($1::uuid[])
        """,
        enrollment_ids,
    )
    for row in rows:
        expected = percent(row["done"], row["total"])
        if row["progress"] != expected:
            problem("wrong progress", f"enrollment {row['id']}: {row['progress']} != {expected}")
        if row["completed"] != (row["done"] >= row["total"]):
            problem(
                "wrong completed flag",
                f"enrollment {row['id']}: completed={row['completed']} with "
                f"{row['done']}/{row['total']} lessons",
            )
        if row["completed"] and row["completed_at"] < started_at - timedelta(seconds=1):
            problem("completed before the run", f"enrollment {row['id']}")
        wanted = 1 if row["completed"] else 0
        if row["certificates"] != wanted:
            problem(
                "wrong certificate count",
                f"enrollment {row['id']}: {row['certificates']} certificate(s), completed="
                f"{row['completed']}",
            )
    if len(rows) != len(enrollment_ids):
        problem("missing enrollments", f"{len(enrollment_ids) - len(rows)} not found")
    certificates = await verify_certificates(conn, enrollment_ids, started_at, problem)
    return {
        "pairs_touched": len(touched),
        "requests_sent": sum(s.sent for s in run.sent.values()),
        "lessons_completed": len(completed_pairs),
        "enrollments_touched": len(rows),
        "courses_completed": sum(1 for r in rows if r["completed"]),
        "certificates_issued": certificates["issued"],
        "certificates_verified": certificates["verified"],
        "responses_course_completed": run.course_completed,
        "responses_with_certificate": run.with_certificate,
        "outcomes": dict(outcomes),
        "in_flight_at_stop": sum(1 for s in run.sent.values() if s.acked < s.sent),
        "inconsistencies": sum(problems.values()),
        "inconsistency_kinds": dict(problems),
        "inconsistency_examples": examples,
    }


async def verify_certificates(
    conn: asyncpg.Connection,
    enrollment_ids: Sequence[uuid.UUID],
    started_at: datetime,
    problem: Any,
) -> dict[str, int]:
    """Check each certificate of these enrollments like an outside verifier would: the JWS
    signature against the published public key its `kid` names, with that key's algorithm
    (RS256, ES256 or EdDSA), and its claims, its status list entry included."""
    import jwt

    from bench.vc_jwt import UnknownKey, published_keys, status_entry_matches, verified_claims

    keys = published_keys(await conn.fetch("SELECT kid, public_jwk FROM certificate_signing_keys"))
    rows = await conn.fetch(
        "SELECT id, enrollment_id, serial_hash, jws, issued_at, status_list, status_index "
        "FROM certificates WHERE enrollment_id = ANY($1::uuid[])",
        list(enrollment_ids),
    )
    verified = 0
    for row in rows:
        if row["issued_at"] < started_at - timedelta(seconds=1):
            problem("certificate issued before the run", f"certificate {row['id']}")
        try:
            claims = verified_claims(row["jws"], keys)
        except UnknownKey:
            problem("certificate signed by an unpublished key", f"certificate {row['id']}")
            continue
        except jwt.PyJWTError as exc:
            problem("certificate does not verify", f"certificate {row['id']}: {exc}")
            continue
        if (
            claims.get("sub") != f"urn:uuid:{row['enrollment_id']}"
            or claims.get("serialHash") != row["serial_hash"]
        ):
            problem("certificate claims do not match", f"certificate {row['id']}")
            continue
        if not status_entry_matches(claims, row["status_list"], row["status_index"]):
            problem("certificate status entry is not its row's", f"certificate {row['id']}")
            continue
        verified += 1
    return {"issued": len(rows), "verified": verified}


# ---------------------------------------------------------------------------------------------
# scenarios


def enough_enrollments(workload: Workload, threads: int, connections: int) -> None:
    """Each wrk thread must have several enrollments per connection to draw on, or the run would
    wait on the players' clock from the start."""
    per_thread = Counter(workload.learners[p.learner].thread for p in workload.pairs)
    need = MIN_ENROLLMENTS_PER_CONNECTION * -(-connections // threads)
    fewest = min((per_thread.get(t, 0) for t in range(1, threads + 1)), default=0)
    if fewest < need:
        raise BenchError(
            f"a wrk thread has {fewest:,} enrollments to play, fewer than {need:,} "
            f"({MIN_ENROLLMENTS_PER_CONNECTION} per connection): choose more learners "
            "(--learners) or seed more progress rows"
        )


def pacing_failures(pacing: dict[str, Any], prepared: int) -> list[str]:
    """Why the heartbeat run does not measure the server: a heartbeat sent sooner than an
    honest player would (a bug in the script), or the learners ran out, so that connections
    waited for a player's next heartbeat instead of loading the server."""
    failures: list[str] = []
    shortest, after = pacing.get("min_interval_s"), pacing.get("min_after_answer_s")
    # The clock is read in microseconds and wrk's timers fire on time or late: a few ms of
    # slack only absorbs rounding, far below the gaps the checks are about.
    if pacing.get("sent_early") or (shortest is not None and shortest < HEARTBEAT_PERIOD - 0.005):
        failures.append(
            f"heartbeats of one enrollment sent {shortest} s apart, below {HEARTBEAT_PERIOD} s "
            f"({pacing.get('sent_early')} sent before due): the script's pacing is broken"
        )
    if after is not None and after < HEARTBEAT_MIN_GAP - 0.005:
        failures.append(
            f"a heartbeat sent {after} s after the previous one's answer, below "
            f"{HEARTBEAT_MIN_GAP} s: the script's pacing is broken"
        )
    if pacing.get("waits_for_a_due_enrollment"):
        failures.append(
            f"the learners ran out: every one of the {prepared:,} enrollments had started and "
            f"{pacing['waits_for_a_due_enrollment']:,} requests waited "
            f"{pacing['waited_s']:.1f} s in all for one to be due, so the rate measured is the "
            "players', not the server's: choose more learners (--learners)"
        )
    return failures


def wrk_scenario(
    scenario: str,
    args: argparse.Namespace,
    url: str,
    database_url: str,
    settings: Any,
    workdir: Path,
    log_path: Path | None,
    sampler: CpuSampler,
    *,
    browser: bool = False,
) -> dict[str, Any]:
    rng = random.Random(args.seed)  # noqa: S311 - picks benchmark inputs, nothing secret
    build = heartbeat_workload if scenario == "heartbeat" else complete_workload

    async def prepare() -> Workload:
        conn = await _connect(database_url)
        try:
            return await build(conn, args.learners, rng)
        finally:
            await conn.close()

    print(f"{scenario}: choosing learners and lessons ...", file=sys.stderr)
    workload = asyncio.run(prepare())
    assign_threads(workload, args.threads)
    if scenario == "heartbeat":
        enough_enrollments(workload, args.threads, args.connections)

    async def sign_in() -> None:
        conn = await _connect(database_url)
        try:
            await log_in(conn, settings, workload.learners)
        finally:
            await conn.close()

    asyncio.run(sign_in())
    script, data_path, sent_path = write_script(workdir, scenario, args.seed, browser=browser)
    write_data(data_path, workload)
    log_offset = log_path.stat().st_size if log_path and log_path.exists() else 0
    started_at = datetime.now(UTC)
    run = run_wrk(script, sent_path, url, args, sampler)
    unanswered = {f"{scenario}-{i + 1}-{s.sent}" for i, s in run.sent.items() if s.acked < s.sent}
    in_flight_server = drain(log_path, log_offset, unanswered, log_path is not None)

    async def check() -> dict[str, Any]:
        conn = await _connect(database_url)
        try:
            if scenario == "heartbeat":
                return await check_heartbeats(conn, workload, run, started_at)
            return await check_completions(conn, workload, run, started_at)
        finally:
            await conn.close()

    checks = asyncio.run(check())
    checks["in_flight_server_statuses"] = in_flight_server
    server = server_log_summary(read_log(log_path, log_offset)) if log_path else None
    failures = wrk_failures(run.result, run.output)
    expected = ROUTES[scenario][2]
    wrong = {str(k): v for k, v in run.statuses.items() if k != expected}
    if wrong:
        failures.append(f"responses other than {expected}: {wrong}")
    if run.stalled:
        failures.append(f"{run.stalled} requests found every learner+lesson in flight")
    if browser and run.preflight["refused"]:
        failures.append(f"{run.preflight['refused']} CORS preflights refused")
    if browser and run.preflight["sent"] and run.preflight["max_age_s"] is None:
        failures.append("no preflight answer had Access-Control-Max-Age")
    if scenario == "heartbeat":
        failures += pacing_failures(run.pacing, len(workload.pairs))
    if scenario == "heartbeat" and checks["lost_updates"]:
        failures.append(f"{checks['lost_updates']} lost updates")
    if scenario == "complete" and checks["inconsistencies"]:
        failures.append(
            f"{checks['inconsistencies']} inconsistencies: {checks['inconsistency_kinds']}"
        )
    seconds = run.result["duration_us"] / 1e6
    lat = run.result["latency_us"]
    return {
        "scenario": scenario,
        "route": ROUTES[scenario][0],
        "ok": not failures,
        "failures": failures,
        "started_at": started_at.isoformat(),
        "workload": {
            "description": workload.description,
            "learners": len(workload.learners),
            "pairs": len(workload.pairs),
            "mix": workload.mix,
        },
        "figures": {
            "requests_per_s": round(run.result["requests"] / seconds, 1),
            "p50_ms": lat["p50"] / 1000,
            "p90_ms": lat["p90"] / 1000,
            "p99_ms": lat["p99"] / 1000,
            "transfer_bytes_per_s": round(run.result["bytes"] / seconds),
            "requests": run.result["requests"],
            "bytes": run.result["bytes"],
            # socket errors and timeouts, plus every answer other than the expected status
            "errors": sum(n for k, n in run.result["errors"].items() if k != "status")
            + sum(wrong.values())
            + run.preflight["refused"],
            # browser: the CORS preflights are among the requests (and the latencies)
            "preflights": run.preflight["sent"],
        },
        "variant": "browser" if browser else "plain",
        "preflight": run.preflight if browser else None,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "unmatched_responses": run.unmatched,
        "pacing": run.pacing if scenario == "heartbeat" else None,
        "checks": checks,
        "cpu": run.cpu,
        "wrk": run.result,
        "wrk_output": run.output,
        "server_log": server,
    }


async def ensure_admin(conn: asyncpg.Connection) -> tuple[uuid.UUID, int]:
    """The bench admin (a verified, profile-complete ADMIN with a bench address, so --truncate
    of the seed removes it), created on first use: (id, token version)."""
    from lms.domain.auth.passwords import hash_password

    row = await conn.fetchrow(
        "SELECT id, token_version, role FROM users WHERE email = $1", ADMIN_EMAIL
    )
    if row is not None and row["role"] == "ADMIN":
        return row["id"], row["token_version"]
    password_hash = await hash_password(secrets.token_urlsafe(24))
    row = await conn.fetchrow(
        """
        INSERT INTO users (email, username, password_hash, full_name, country, email_verified,
                           is_profile_complete, is_active, role)
        VALUES ($1, $2, $3, 'Bench Admin', 'US', true, true, true, 'ADMIN')
        ON CONFLICT (email) DO UPDATE SET role = 'ADMIN', is_active = true
        RETURNING id, token_version
        """,
        ADMIN_EMAIL,
        ADMIN_USERNAME,
        password_hash,
    )
    if row is None:
        raise RuntimeError("INSERT ... ON CONFLICT DO UPDATE ... RETURNING returns the row")
    return row["id"], row["token_version"]


@dataclass
class BulkPlan:
    course_id: uuid.UUID
    enrolled_before: int
    emails: list[str]
    expected: dict[str, str]  # email -> status


async def bulk_plan(conn: asyncpg.Connection, rows: int, rng: random.Random) -> BulkPlan:
    """A published course with about BULK_ALREADY * rows bench learners enrolled; addresses:
    that many of them, BULK_UNKNOWN * rows that have no account, the rest seeded learners not
    enrolled in it; shuffled."""
    already_n, unknown_n = round(rows * BULK_ALREADY), round(rows * BULK_UNKNOWN)
    new_n = rows - already_n - unknown_n
    course = await conn.fetchrow(
        """
        SELECT e.course_id, count(*) AS n FROM enrollments e
        JOIN courses c ON c.id = e.course_id AND c.status = 'PUBLISHED'
        GROUP BY e.course_id
        HAVING count(*) >= $1
        ORDER BY count(*) - $1, e.course_id
        LIMIT 1
        """,
        already_n,
    )
    if course is None:
        raise BenchError(f"no published course has {already_n} enrollments: seed more learners")
    domain = f"%@{BENCH_EMAIL_DOMAIN}"
    enrolled = await conn.fetch(
        "SELECT u.email FROM enrollments e JOIN users u ON u.id = e.user_id "
        "WHERE e.course_id = $1 AND u.email LIKE $2 AND u.role = 'LEARNER' ORDER BY u.email",
        course["course_id"],
        domain,
    )
    others = await conn.fetch(
        "SELECT u.email FROM users u WHERE u.email LIKE $2 AND u.role = 'LEARNER' "
        "AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.user_id = u.id "
        "AND e.course_id = $1) ORDER BY u.email",
        course["course_id"],
        domain,
    )
    if len(enrolled) < already_n or len(others) < new_n:
        raise BenchError(
            f"{rows:,} addresses need {new_n:,} learners not enrolled in the course and "
            f"{already_n:,} enrolled; the database has {len(others):,} and {len(enrolled):,}"
        )
    tag = secrets.token_hex(3)
    expected = {r["email"]: "ALREADY_ENROLLED" for r in rng.sample(list(enrolled), already_n)}
    expected |= {r["email"]: "ENROLLED" for r in rng.sample(list(others), new_n)}
    expected |= {
        f"nobody{i:05d}.{tag}@{BENCH_EMAIL_DOMAIN}": "NO_SUCH_USER" for i in range(unknown_n)
    }
    emails = list(expected)
    rng.shuffle(emails)
    return BulkPlan(course["course_id"], course["n"], emails, expected)


def bulk_scenario(
    args: argparse.Namespace,
    url: str,
    database_url: str,
    settings: Any,
    log_path: Path | None,
) -> dict[str, Any]:
    from lms.domain.auth.logins import open_login

    rng = random.Random(args.seed)  # noqa: S311 - picks benchmark inputs, nothing secret

    async def prepare() -> tuple[BulkPlan, str]:
        conn = await _connect(database_url)
        try:
            admin_id, _ = await ensure_admin(conn)
            login = await open_login(conn, settings, admin_id, user_agent="bench.learning")
            return await bulk_plan(conn, args.bulk_rows, rng), login.access_token
        finally:
            await conn.close()

    print("bulk: choosing the course and the addresses ...", file=sys.stderr)
    plan, token = asyncio.run(prepare())
    log_offset = log_path.stat().st_size if log_path and log_path.exists() else 0
    request_id = f"bench-bulk-{secrets.token_hex(4)}"
    body = json.dumps({"emails": plan.emails})
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    response = httpx.post(
        f"{url}/admin/courses/{plan.course_id}/enrollments",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Request-ID": request_id,
        },
        timeout=300.0,
    )
    wall_ms = (time.perf_counter() - started) * 1000
    failures: list[str] = []
    counts: dict[str, int] = {}
    mismatched = 0
    if response.status_code != 200:
        failures.append(f"answered {response.status_code}: {response.text[:300]}")
    else:
        answer = response.json()
        counts = answer["counts"]
        for result in answer["results"]:
            if plan.expected.get(result["email"]) != result["status"]:
                mismatched += 1
        if len(answer["results"]) != len(plan.emails):
            failures.append(f"{len(answer['results'])} results for {len(plan.emails)} addresses")
    want = Counter(plan.expected.values())
    expected_counts = {
        "enrolled": want["ENROLLED"],
        "alreadyEnrolled": want["ALREADY_ENROLLED"],
        "noSuchUser": want["NO_SUCH_USER"],
    }
    if counts and counts != expected_counts:
        failures.append(f"counts {counts}, expected {expected_counts}")
    if mismatched:
        failures.append(f"{mismatched} addresses got a status other than expected")

    async def after() -> int:
        conn = await _connect(database_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM enrollments WHERE course_id = $1", plan.course_id
                )
            )
        finally:
            await conn.close()

    enrolled_after = asyncio.run(after())
    if response.status_code == 200 and enrolled_after != plan.enrolled_before + counts.get(
        "enrolled", 0
    ):
        failures.append(
            f"the course has {enrolled_after:,} enrollments, expected "
            f"{plan.enrolled_before + counts.get('enrolled', 0):,}"
        )
    in_app = [
        float(e["duration_ms"])
        for e in read_log(log_path, log_offset)
        if e.get("request_id") == request_id and "duration_ms" in e
    ]
    return {
        "scenario": "bulk",
        "route": "POST /admin/courses/:id/enrollments",
        "ok": not failures,
        "failures": failures,
        "started_at": started_at.isoformat(),
        "figures": {
            "wall_ms": round(wall_ms, 1),
            "in_app_ms": in_app[0] if in_app else None,
            "rows": len(plan.emails),
            "request_bytes": len(body),
            "response_bytes": len(response.content),
        },
        "counts": counts,
        "expected_counts": expected_counts,
        "checks": {
            "mismatched_statuses": mismatched,
            "course_enrollments_before": plan.enrolled_before,
            "course_enrollments_after": enrolled_after,
        },
        "course_id": str(plan.course_id),
    }


# ---------------------------------------------------------------------------------------------
# reporting


def print_wrk_scenario(record: dict[str, Any], args: argparse.Namespace) -> None:
    figures, checks = record["figures"], record["checks"]
    seconds = record["wrk"]["duration_us"] / 1e6
    print(
        f"\n{record['route']} ({record['scenario']}): {args.connections} connections, "
        f"{args.threads} threads, {seconds:.0f} s; {record['workload']['description']}"
    )
    header = f"{'requests/s':>12} {'p50':>10} {'p90':>10} {'p99':>10} {'transfer/s':>14}"
    print(header)
    print("-" * len(header))
    latencies = " ".join(f"{figures[k]:>7.2f} ms" for k in ("p50_ms", "p90_ms", "p99_ms"))
    transfer = human_bytes(figures["transfer_bytes_per_s"]) + "/s"
    print(f"{figures['requests_per_s']:>12,.1f} {latencies} {transfer:>14}")
    errors = f"{figures['errors']:,} errors" if figures["errors"] else "no errors"
    print(f"{figures['requests']:,} requests, {human_bytes(figures['bytes'])} read, {errors}")
    flight = checks["in_flight_at_stop"]
    outcomes = checks["outcomes"]
    applied = outcomes.get("in flight at the stop, applied", 0)
    repeats = outcomes.get("in flight at the stop, a repeat", 0)
    served = checks.get("in_flight_server_statuses") or {}
    flight_text = (
        f"{flight} in flight when wrk stopped: {applied} applied by the server, "
        f"{flight - applied - repeats} not"
        + (f", {repeats} idempotent repeats" if repeats else "")
        + (f" (server log: {served})" if served else "")
    )
    if record["scenario"] == "heartbeat":
        print(
            f"check: {checks['pairs_touched']:,} learner+lessons touched, "
            f"{checks['lost_updates']} lost updates; {flight_text}"
        )
        watched = outcomes.get("lessons completed by watching (95% reached)", 0)
        if watched:
            print(f"  {watched} lessons crossed 95% watched and were completed by the heartbeat")
        line = pacing_line(record.get("pacing"), record["workload"]["pairs"])
        if line:
            print(line)
    else:
        print(
            f"check: {checks['lessons_completed']:,} lessons completed, "
            f"{checks['courses_completed']:,} of {checks['enrollments_touched']:,} enrollments "
            f"completed, {checks['certificates_issued']:,} certificates issued "
            f"({checks['certificates_verified']:,} verified), "
            f"{checks['inconsistencies']} inconsistencies; {flight_text}"
        )
    server = record.get("server_log")
    if server:
        print(
            f"server: {server['requests_logged']:,} requests logged, statuses "
            f"{server['statuses']}, {server['warnings_and_errors_total']} warning/error lines"
        )
        for route, stats in server["in_app_ms"].items():
            print(
                f"  in-app {route:<42} {stats['n']:>8,}  p50 {stats['p50']:7.2f} ms"
                f"  p90 {stats['p90']:7.2f} ms  p99 {stats['p99']:7.2f} ms"
            )
    line = cpu_line(record.get("cpu"))
    if line:
        print(line)


def pacing_line(pacing: dict[str, Any] | None, prepared: int) -> str | None:
    """One line on the players' clock: how many enrollments played, how far apart their
    heartbeats were, and whether any connection had to wait for one to be due."""
    if not pacing:
        return None
    shortest, mean = pacing["min_interval_s"], pacing["mean_interval_s"]
    gaps = (
        f"heartbeats of one enrollment {shortest:.3f} s apart at the least, {mean:.3f} s on "
        f"average ({pacing['intervals']:,} intervals)"
        if shortest is not None and mean is not None
        else "no enrollment sent twice"
    )
    waits = pacing["waits_for_a_due_enrollment"]
    return (
        f"  players: {pacing['enrollments_started']:,} of {prepared:,} enrollments played, "
        f"{pacing['enrollments_retired']:,} to their video's end; {gaps}; "
        + (f"{waits:,} waits for a due enrollment" if waits else "never waited for one")
    )


def print_bulk(record: dict[str, Any]) -> None:
    figures, counts = record["figures"], record["counts"]
    in_app = f" ({figures['in_app_ms']:.0f} ms in the app)" if figures["in_app_ms"] else ""
    print(
        f"\n{record['route']} (bulk): {figures['rows']:,} addresses in one request: "
        f"{figures['wall_ms']:,.0f} ms{in_app}; counts {counts}"
    )


def write_results(record: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"learning-{stamp}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# main


def database_name(database_url: str) -> str | None:
    return urlsplit(database_url).path.lstrip("/") or None


def api_pid_on(port: int) -> int | None:
    """The pid of the `lms serve --port PORT` we started (its process group's leader)."""
    wanted = ["-m", "lms", "serve", "--port", str(port)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if argv[1:6] == wanted:
                return int(entry.name)
    return None


def run(args: argparse.Namespace) -> int:
    from lms.settings import load_settings

    started_at = datetime.now(UTC)
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    records: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lms-bench-")))
        environ = stack.enter_context(resolved_environ())
        settings = load_settings(environ)
        if not settings.jwt_secret:
            raise BenchError("no JWT secret resolved (LMS_JWT_SECRET or LMS_DATA_DIR/jwt-secret)")
        database_url = environ["DATABASE_URL"]
        log_path: Path | None = None
        api_pid = None
        url = args.url.rstrip("/")
        if args.serve:
            log_path = workdir / "serve.log"
            port = free_port()
            env = {**environ, "LMS_HOST": "127.0.0.1", "LMS_PORT": str(port)}
            url = stack.enter_context(_serving(env, port, log_path))
            api_pid = api_pid_on(port)
        sampler = CpuSampler(database_name(database_url), api_pid)
        for scenario in scenarios:
            if scenario == "bulk":
                record = bulk_scenario(args, url, database_url, settings, log_path)
                print_bulk(record)
            else:
                record = wrk_scenario(
                    scenario, args, url, database_url, settings, workdir, log_path, sampler
                )
                if record["ok"]:
                    print_wrk_scenario(record, args)
                else:
                    print(record["wrk_output"], file=sys.stderr)
            records.append(record)
    failures = [f"{r['scenario']}: {f}" for r in records for f in r["failures"]]
    saved = write_results(
        {
            "benchmark": "learning",
            "started_at": started_at.isoformat(),
            "ok": not failures,
            "failures": failures,
            "url": "(served by --serve)" if args.serve else url,
            "served": args.serve,
            "granian_workers": granian_workers() if args.serve else None,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "git_commit": git_commit(),
            "params": {
                "scenario": args.scenario,
                "duration_s": args.duration,
                "connections": args.connections,
                "threads": args.threads,
                "timeout_s": args.timeout,
                "learners": args.learners,
                "bulk_rows": args.bulk_rows,
                "seed": args.seed,
                "heartbeat_period_s": HEARTBEAT_PERIOD,
                "heartbeat_min_gap_s": HEARTBEAT_MIN_GAP,
            },
            "dataset": asyncio.run(dataset_size(database_url)),
            "scenarios": records,
        }
    )
    if failures:
        raise BenchError(f"the run failed ({'; '.join(failures)}); details in {saved}")
    print(f"results: {saved.relative_to(REPO_ROOT)}")
    return 0


async def dataset_size(database_url: str) -> dict[str, int] | None:
    """Row counts at the end of the run, for the record."""
    try:
        conn = await _connect(database_url)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        tables = ("users", "courses", "lessons", "enrollments", "lesson_progress", "certificates")
        return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608
    finally:
        await conn.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.learning",
        description="Load the progress heartbeat or lesson completion of seeded learners with "
        "wrk, then check in PostgreSQL that no update was lost and every enrollment is "
        "consistent; or time one admin bulk enrollment. Seed first: python -m bench.seed.",
    )
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        default="heartbeat",
        help="heartbeat (default), complete, bulk, or all three in turn",
    )
    add_load_arguments(
        parser, duration=30, duration_help="seconds of load", connections=64, timeout=2
    )
    parser.add_argument(
        "--learners", type=int, default=5000, help="seeded learners to act as (default 5000)"
    )
    parser.add_argument(
        "--bulk-rows", type=int, default=10_000, help="addresses in the bulk request (10000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the choice of learners")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    too_few = args.learners < 1 or args.bulk_rows < 20
    problem = "need --learners >= 1 and --bulk-rows >= 20" if too_few else None
    return run_main("learning", args, run, needs_wrk=args.scenario != "bulk", problem=problem)


if __name__ == "__main__":
    sys.exit(main())
