"""At 100,000 published courses the catalog's first page and a page deep in the list walk the
keyset index the same way: no sequential scan, no sort of the table. Checked with EXPLAIN
(ANALYZE, BUFFERS) on the very statements the API runs: the rows PostgreSQL actually read and the
pages it touched, not the planner's estimates (which the LIMIT caps whatever the plan does). Both
plans the API can get are checked: the custom plan of the first executions, and the generic plan
a prepared statement switches to (asyncpg prepares every statement), through PREPARE and EXPLAIN
EXECUTE under plan_cache_mode = force_generic_plan."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from lms.db.queries import catalog
from tests.conftest import TestUser
from tests.integration.explain import PLANS, analyze, buffers, nodes, rows_read

pytestmark = pytest.mark.slow

COURSES = 100_000
PAGE = 20
# A page touches the index's path down (3-4 levels), the heap pages of its 21 courses and their
# 21 creators' index and heap pages: about 70 buffers, whatever the depth. A walk over a growing
# part of the table would touch thousands.
PAGE_BUFFERS = 150
SEARCH_MATCHES = 200  # courses about "topic 42": every 500th


def check_page(report: dict[str, Any], what: str) -> None:
    plan = report["Plan"]
    found = list(nodes(plan))
    types = {n["Node Type"] for n in found}
    assert "Seq Scan" not in types, (what, types)
    # The order comes from the index walk. PostgreSQL 16 may still sort the page itself (the
    # ordered json_agg and row_number over it): a Sort of the page's rows, never of the catalog.
    sorts = [n for n in found if n["Node Type"] in ("Sort", "Incremental Sort")]
    assert all(rows_read(n) <= PAGE + 1 for n in sorts), (what, sorts)
    on_courses = [n for n in found if n.get("Relation Name") == "courses"]
    assert len(on_courses) == 1 and on_courses[0]["Node Type"] == "Index Scan", (what, on_courses)
    assert on_courses[0]["Index Name"] in ("courses_catalog_idx", "courses_creator_catalog_idx")
    # The index walk stops after the page and one more row, at any depth.
    assert rows_read(on_courses[0]) <= PAGE + 1, (what, on_courses[0])
    on_users = [n for n in found if n.get("Relation Name") == "users"]
    assert all(n["Node Type"] != "Seq Scan" for n in on_users), (what, on_users)
    assert sum(rows_read(n) for n in on_users) <= PAGE + 1, (what, on_users)
    assert buffers(plan) <= PAGE_BUFFERS, (what, buffers(plan))


async def test_pages_cost_the_same_at_any_depth(db: asyncpg.Pool, creator: TestUser) -> None:
    async with db.acquire() as conn:
        # 5,000 creators sharing 100,000 published courses, 5,000 of them the test creator's.
        await conn.execute(
            """
            INSERT INTO users (email, username, full_name, role, email_verified,
                               is_profile_complete, password_hash)
            SELECT 'creator' || i || '@example.test', 'creator' || i, 'Creator ' || i, 'CREATOR',
                   true, true, 'x'
            FROM generate_series(1, 4999) AS i
            """
        )
        await conn.execute(
            """
            INSERT INTO courses (creator_id, title, description, price, status, submitted_at,
                                 published_at, lesson_count)
            SELECT CASE WHEN i % 20 = 0 THEN $1 ELSE creators.ids[1 + i % 4999] END,
                   'Course ' || i, 'Lessons about topic ' || (i % 500), 10, 'PUBLISHED', now(),
                   timestamptz '2026-01-01' + i * interval '1 minute', 3
            FROM generate_series(1, $2) AS i,
                 (SELECT array_agg(id) AS ids FROM users WHERE id <> $1) AS creators
            """,
            creator.id,
            COURSES,
        )
        await conn.execute("VACUUM ANALYZE courses, users")
        deep = await conn.fetchrow(
            "SELECT published_at, id FROM courses"
            " ORDER BY published_at DESC, id DESC OFFSET 90000 LIMIT 1"
        )
        mine_deep = await conn.fetchrow(
            "SELECT published_at, id FROM courses WHERE creator_id = $1"
            " ORDER BY published_at DESC, id DESC OFFSET 4000 LIMIT 1",
            creator.id,
        )
        pages = {
            "first": (catalog.LISTINGS[(False, False)], (PAGE,)),
            "deep": (catalog.LISTINGS[(True, False)], (PAGE, deep["published_at"], deep["id"])),
            "by creator, deep": (
                catalog.LISTINGS[(True, True)],
                (PAGE, creator.id, mine_deep["published_at"], mine_deep["id"]),
            ),
        }
        for plan in PLANS:
            for name, (sql, args) in pages.items():
                report = await analyze(conn, plan, sql, *args)
                check_page(report, f"{name}, {plan} plan")
                items = [n for n in nodes(report["Plan"]) if n["Node Type"] == "Limit"]
                assert items and items[0]["Actual Rows"] == PAGE + 1, (name, items)

            # A selective search reads its matches through the GIN index, not the table: their
            # heap pages (about one each), then the page's courses again and their creators.
            search = await analyze(conn, plan, catalog.SEARCHES[(False, False)], PAGE, "topic 42")
            found = list(nodes(search["Plan"]))
            assert all(n["Node Type"] != "Seq Scan" for n in found), found
            matched = [
                n
                for n in found
                if n.get("Relation Name") == "courses" and n["Node Type"] == "Bitmap Heap Scan"
            ]
            assert matched and sum(rows_read(n) for n in matched) == SEARCH_MATCHES, matched
            bound = SEARCH_MATCHES + 2 * PAGE_BUFFERS
            assert buffers(search["Plan"]) <= bound, buffers(search["Plan"])

        # And the API answers from the deep position like from the top.
        row = await catalog.published_page(
            conn, limit=PAGE, after=(deep["published_at"], deep["id"]), creator_id=None
        )
        items = json.loads(row["items"])
        assert len(items) == PAGE and uuid.UUID(items[0]["id"]) != deep["id"] and row["more"]
