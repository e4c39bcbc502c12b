"""At 100,000 published courses the catalog's first page and a page deep in the list walk the
keyset index the same way: no sequential scan, no sort of the table. Checked with EXPLAIN on the
very statements the API runs, with custom and generic plans."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from lms.db.queries import catalog
from tests.conftest import TestUser

pytestmark = pytest.mark.slow

COURSES = 100_000


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(conn: asyncpg.Connection, sql: str, *args: object) -> list[dict[str, Any]]:
    """The nodes under the page's LIMIT: how the page of courses is found (what comes above only
    numbers and folds at most limit + 1 rows)."""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    limits = [n for n in nodes(json.loads(raw)[0]["Plan"]) if n["Node Type"] == "Limit"]
    assert len(limits) == 1, limits
    return list(nodes(limits[0]))


async def test_pages_cost_the_same_at_any_depth(db: asyncpg.Pool, creator: TestUser) -> None:
    async with db.acquire() as conn:
        # 5,000 creators, one of them the test's, sharing 100,000 published courses.
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
            SELECT CASE WHEN i % 5000 = 0 THEN $1 ELSE creators.ids[1 + i % 4999] END,
                   'Course ' || i, 'Lessons about topic ' || (i % 500), 10, 'PUBLISHED', now(),
                   timestamptz '2026-01-01' + i * interval '1 minute', 3
            FROM generate_series(1, $2) AS i,
                 (SELECT array_agg(id) AS ids FROM users WHERE id <> $1) AS creators
            """,
            creator.id,
            COURSES,
        )
        await conn.execute("ANALYZE courses; ANALYZE users")
        deep = await conn.fetchrow(
            "SELECT published_at, id FROM courses"
            " ORDER BY published_at DESC, id DESC OFFSET 90000 LIMIT 1"
        )
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            first = await explain(conn, catalog.LISTINGS[(False, False)], 20)
            later = await explain(
                conn, catalog.LISTINGS[(True, False)], 20, deep["published_at"], deep["id"]
            )
            by_creator = await explain(
                conn,
                catalog.LISTINGS[(True, True)],
                20,
                creator.id,
                deep["published_at"],
                deep["id"],
            )
            for plan in (first, later, by_creator):
                types = {n["Node Type"] for n in plan}
                assert "Seq Scan" not in types and "Sort" not in types, (mode, types)
                on_courses = [n for n in plan if n.get("Relation Name") == "courses"]
                assert len(on_courses) == 1 and on_courses[0]["Node Type"] == "Index Scan", (
                    on_courses
                )
                assert on_courses[0]["Index Name"] in (
                    "courses_catalog_idx",
                    "courses_creator_catalog_idx",
                )
                # The limit stops the index walk after a page: the rows read do not grow with depth.
                assert plan[0]["Plan Rows"] <= 21
            # A selective query (200 of 100,000 courses) is found through the GIN index.
            search = await explain(conn, catalog.SEARCHES[(False, False)], 20, "topic 42")
            searched = [n for n in search if n.get("Relation Name") == "courses"]
            assert searched and all(n["Node Type"] != "Seq Scan" for n in searched), searched
        await conn.execute("RESET plan_cache_mode")
        # And the API answers from the deep position like from the top.
        row = await catalog.published_page(
            conn, limit=20, after=(deep["published_at"], deep["id"]), creator_id=None
        )
        items = json.loads(row["items"])
        assert len(items) == 20 and uuid.UUID(items[0]["id"]) != deep["id"] and row["more"]
