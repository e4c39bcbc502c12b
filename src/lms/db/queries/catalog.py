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
from collections.abc import Awaitable
from datetime import datetime

import asyncpg

from lms.db import keyset
from lms.db.projection import json_object
from lms.db.queries import ReadConn
from lms.domain.courses.schemas import Course, CourseSummary
from lms.invariants import present

COURSE_SUMMARY = json_object(CourseSummary)
COURSE_JSON = json_object(Course)


def _page(inner: str, extra: str = "") -> str:
    """Number the (at most limit + 1) rows of `inner` and fold them into one row."""
    return f"""
    WITH page AS ({inner}),
    numbered AS (SELECT *, row_number() OVER (ORDER BY sort_key DESC, id DESC) AS rn FROM page)
    SELECT coalesce(json_agg(item ORDER BY rn) FILTER (WHERE rn <= $1), '[]'::json)::text AS items,
           (array_agg(sort_key) FILTER (WHERE rn = $1))[1] AS last_key,
           (array_agg(id) FILTER (WHERE rn = $1))[1] AS last_id,
           count(*) > $1 AS more{extra}
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
        SELECT r.id, r.sort_key, r.matches, {COURSE_SUMMARY} AS item
        FROM (
            SELECT c.id, ts_rank_cd(c.search_vector, query) AS sort_key,
                   count(*) OVER () AS matches
            FROM courses c, websearch_to_tsquery('english', $2) AS query
            WHERE {" AND ".join(conditions)}
            ORDER BY sort_key DESC, c.id DESC
            LIMIT $1 + 1
        ) r
        JOIN courses c ON c.id = r.id
        JOIN users u ON u.id = c.creator_id"""
    # `matches`: how many the search ranked (after the cursor), which says whether to keep it.
    return _page(inner, ",\n           coalesce(max(matches), 0) AS matches")


def _kept_search(*, after: bool) -> str:
    # $1 limit, $2 the query text, then the cursor position. A page from the kept top of the
    # query (lms_0016): the (top_id, rank, course_id) index walked from the cursor, so it costs
    # a page whatever the number of matches. `kept` is NULL when the query is not kept, else
    # whether every match is kept; `n` how many rows the page found (limit + 1 when it is whole).
    bound = "AND " + keyset.before_sql("s.rank", "s.course_id", 3, "real") if after else ""
    inner = f"""
        SELECT r.id, r.sort_key, {COURSE_SUMMARY} AS item
        FROM (
            SELECT s.course_id AS id, s.rank AS sort_key
            FROM search_top_rows s
            WHERE s.top_id = (SELECT id FROM search_tops WHERE key = (SELECT key FROM q)) {bound}
            ORDER BY s.rank DESC, s.course_id DESC
            LIMIT $1 + 1
        ) r
        JOIN courses c ON c.id = r.id
        JOIN users u ON u.id = c.creator_id"""
    return f"""
    WITH q AS (SELECT websearch_to_tsquery('english', $2)::text AS key),
    page AS ({inner}),
    numbered AS (SELECT *, row_number() OVER (ORDER BY sort_key DESC, id DESC) AS rn FROM page)
    SELECT coalesce(json_agg(item ORDER BY rn) FILTER (WHERE rn <= $1), '[]'::json)::text AS items,
           (array_agg(sort_key) FILTER (WHERE rn = $1))[1] AS last_key,
           (array_agg(id) FILTER (WHERE rn = $1))[1] AS last_id,
           count(*) > $1 AS more,
           count(*) AS n,
           (SELECT complete FROM search_tops WHERE key = (SELECT key FROM q)) AS kept
    FROM numbered
    """


LISTINGS = {(a, b): _listing(after=a, by_creator=b) for a in (False, True) for b in (False, True)}
SEARCHES = {(a, b): _search(after=a, by_creator=b) for a in (False, True) for b in (False, True)}
KEPT_SEARCHES = {a: _kept_search(after=a) for a in (False, True)}


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


async def kept_search_page(
    conn: ReadConn,
    *,
    query: str,
    limit: int,
    after: tuple[float, uuid.UUID] | None,
    within: float | None = None,
) -> asyncpg.Record | None:
    """The page from the query's kept top, or None when that cannot answer it exactly (the
    query is not kept, or the page reaches below its kept boundary): then the plain search
    does. Identical to what search_page gives whenever it answers."""
    args: list[object] = [limit, query]
    if after is not None:
        args += [after[0], after[1]]
    row = present(
        await conn.fetchrow(KEPT_SEARCHES[after is not None], *args, timeout=within),
        "an aggregate without GROUP BY returns one row",
    )
    if row["kept"] is None or (row["n"] <= limit and not row["kept"]):
        return None
    return row


# pg_advisory_xact_lock key of lms_0016: its triggers hold it shared, a fill holds it exclusive.
SEARCH_TOPS_LOCK = 7_812_345_678_901

# Rank the query's matches as the plain search does and keep the first `$2`, with the boundary
# every later write compares against; a query kept already (another process filled it) is left.
KEEP_TOP = """
WITH q AS (SELECT websearch_to_tsquery('english', $1) AS query),
ranked AS (
    SELECT c.id, ts_rank_cd(c.search_vector, q.query) AS rank
    FROM courses c, q
    WHERE c.status = 'PUBLISHED' AND c.search_vector @@ q.query
    ORDER BY rank DESC, c.id DESC
    LIMIT $2 + 1
),
numbered AS (SELECT *, row_number() OVER (ORDER BY rank DESC, id DESC) AS rn FROM ranked),
top AS (
    INSERT INTO search_tops (key, query, complete, last_rank, last_id)
    SELECT q.query::text, q.query, s.n <= $2, s.last_rank, s.last_id
    FROM q, LATERAL (
        SELECT count(*) AS n,
               (array_agg(rank) FILTER (WHERE rn = $2))[1] AS last_rank,
               (array_agg(id) FILTER (WHERE rn = $2))[1] AS last_id
        FROM numbered
    ) s
    WHERE numnode(q.query) > 0
    ON CONFLICT (key) DO NOTHING
    RETURNING id
)
INSERT INTO search_top_rows (top_id, rank, course_id)
SELECT top.id, n.rank, n.id FROM top, numbered n WHERE n.rn <= $2
"""

KEPT_ALREADY = """
SELECT t.id, t.complete, (SELECT count(*) FROM search_top_rows s WHERE s.top_id = t.id) AS n
FROM search_tops t WHERE t.key = websearch_to_tsquery('english', $1)::text
"""

# The most recently kept queries stay; older ones (and their rows) go.
FORGET_OLD_TOPS = """
DELETE FROM search_tops WHERE id IN (
    SELECT id FROM search_tops ORDER BY filled_at DESC, id DESC OFFSET $1
)
"""


async def keep_top(conn: asyncpg.Connection, *, query: str, rows: int, queries: int) -> None:
    """Keep the first `rows` matches of `query` (on the primary, in a transaction of its own).
    The exclusive lock waits for every course write in flight (its trigger holds the lock
    shared) and holds new ones back until this commits, so each lands in the kept rows or in
    this statement's snapshot, never between."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SEARCH_TOPS_LOCK)
        kept = await conn.fetchrow(KEPT_ALREADY, query)
        if kept is not None:
            if kept["complete"] or kept["n"] * 2 >= rows:
                return  # another process kept it meanwhile
            # Unpublished and edited courses have thinned it: fill it afresh.
            await conn.execute("DELETE FROM search_tops WHERE id = $1", kept["id"])
        await conn.execute(KEEP_TOP, query, rows)
        await conn.execute(FORGET_OLD_TOPS, queries)


COURSE_BY_ID = f"""
SELECT {COURSE_JSON}::text AS body, c.status, c.creator_id
FROM courses c JOIN users u ON u.id = c.creator_id
WHERE c.id = $1
"""


def course_json(conn: ReadConn, course_id: uuid.UUID) -> Awaitable[asyncpg.Record | None]:
    """The Course (any state) as JSON text with its status and owner, for the visibility check.
    The statement's own awaitable: every course page passes here, and a coroutine of ours in
    between is one more frame each resumption goes through."""
    return conn.fetchrow(COURSE_BY_ID, course_id)
