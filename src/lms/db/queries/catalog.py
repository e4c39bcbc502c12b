"""The catalog hot path: GET /courses and GET /courses/:id, JSON built by PostgreSQL.

Each list variant is its own statement (asyncpg prepares and caches it per connection), keyset
paginated on (published_at, id) or, for a search, (rank, id), and walks an index whatever the
depth: the cost of a page does not grow with the table. A page is one row: the items as a JSON
array text, the last item's sort key (for the next cursor) and whether more follow.

Every function here only reads, and may be given the read replicas (`ReadConn`): the callers
choose them for anonymous visitors (lms.domain.courses.controllers).

Raw because it is the busiest read: the JSON goes from PostgreSQL to the socket without being
decoded or re-encoded in Python, and the statements are fixed texts asyncpg plans once per
connection (a builder would rebuild and recompile each on every request).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db import keyset
from lms.db.projection import json_object
from lms.db.queries import ReadConn
from lms.domain.courses.schemas import Course, CourseSummary
from lms.invariants import present

COURSE_SUMMARY = json_object(CourseSummary)
COURSE_JSON = json_object(Course)


def _page(inner: str) -> str:
    """Number the (at most limit + 1) rows of `inner` and fold them into one row."""
    return f"""
    WITH page AS ({inner}),
    numbered AS (SELECT *, row_number() OVER (ORDER BY sort_key DESC, id DESC) AS rn FROM page)
    SELECT coalesce(json_agg(item ORDER BY rn) FILTER (WHERE rn <= $1), '[]'::json)::text AS items,
           (array_agg(sort_key) FILTER (WHERE rn = $1))[1] AS last_key,
           (array_agg(id) FILTER (WHERE rn = $1))[1] AS last_id,
           count(*) > $1 AS more
    FROM numbered
    """


def _listing(*, after: bool, by_creator: bool) -> str:
    # $1 limit, then the creator, then the cursor position: the caller passes them in that order.
    conditions, n = ["c.status = 'PUBLISHED'"], 1
    if by_creator:
        n += 1
        conditions.append(f"c.creator_id = ${n}")
    if after:
        conditions.append(keyset.before_sql("c.published_at", "c.id", n + 1, "timestamptz"))
    inner = f"""
        SELECT c.id, c.published_at AS sort_key, {COURSE_SUMMARY} AS item
        FROM courses c JOIN users u ON u.id = c.creator_id
        WHERE {" AND ".join(conditions)}
        ORDER BY c.published_at DESC, c.id DESC
        LIMIT $1 + 1"""
    return _page(inner)


def _search(*, after: bool, by_creator: bool) -> str:
    # $1 limit, $2 the query text, then the creator, then the cursor position.
    conditions, n = ["c.status = 'PUBLISHED'", "c.search_vector @@ query"], 2
    if by_creator:
        n += 1
        conditions.append(f"c.creator_id = ${n}")
    if after:
        rank = "ts_rank_cd(c.search_vector, query)"
        conditions.append(keyset.before_sql(rank, "c.id", n + 1, "real"))
    # Rank every match, but build JSON only for the page: ranking a common word's 20,000
    # matches is cheap, building 20,000 JSON objects to throw all but 21 away is not.
    inner = f"""
        SELECT r.id, r.sort_key, {COURSE_SUMMARY} AS item
        FROM (
            SELECT c.id, ts_rank_cd(c.search_vector, query) AS sort_key
            FROM courses c, websearch_to_tsquery('english', $2) AS query
            WHERE {" AND ".join(conditions)}
            ORDER BY sort_key DESC, c.id DESC
            LIMIT $1 + 1
        ) r
        JOIN courses c ON c.id = r.id
        JOIN users u ON u.id = c.creator_id"""
    return _page(inner)


LISTINGS = {(a, b): _listing(after=a, by_creator=b) for a in (False, True) for b in (False, True)}
SEARCHES = {(a, b): _search(after=a, by_creator=b) for a in (False, True) for b in (False, True)}


async def published_page(
    conn: ReadConn,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    creator_id: uuid.UUID | None,
) -> asyncpg.Record:
    args: list[object] = [limit]
    if creator_id is not None:
        args.append(creator_id)
    if after is not None:
        args += [after[0], after[1]]
    row = await conn.fetchrow(LISTINGS[(after is not None, creator_id is not None)], *args)
    return present(row, "an aggregate without GROUP BY returns one row")


async def search_page(
    conn: ReadConn,
    *,
    query: str,
    limit: int,
    after: tuple[float, uuid.UUID] | None,
    creator_id: uuid.UUID | None,
    within: float | None = None,
) -> asyncpg.Record:
    args: list[object] = [limit, query]
    if creator_id is not None:
        args.append(creator_id)
    if after is not None:
        args += [after[0], after[1]]
    # On expiry asyncpg cancels the statement in PostgreSQL too, and raises TimeoutError.
    row = await conn.fetchrow(
        SEARCHES[(after is not None, creator_id is not None)], *args, timeout=within
    )
    return present(row, "an aggregate without GROUP BY returns one row")


COURSE_BY_ID = f"""
SELECT {COURSE_JSON}::text AS body, c.status, c.creator_id
FROM courses c JOIN users u ON u.id = c.creator_id
WHERE c.id = $1
"""


async def course_json(conn: ReadConn, course_id: uuid.UUID) -> asyncpg.Record | None:
    """The Course (any state) as JSON text with its status and owner, for the visibility check."""
    return await conn.fetchrow(COURSE_BY_ID, course_id)
