"""PostgreSQL restarted under load: `lms serve` runs against a PostgreSQL of the test's own while
learners read the catalog, send heartbeats and enroll, and the database goes away three times (a
fast shutdown, an immediate one that leaves WAL to replay as after a crash, a fast one again).
While it is down every answer is a 503 with Retry-After (never a 500) and /readyz names the
database; within 5 s of its return every endpoint works again without restarting the API (the
pool replaces its dead connections); and every write acknowledged with a 2xx is in the database
afterwards."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from lms.domain.auth.logins import open_logins
from lms.embedded import EmbeddedPostgres
from lms.netutil import free_port
from lms.settings import Settings, load_settings
from tests.conftest import ServerUrls
from tests.helpers import eventually, run_lms, wait_ready
from tests.integration.faults.processes import log_tail, service_env, spawn, stop

pytestmark = pytest.mark.slow

COURSES = 4
LESSON_SECONDS = 3600.0
READERS = 2
HEARTBEATERS = 4  # each with learners of its own: no two heartbeats in flight for one learner
ENROLLERS = 2
LEARNERS_PER_HEARTBEATER = 3
NEWCOMERS = 400  # learners who enroll during the test, a few a second
RECOVERY_SECONDS = 5.0


@dataclass
class Seeded:
    course_ids: list[uuid.UUID]
    lesson_ids: list[uuid.UUID]  # the first lesson of each course
    enrolled: list[tuple[uuid.UUID, str]]  # (user id, token) of learners enrolled everywhere
    newcomers: list[tuple[uuid.UUID, str]]


@dataclass
class Observed:
    """What the load saw: every answer, and the writes the API acknowledged."""

    answers: list[tuple[float, str, int]] = field(default_factory=list)  # (when, kind, status)
    unexpected: list[str] = field(default_factory=list)
    heartbeats: dict[tuple[uuid.UUID, uuid.UUID], float] = field(default_factory=dict)
    enrollments: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)

    def count(self, kind: str, status_class: int, since: float = 0.0) -> int:
        return sum(
            1 for t, k, s in self.answers if k == kind and s // 100 == status_class and t >= since
        )


def shut_down_immediately(server: EmbeddedPostgres) -> None:
    """PostgreSQL's immediate shutdown (SIGQUIT): every backend ends at once, nothing is
    checkpointed, and the next start replays the WAL as after a crash."""
    pid = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGQUIT)
    while True:  # our child (EmbeddedPostgres started it): reap it
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.05)


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    (tmp_path / "pg").mkdir()
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        yield server
    finally:
        server.stop()


async def seed(database_url: str, settings: Settings) -> Seeded:
    conn = await asyncpg.connect(database_url)
    try:

        async def users(prefix: str, n: int, role: str) -> list[tuple[uuid.UUID, str]]:
            rows = await conn.fetch(
                """
                INSERT INTO users (email, username, full_name, role, email_verified,
                                   is_profile_complete, is_active, password_hash)
                SELECT $1 || i || '@example.test', $1 || i, 'User ' || i, $2, true, true, true, 'x'
                FROM generate_series(1, $3::int) AS i
                RETURNING id, token_version
                """,
                prefix,
                role,
                n,
            )
            logins = await open_logins(conn, settings, [r["id"] for r in rows])
            return [(login.user_id, login.access_token) for login in logins]

        [(creator_id, _)] = await users("creator", 1, "CREATOR")
        enrolled = await users("learner", HEARTBEATERS * LEARNERS_PER_HEARTBEATER, "LEARNER")
        newcomers = await users("newcomer", NEWCOMERS, "LEARNER")
        course_ids = [
            r["id"]
            for r in await conn.fetch(
                """
                INSERT INTO courses (creator_id, title, price, status, submitted_at, published_at,
                                     lesson_count)
                SELECT $1, 'Course ' || i, 0, 'PUBLISHED', now(), now() - i * interval '1 min', 1
                FROM generate_series(1, $2::int) AS i
                RETURNING id
                """,
                creator_id,
                COURSES,
            )
        ]
        lesson_ids = [
            await conn.fetchval(
                """
                INSERT INTO lessons (course_id, title, position, video_url, duration_seconds)
                VALUES ($1, 'Lesson', 1, 'https://videos.example.test/v.mp4', $2)
                RETURNING id
                """,
                course_id,
                LESSON_SECONDS,
            )
            for course_id in course_ids
        ]
        await conn.executemany(
            "INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)",
            [(user_id, course_id) for user_id, _ in enrolled for course_id in course_ids],
        )
    finally:
        await conn.close()
    return Seeded(course_ids, lesson_ids, enrolled, newcomers)


def expect(observed: Observed, kind: str, response: httpx.Response) -> bool:
    """Record one answer; True when it acknowledged the request. A 503 must carry Retry-After
    and the error shape; any other failure is a defect."""
    observed.answers.append((time.monotonic(), kind, response.status_code))
    if response.is_success:
        return True
    body = response.json() if "json" in response.headers.get("content-type", "") else None
    if not (
        response.status_code == 503
        and response.headers.get("retry-after", "").isdigit()
        and isinstance(body, dict)
        and body.get("status_code") == 503
    ):
        observed.unexpected.append(f"{kind}: {response.status_code} {response.text[:300]}")
    return False


async def call(
    client: httpx.AsyncClient, observed: Observed, kind: str, method: str, url: str, **kw: object
) -> bool:
    try:
        response = await client.request(method, url, **kw)
    except httpx.HTTPError as exc:  # the API itself must stay up and answer
        observed.unexpected.append(f"{kind}: {type(exc).__name__} {exc}")
        return False
    return expect(observed, kind, response)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def reader(client: httpx.AsyncClient, seeded: Seeded, observed: Observed, n: int) -> None:
    course = str(seeded.course_ids[n % COURSES])
    while True:
        await call(client, observed, "catalog", "GET", "/courses")
        await call(client, observed, "course", "GET", f"/courses/{course}")
        await asyncio.sleep(0.01)


async def heartbeater(
    client: httpx.AsyncClient, seeded: Seeded, observed: Observed, n: int
) -> None:
    mine = seeded.enrolled[n * LEARNERS_PER_HEARTBEATER : (n + 1) * LEARNERS_PER_HEARTBEATER]
    position = 0.0
    while True:
        position += 1.0  # increasing: the stored position can only be the last one sent or later
        for user_id, token in mine:
            for lesson_id in seeded.lesson_ids:
                ok = await call(
                    client,
                    observed,
                    "heartbeat",
                    "POST",
                    f"/lessons/{lesson_id}/progress",
                    json={"positionSeconds": position},
                    headers=bearer(token),
                )
                if ok:
                    observed.heartbeats[(user_id, lesson_id)] = position
        # A player's pace: a heartbeat a second per enrollment, counted from the previous answer
        # (one sooner than half a second after the previous accepted one would be a 429).
        await asyncio.sleep(1.0)


async def enroller(client: httpx.AsyncClient, seeded: Seeded, observed: Observed, n: int) -> None:
    pairs = [
        (user, course)
        for i, user in enumerate(seeded.newcomers)
        if i % ENROLLERS == n
        for course in seeded.course_ids
    ]
    while True:  # once all are enrolled, again: each answers 200 with the same enrollment
        for (user_id, token), course_id in pairs:
            while True:  # a refused enrollment is retried, as a client would
                url = f"/courses/{course_id}/enroll"
                ok = await call(client, observed, "enroll", "POST", url, headers=bearer(token))
                if ok:
                    observed.enrollments.add((user_id, course_id))
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.02)


@dataclass
class Load:
    observed: Observed
    tasks: list[asyncio.Task[None]]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def api_client() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=READERS + HEARTBEATERS + ENROLLERS + 4)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield client


async def test_the_api_rides_out_a_postgresql_restart(
    postgres: EmbeddedPostgres,
    server_urls: ServerUrls,
    tmp_path: Path,
    api_client: httpx.AsyncClient,
) -> None:
    database_url = await asyncio.to_thread(postgres.start)
    migrated = await asyncio.to_thread(
        run_lms, "migrate", DATABASE_URL=database_url, NATS_URL=server_urls.nats
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    jwt_secret = secrets.token_urlsafe(48)
    settings = load_settings({"LMS_JWT_SECRET": jwt_secret})
    seeded = await seed(database_url, settings)

    port = free_port()
    env = service_env(
        database_url=database_url,
        nats_url=server_urls.nats,
        data_dir=tmp_path / "data",
        jwt_secret=jwt_secret,
        LMS_PORT=str(port),
    )
    api_log = tmp_path / "api.log"
    api = spawn(env, "serve", "--workers", "1", log=api_log)
    client = api_client
    client.base_url = httpx.URL(f"http://127.0.0.1:{port}")
    observed = Observed()
    load = Load(observed, [])
    try:
        assert await asyncio.to_thread(wait_ready, port, 60), log_tail(api_log)
        load.tasks = [
            *(asyncio.create_task(reader(client, seeded, observed, i)) for i in range(READERS)),
            *(
                asyncio.create_task(heartbeater(client, seeded, observed, i))
                for i in range(HEARTBEATERS)
            ),
            *(asyncio.create_task(enroller(client, seeded, observed, i)) for i in range(ENROLLERS)),
        ]

        async def acknowledged_writes(since: float) -> bool:
            return all(observed.count(k, 2, since) >= 10 for k in ("heartbeat", "enroll"))

        async def refused_since(since: float) -> bool:
            kinds = ("catalog", "course", "heartbeat", "enroll")
            return all(observed.count(k, 5, since) >= 3 for k in kinds)

        newcomer_id, newcomer_token = seeded.newcomers[-1]
        probe_user_id, probe_token = seeded.enrolled[0]
        probes = [
            ("GET", "/readyz", {}),
            ("GET", "/courses", {}),
            ("GET", f"/courses/{seeded.course_ids[0]}", {}),
            ("GET", "/progress", {"headers": bearer(probe_token)}),
            ("GET", f"/courses/{seeded.course_ids[1]}/progress", {"headers": bearer(probe_token)}),
            (
                "POST",
                f"/courses/{seeded.course_ids[0]}/enroll",
                {"headers": bearer(newcomer_token)},
            ),
        ]

        async def every_endpoint_works() -> list[int] | None:
            statuses = [(await client.request(m, url, **kw)).status_code for m, url, kw in probes]
            return statuses if all(200 <= s < 300 for s in statuses) else None

        # Several outages, each caught at a different moment of the load: the errors a restart
        # causes (refused, reset, terminated, "shutting down", "starting up") depend on it.
        recovered_at = 0.0
        crash = functools.partial(shut_down_immediately, postgres)
        for stop_postgres in (postgres.stop, crash, postgres.stop):
            acknowledged = functools.partial(acknowledged_writes, recovered_at)
            await eventually(acknowledged, within=30, what="writes acknowledged")
            await asyncio.to_thread(stop_postgres)
            down_at = time.monotonic()
            ready = await client.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json() == {
                "status": "unavailable",
                "database": "unavailable",
                "nats": "ok",
            }
            refused = functools.partial(refused_since, down_at)
            await eventually(refused, within=20, what="every endpoint answering 503")

            await asyncio.to_thread(postgres.start)
            await eventually(
                every_endpoint_works, within=RECOVERY_SECONDS, what="every endpoint working again"
            )
            recovered_at = time.monotonic()
        acknowledged = functools.partial(acknowledged_writes, recovered_at)
        await eventually(acknowledged, within=30, what="writes acknowledged after")
    finally:
        await load.stop()
        stop(api)

    assert not observed.unexpected, observed.unexpected[:20]
    conn = await asyncpg.connect(database_url)
    try:
        stored = {
            (r["user_id"], r["lesson_id"]): r["position_seconds"]
            for r in await conn.fetch(
                "SELECT user_id, lesson_id, position_seconds FROM lesson_progress"
            )
        }
        enrollments = {
            (r["user_id"], r["course_id"])
            for r in await conn.fetch("SELECT user_id, course_id FROM enrollments")
        }
    finally:
        await conn.close()
    lost_heartbeats = {
        key: (acked, stored.get(key))
        for key, acked in observed.heartbeats.items()
        if stored.get(key, -1.0) < acked
    }
    assert not lost_heartbeats, lost_heartbeats
    assert observed.enrollments - enrollments == set()
    assert (newcomer_id, seeded.course_ids[0]) in enrollments
    assert (probe_user_id, seeded.course_ids[1]) in enrollments
