"""The creator dashboard at 1,000,000 progress rows: its aggregate reads only the creator's own
rows, through indexes, and touches pages in proportion to them. Checked with EXPLAIN (ANALYZE,
BUFFERS) on the very statement the API runs, under its custom and its generic plan: the rows
actually read and the pages touched, not the planner's estimates, nor a time that depends on how
busy the machine is."""

from __future__ import annotations

import json

import asyncpg
import pytest

from lms.db.queries.dashboard import CREATOR_DASHBOARD
from tests.conftest import TestUser
from tests.integration.explain import PLANS, analyze, buffers, nodes, rows_read

pytestmark = pytest.mark.slow

LEARNERS = 20_000
OTHER_COURSES = 2_000
MY_COURSES = 20
LESSONS = 10
PER_LEARNER = 5  # enrollments
MY_SHARE_PERCENT = 3  # of the enrollments, in the creator's courses: a big creator


async def seed(conn: asyncpg.Connection, creator: TestUser) -> None:
    await conn.execute(
        """
        INSERT INTO users (email, username, full_name, role, email_verified,
                           is_profile_complete, password_hash)
        SELECT 'creator' || i || '@example.test', 'creator' || i, 'Creator ' || i, 'CREATOR',
               true, true, 'x'
        FROM generate_series(1, 100) AS i;
        INSERT INTO users (email, username, full_name, role, email_verified,
                           is_profile_complete, password_hash)
        SELECT 'learner' || i || '@example.test', 'learner' || i, 'Learner ' || i, 'LEARNER',
               true, true, 'x'
        FROM generate_series(1, 20000) AS i
        """
    )
    # Course numbers 1..20 are the creator's, 21..2020 everyone else's.
    await conn.execute(
        """
        INSERT INTO courses (creator_id, title, status, submitted_at, published_at, lesson_count)
        SELECT CASE WHEN i <= $2::int THEN $1::uuid ELSE others.ids[1 + i % 100] END,
               'Course ' || i, 'PUBLISHED', now(), now() - i * interval '1 minute', $3::int
        FROM generate_series(1, $2::int + $4::int) AS i,
             (SELECT array_agg(id) AS ids FROM users WHERE role = 'CREATOR' AND id <> $1) AS others;
        """,
        creator.id,
        MY_COURSES,
        LESSONS,
        OTHER_COURSES,
    )
    await conn.execute(
        """
        INSERT INTO lessons (course_id, title, position, duration_seconds)
        SELECT c.id, 'Lesson ' || p, p, 600 FROM courses c, generate_series(1, $1) AS p
        """,
        LESSONS,
    )
    # Every learner in PER_LEARNER distinct courses, MY_SHARE_PERCENT of them the creator's.
    await conn.execute(
        """
        WITH courses_by_number AS (
            SELECT id, substring(title FROM 8)::int AS n FROM courses
        ), learners AS (
            SELECT id, row_number() OVER (ORDER BY username) AS n FROM users WHERE role = 'LEARNER'
        )
        INSERT INTO enrollments (user_id, course_id, progress)
        SELECT l.id, c.id, (l.n * k % 101)::numeric
        FROM learners l, generate_series(1, $3::int) AS k, courses_by_number c
        WHERE c.n = CASE WHEN (l.n * $3::int + k) % 100 < $4::int THEN 1 + (l.n + k) % $1::int
                         ELSE $1::int + 1 + (l.n + k * 401) % $2::int END
        ON CONFLICT DO NOTHING
        """,
        MY_COURSES,
        OTHER_COURSES,
        PER_LEARNER,
        MY_SHARE_PERCENT,
    )
    await conn.execute(
        """
        INSERT INTO lesson_progress (user_id, lesson_id, enrollment_id, completed, completed_at,
                                     position_seconds, watched_seconds)
        SELECT e.user_id, l.id, e.id, l.position <= 4, CASE WHEN l.position <= 4 THEN now() END,
               l.position * 50, l.position * 50
        FROM enrollments e JOIN lessons l ON l.course_id = e.course_id
        """
    )
    await conn.execute("VACUUM ANALYZE users, courses, lessons, enrollments, lesson_progress")


async def test_the_dashboard_reads_only_the_creators_rows(
    db: asyncpg.Pool, creator: TestUser
) -> None:
    async with db.acquire() as conn:
        await seed(conn, creator)
        total = await conn.fetchval("SELECT count(*) FROM lesson_progress")
        assert total >= 1_000_000, total
        mine = await conn.fetchval(
            """SELECT count(*) FROM lesson_progress p JOIN lessons l ON l.id = p.lesson_id
               JOIN courses c ON c.id = l.course_id WHERE c.creator_id = $1""",
            creator.id,
        )
        my_enrollments = await conn.fetchval(
            """SELECT count(*) FROM enrollments e JOIN courses c ON c.id = e.course_id
               WHERE c.creator_id = $1""",
            creator.id,
        )
        assert 25_000 <= mine <= 35_000, mine  # about 3% of the table

        heap_pages = await conn.fetchval(
            "SELECT relpages FROM pg_class WHERE relname = 'lesson_progress'"
        )
        for plan in PLANS:
            report = await analyze(conn, plan, CREATOR_DASHBOARD, creator.id, "usd")
            found = list(nodes(report["Plan"]))
            on_progress = [n for n in found if n.get("Relation Name") == "lesson_progress"]
            assert on_progress, "the statement must read lesson_progress"
            for node in on_progress:
                assert node["Node Type"] in ("Index Scan", "Bitmap Heap Scan"), (plan, node)
            # Rows actually read from lesson_progress: exactly the creator's, not the table's.
            read = sum(rows_read(n) for n in on_progress)
            assert read == mine, (plan, read, mine, total)
            on_enrollments = [n for n in found if n.get("Relation Name") == "enrollments"]
            assert all(n["Node Type"] != "Seq Scan" for n in on_enrollments), on_enrollments
            assert sum(rows_read(n) for n in on_enrollments) == my_enrollments, plan
            assert "JIT" not in report, "a cost estimate this high would spend time compiling"
            # Pages touched follow the creator's rows: fewer visits than rows read (an index
            # leaf holds hundreds of entries, a heap page dozens of rows), and far fewer than
            # the table's pages, which any walk of lesson_progress would touch every one of.
            touched = buffers(report["Plan"])
            assert touched < mine and touched < heap_pages / 2, (plan, touched, mine, heap_pages)

        # And the API's answer adds up to the same rows.
        body = json.loads(await conn.fetchval(CREATOR_DASHBOARD, creator.id, "usd"))
        assert body["totals"]["enrollmentCount"] == my_enrollments
        assert body["totals"]["courseCount"] == MY_COURSES
        started = sum(lesson["startedCount"] for c in body["courses"] for lesson in c["lessons"])
        assert started == mine
