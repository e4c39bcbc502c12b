"""What the event log adds to enrollment: the enroll statement with and without its
enrollment.created CTE, and the dispatcher's pass per event with two webhook endpoints (a tick
cut, the events read without their data, the endpoints to wake found; nothing is fanned out:
each endpoint reads the log from its own place).

    DATABASE_URL=postgresql://... .venv/bin/python -m bench.events_overhead [N]

Creates (and drops) a scratch database on that server; one connection, sequential, blocks of
the two statements alternated so the machine's load falls on both alike."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from lms.db.engine import open_pool
from lms.db.migrate import migrate_forward
from lms.db.queries import learning
from lms.domain.events.dispatcher import EventDispatcher
from lms.domain.events.webhooks import WebhookSink
from lms.settings import load_settings

PLAIN = """
INSERT INTO enrollments (user_id, course_id)
SELECT $1, c.id FROM courses c WHERE c.id = $2 AND c.status = 'PUBLISHED'
ON CONFLICT (user_id, course_id) DO NOTHING
RETURNING id, course_id, user_id, progress, completed, enrolled_at, completed_at
"""


async def main(n: int) -> None:
    base = os.environ["DATABASE_URL"]
    name = f"lms_events_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(base)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    try:
        await migrate_forward(url, quiet=True)
        settings = load_settings({**os.environ, "DATABASE_URL": url})
        pool = await open_pool(url, settings)
        async with pool.acquire() as conn:
            creator = await conn.fetchval(
                "INSERT INTO users (email, username, password_hash, role) "
                "VALUES ('c@bench.test', 'c', 'x', 'CREATOR') RETURNING id"
            )
            courses = [
                await conn.fetchval(
                    "INSERT INTO courses (creator_id, title, description, price, status, "
                    "submitted_at, published_at) "
                    "VALUES ($1, $2, 'd', 0, 'PUBLISHED', now(), now()) RETURNING id",
                    creator,
                    title,
                )
                for title in ("plain", "events")
            ]
            users = [
                r["id"]
                for r in await conn.fetch(
                    "INSERT INTO users (email, username, password_hash) SELECT 'u' || i || "
                    "'@bench.test', 'u' || i, 'x' FROM generate_series(1, $1) i RETURNING id",
                    n,
                )
            ]
            timings: dict[str, list[float]] = {"plain": [], "events": []}
            block = 100
            for start in range(0, n, block):
                for kind, course in zip(("plain", "events"), courses, strict=True):
                    for user in users[start : start + block]:
                        began = time.perf_counter()
                        if kind == "plain":
                            await conn.fetchrow(PLAIN, user, course)
                        else:
                            await learning.enroll(conn, user, course)
                        timings[kind].append(time.perf_counter() - began)
            for kind, values in timings.items():
                values.sort()
                print(
                    f"{kind:7s} enroll: mean {statistics.mean(values) * 1000:.3f} ms, "
                    f"p50 {values[len(values) // 2] * 1000:.3f} ms, "
                    f"p99 {values[int(len(values) * 0.99)] * 1000:.3f} ms ({len(values)})"
                )
            for i in range(2):
                await conn.execute(
                    "INSERT INTO webhook_endpoints (url, events, secret) "
                    "VALUES ($1, '{enrollment.created}', 'whsec_x')",
                    f"https://example.com/{i}",
                )
        dispatcher = EventDispatcher(pool, [WebhookSink(None, settings)])
        began = time.perf_counter()
        dispatched = 0
        while done := await dispatcher.dispatch_once():
            dispatched += done
        spent = time.perf_counter() - began
        print(
            f"dispatch with 2 endpoints: {dispatched} events in {spent:.2f} s "
            f"({spent / max(dispatched, 1) * 1000:.3f} ms per event, in batches of 500)"
        )
        await pool.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
