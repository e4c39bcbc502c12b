"""Issue 22's bench: lms's enrollment and completion with its event sinks on and off.

"On": two webhook endpoints registered (both subscribed to every event type), each a tiny
receiver on loopback answering 204 (LMS_WEBHOOK_ALLOW names loopback), and LMS_XAPI_ENDPOINT
pointing at an LRS stand-in on loopback: it answers an xAPI statement batch as Ralph does (200
and the statement ids, JSON), and counts the statements. Not Ralph itself (tests/support/lrs.py):
Ralph needs a venv of its own, written to its file backend per batch, and would be the slowest
process on a 2-core machine, measuring itself more than lms; what lms does per statement (queue
it in the fan-out's transaction, POST it in a batch, delete it) is the same against either.
`lms worker` runs beside the API so deliveries happen while the load runs. "Off": no endpoint,
no LRS.

After the "on" run the suite waits for the deliveries to drain and checks nothing is lost: every
event recorded during the run has a DELIVERED delivery per endpoint, each receiver got each event
once (by its webhook-id), and every xAPI statement queued has left the queue and reached the
LRS.

The enrollment scenario: POST /courses/:id/enroll, each request a distinct (learner, free
course) pair not enrolled before (201 expected), sent with the learner's access token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from bench.harness import WRK_REPORT_LUA
from lms.db.queries import event_cursors
from lms.domain.events import xapi
from lms.netutil import free_port

# The CPU priority of the delivery side (`lms worker`, the receivers, the LRS stand-in): on a
# deployment they are other machines and cost the API nothing; sharing this one they yield to
# the API and PostgreSQL, and deliver what the runs queued once the load stops (the check waits
# for that, and records how long it took).
DELIVERY_NICE = 19
# Where the kernel allows it, the delivery side also runs in a cgroup marked cpu.idle (Linux
# 5.15+): nice and SCHED_IDLE order tasks only within their scheduling group, and each session
# is a group of its own (autogroup), whose nice 19 still weighs 15 against 1,024. Measured on
# this 2-core machine against two busy loops: a busy loop at nice 19 (SCHED_IDLE, its autogroup
# at 19) got 4 % of the machine, the same loop in the idle cgroup 0.3 %.
IDLE_CGROUP = "lms-bench-delivery"
XAPI_USER = "bench"
XAPI_PASSWORD = "bench-lrs-secret"  # noqa: S105 - a loopback stand-in's credential


def idle_cgroup() -> Path | None:
    """The delivery side's cpu.idle cgroup (made once, on cgroup v1's cpu hierarchy or v2's),
    or None where this machine offers none to this user."""
    for base in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")):
        if not (base / "cgroup.procs").exists():  # not a cgroup hierarchy (a hybrid's tmpfs)
            continue
        group = base / IDLE_CGROUP
        try:
            group.mkdir(exist_ok=True)
            (group / "cpu.idle").write_text("1")
        except OSError:
            continue
        return group
    return None


def join_idle_cgroup(tid: int, *, whole_process: bool) -> bool:
    """Move a process (all its threads) or one thread into the idle cgroup; False where that
    cannot be done (no such cgroup; a single thread on cgroup v2, whose groups take processes)."""
    group = idle_cgroup()
    if group is None:
        return False
    target = group / ("cgroup.procs" if whole_process else "tasks")
    try:
        target.write_text(str(tid))
    except OSError:
        return False
    return True


def in_idle_cgroup(pid: int) -> bool:
    try:
        return f"/{IDLE_CGROUP}" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


@dataclass
class Sink:
    """A loopback HTTP/1.1 server that takes POSTs and counts them (webhooks: by webhook-id;
    LRS: the statements of each batch, by id).

    It stands for another machine, so it should cost this one as little as it can: an asyncio
    protocol on its own thread at idle priority, reading the request line, the headers it needs
    and Content-Length, over kept-alive connections. The http.server stand-in it replaces
    (a thread per connection, the email parser on every request's headers) cost this machine
    about as much CPU as the worker's whole delivery (bench/README.md, Events)."""

    kind: str  # "webhook" or "lrs"
    ids: set[str] = field(default_factory=set)
    posts: int = 0
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    native_id: int = 0  # its thread's, for the CPU figures (bench.learning.CpuSampler)
    idle_cgroup: bool = False  # its thread runs in the IDLE_CGROUP
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/" + ("hooks" if self.kind == "webhook" else "xapi")

    def start(self) -> None:
        self.port = free_port()
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            self.native_id = threading.get_native_id()
            # Linux: per thread (the rest of the bench keeps its priority).
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DELIVERY_NICE)
            with contextlib.suppress(OSError, AttributeError):  # SCHED_IDLE, as the worker
                os.sched_setscheduler(threading.get_native_id(), os.SCHED_IDLE, os.sched_param(0))
            self.idle_cgroup = join_idle_cgroup(self.native_id, whole_process=False)
            asyncio.set_event_loop(loop)
            server = loop.run_until_complete(
                loop.create_server(lambda: _Receiver(self), "127.0.0.1", self.port)
            )
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                loop.run_until_complete(server.wait_closed())
                loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name=f"sink-{self.kind}")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the bench's loopback receiver did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def took(self, headers: dict[bytes, bytes], body: bytes) -> bytes:
        """Record one POST; the whole answer to send."""
        with self.lock:
            self.posts += 1
            if self.kind == "webhook":
                self.ids.add(headers.get(b"webhook-id", b"").decode())
                return b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
            statements = msgspec.json.decode(body)
            if isinstance(statements, dict):
                statements = [statements]
            ids = [str(s.get("id") or uuid.uuid4()) for s in statements]
            self.ids.update(ids)
        answer = msgspec.json.encode(ids)
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"X-Experience-API-Version: 1.0.3\r\nContent-Length: "
            + str(len(answer)).encode()
            + b"\r\n\r\n"
            + answer
        )


class _Receiver(asyncio.Protocol):
    """One kept-alive connection to a Sink: requests one after another (no pipelining needed:
    lms's clients wait for each answer)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buffer = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if isinstance(self.transport, asyncio.WriteTransport):
                self.transport.write(self.sink.took(headers, body))


def events_environ(environ: dict[str, str], lrs: Sink) -> dict[str, str]:
    return {
        **environ,
        "LMS_WEBHOOK_ALLOW": "127.0.0.0/8",
        "LMS_XAPI_ENDPOINT": lrs.url,
        "LMS_XAPI_USERNAME": XAPI_USER,
        "LMS_XAPI_PASSWORD": XAPI_PASSWORD,
    }


async def register_endpoints(database_url: str, settings: Any, receivers: list[Sink]) -> None:
    """The two endpoints, as an admin's POST /webhooks registers them (lms.domain.events.webhooks
    .create: the same checks and secret), subscribed to every event type."""
    from lms.domain.events import webhooks
    from lms.domain.events.log import EVENT_TYPES
    from lms.domain.events.schemas import WebhookCreate

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        # The earlier runs' events (no worker ran them: the workers dispatch) are settled, as a
        # deployment's workers would have settled them long before: they are not the new
        # endpoints' to receive, and the "on" run measures its own events only.
        await skip_to_now(pool)
        for receiver in receivers:
            await webhooks.create(
                pool,
                settings,
                WebhookCreate(url=receiver.url, events=sorted(EVENT_TYPES), description="bench"),
            )
    finally:
        await pool.close()


async def skip_to_now(pool: asyncpg.Pool) -> None:
    """Every reader of the event log (the dispatcher, the xAPI sender) moved past what is
    recorded now, as if a worker had read it all."""
    from lms.db.queries import events as events_sql

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", events_sql.DISPATCH_LOCK)
        await event_cursors.begin(conn, "dispatch")
        await event_cursors.add_tick(conn)
        await conn.execute(
            "UPDATE event_cursors SET tick = (SELECT max(id) + 1 FROM event_ticks),"
            " after_xid = '0', after_seq = 0"
        )


async def remove_endpoints(database_url: str) -> None:
    """The bench's endpoints, with their queues and logs (as an admin's DELETE removes one)."""
    from lms.db.queries import webhooks as webhooks_sql

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        for row in await pool.fetch("SELECT id FROM webhook_endpoints WHERE description = 'bench'"):
            await webhooks_sql.delete_endpoint(pool, row["id"])
    finally:
        await pool.close()


async def last_event_seq(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM events"))
    finally:
        await conn.close()


async def delivery_check(
    database_url: str, since_seq: int, receivers: list[Sink], lrs: Sink, wait_s: float
) -> dict[str, Any]:
    """Wait up to `wait_s` for the run's events to be delivered, then count: events recorded,
    deliveries per endpoint DELIVERED, what each receiver got, xAPI statements due (the run's
    events of a type that has one) / sent (no longer in the queue) / received by the LRS.
    `lost` is what is missing once the wait is over."""
    conn = await asyncpg.connect(database_url)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + wait_s
        while True:
            row = await conn.fetchrow(
                """
                SELECT (SELECT count(*) FROM events WHERE seq > $1) AS events,
                       (SELECT count(*) FROM webhook_deliveries d
                        JOIN webhook_endpoints w ON w.id = d.endpoint_id
                        WHERE d.event_seq > $1 AND w.description = 'bench'
                          AND d.status = 'DELIVERED') AS delivered,
                       (SELECT count(*) FROM webhook_deliveries d
                        JOIN webhook_endpoints w ON w.id = d.endpoint_id
                        WHERE d.event_seq > $1 AND w.description = 'bench') AS deliveries,
                       (SELECT count(*) FROM events
                        WHERE seq > $1 AND type = ANY($2::text[])) AS xapi_queued
                """,
                since_seq,
                sorted(xapi.MAPPED_TYPES),
            )
            figures = dict(row)
            figures["undispatched"] = await event_cursors.unread_count(conn, "dispatch")
            xapi_waiting = await event_cursors.unread_count(conn, "xapi", sorted(xapi.MAPPED_TYPES))
            # The xAPI sender's place moves past a statement the LRS took: what is not after
            # it went, once the dispatcher (which gives the sender its first place) read all.
            figures["xapi_sent"] = (
                figures["xapi_queued"] - xapi_waiting if figures["undispatched"] == 0 else 0
            )
            expected = figures["events"] * len(receivers)
            done = (
                figures["undispatched"] == 0
                and figures["delivered"] == expected
                and figures["xapi_sent"] == figures["xapi_queued"]
                and all(r.count() >= figures["events"] for r in receivers)
                and lrs.count() >= figures["xapi_queued"]
            )
            if done or loop.time() > deadline:
                break
            await asyncio.sleep(1.0)
        figures["drained_s"] = round(loop.time() - started, 1) if done else None
        figures["received_per_endpoint"] = [r.count() for r in receivers]
        figures["lrs_received"] = lrs.count()
        figures["lost"] = (
            expected
            - figures["delivered"]
            + sum(max(figures["events"] - n, 0) for n in figures["received_per_endpoint"])
            + (figures["xapi_queued"] - figures["xapi_sent"])
            + max(figures["xapi_queued"] - figures["lrs_received"], 0)
        )
        return figures
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------
# the enrollment scenario


async def enroll_pairs(
    database_url: str, settings: Any, learners: list[uuid.UUID], count: int, seed: int
) -> list[Post]:
    """`count` enrollments to POST: distinct (learner, free published course) pairs the
    learner is not enrolled in, each learner signed in once (a login of its own, as
    bench.learning's learners)."""
    from lms.domain.auth.logins import open_logins

    conn = await asyncpg.connect(database_url)
    try:
        courses = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM courses WHERE status = 'PUBLISHED' AND price <= 0 "
                "ORDER BY md5(id::text || $1) LIMIT 2000",
                str(seed),
            )
        ]
        if not courses or not learners:
            return []
        enrolled = {
            (r["user_id"], r["course_id"])
            for r in await conn.fetch(
                "SELECT user_id, course_id FROM enrollments WHERE user_id = ANY($1::uuid[])",
                learners,
            )
        }
        logins = await open_logins(conn, settings, learners, user_agent="bench.events")
    finally:
        await conn.close()
    tokens = {u: login.access_token for u, login in zip(learners, logins, strict=True)}
    rng = random.Random(seed)  # noqa: S311 - benchmark inputs
    out: list[Post] = []
    for course in courses:
        for user in rng.sample(learners, len(learners)):
            if (user, course) not in enrolled:
                out.append(Post(f"/courses/{course}/enroll", f"Bearer {tokens[user]}"))
                if len(out) >= count:
                    rng.shuffle(out)
                    return out
    rng.shuffle(out)
    return out


POST_LUA = """
-- POSTs from a data file, each line once per thread share (thread i takes every n-th line):
-- path, Authorization, Stripe-Signature, body, tab-separated ("-": none). When a thread's lines
-- run out it starts them again (counted in ran_out).
local threads = {}
local counter = 1
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  requests_left = {}
  local n = tonumber(NTHREADS)
  local i = 0
  for line in io.lines(DATA) do
    if i % n == id - 1 then
      local path, auth, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
      local headers = {["Accept"] = "application/json"}
      if auth ~= "-" then headers["Authorization"] = auth end
      if sig ~= "-" then headers["Stripe-Signature"] = sig end
      if body ~= "-" then headers["Content-Type"] = "application/json" else body = nil end
      table.insert(requests_left, wrk.format("POST", path, headers, body))
    end
    i = i + 1
  end
  at = 0
  created = 0
  again = 0
  other = 0
  ran_out = 0
end

function request()
  at = at + 1
  if at > #requests_left then
    ran_out = ran_out + 1
    at = 1
  end
  return requests_left[at]
end

function response(status, headers, body)
  if status == 201 then created = created + 1
  elseif status >= 200 and status < 300 then again = again + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local c, a, o, r = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created"); a = a + t:get("again"); o = o + t:get("other")
    r = r + t:get("ran_out")
  end
  io.write(string.format('POSTS {"201":%d,"2xx":%d,"other":%d,"ran_out":%d}\\n', c, a, o, r))
__REPORT__
end
"""


@dataclass(frozen=True)
class Post:
    path: str
    authorization: str | None = None
    stripe_signature: str | None = None
    body: str | None = None  # compact JSON: no tab, no newline


def write_post_script(directory: Path, name: str, posts: list[Post], threads: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{name}.tsv"
    data.write_text(
        "".join(
            f"{p.path}\t{p.authorization or '-'}\t{p.stripe_signature or '-'}\t{p.body or '-'}\n"
            for p in posts
        )
    )
    script = directory / f"{name}.lua"
    head = f"DATA = {json.dumps(str(data))}\nNTHREADS = {threads}\n"
    script.write_text(head + POST_LUA.replace("__REPORT__", WRK_REPORT_LUA))
    return script


def post_outcome(output: str) -> dict[str, int]:
    """The statuses the script counted: 201, other 2xx, others; how often a thread ran out."""
    for line in output.splitlines():
        if line.startswith("POSTS "):
            parsed: dict[str, int] = json.loads(line[len("POSTS ") :])
            return parsed
    return {}
