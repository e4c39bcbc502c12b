"""GET /courses and GET /courses/:id: what every visitor hits. PostgreSQL builds the JSON; Python
adds the signed cursor, an ETag (a 304 when the client has it already) and caching headers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from datetime import datetime
from typing import NamedTuple

import asyncpg

from lms.context import AppContext
from lms.db.queries import ReadConn
from lms.db.queries import catalog as sql
from lms.domain.auth.authentication import Principal
from lms.domain.courses.access import can_see
from lms.domain.courses.search_slots import SEARCH_LINE_PER_SLOT, SEARCH_WAIT_SECONDS, SearchSlots
from lms.domain.errors import Invalid, NotFound, Unavailable
from lms.domain.paging import decode_cursor, encode_cursor, json_page
from lms.domain.rate_limits import BatchedLimit, client_key

log = logging.getLogger("lms.catalog")

MAX_QUERY_LENGTH = 200
# Anonymous catalog answers may be cached by browsers and CDNs for a little while.
PUBLIC_CACHE = "public, max-age=30, stale-while-revalidate=60"
PRIVATE_CACHE = "private, no-cache"
SEARCH_TIMEOUT_SECONDS = 5.0
# A search that ranked at least this many matches has its top kept (lms_0016) for the next
# ones: KEPT_ROWS matches (50 pages of 20), for the KEPT_QUERIES most recently kept queries.
KEEP_FROM_MATCHES = 1000
KEPT_ROWS = 1000
KEPT_QUERIES = 2000
_searches = SearchSlots()
_search_counts = BatchedLimit(60)
# Queries this process is keeping now (one fill per query per process; the table's key and
# the fill's lock settle it between processes), and the tasks doing so.
_keeping: set[str] = set()
_keep_tasks: set[asyncio.Task[None]] = set()


def forget_kept_searches() -> None:
    """Drop this process's search counts (tests start from an empty database)."""
    _search_counts.forget()


async def keeping_done() -> None:
    """Wait for the kept tops being filled in the background (tests)."""
    while _keep_tasks:
        await asyncio.gather(*_keep_tasks, return_exceptions=True)


class CatalogBody(NamedTuple):
    """A catalog or course page's JSON, its ETag and Cache-Control (made per request: a tuple
    costs a third of a frozen dataclass)."""

    body: bytes
    etag: str
    cache_control: str


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _answer(text: str, principal: Principal | None) -> CatalogBody:
    body = text.encode()
    return CatalogBody(body, etag_of(body), PRIVATE_CACHE if principal else PUBLIC_CACHE)


async def list_courses(
    db: asyncpg.Pool,
    reads: ReadConn,
    ctx: AppContext,
    principal: Principal | None,
    *,
    limit: int,
    cursor: str | None,
    q: str | None,
    creator_id: uuid.UUID | None,
    client_ip: str | None,
) -> CatalogBody:
    """A page of the catalog, read from `reads` (the read replicas for an anonymous caller, else
    the primary); `client_ip` is who asks: a search counts against its limit, a write that goes
    to `db`, the primary, whoever asks."""
    query = q.strip() if q else ""
    if len(query) > MAX_QUERY_LENGTH:
        raise Invalid(f"q must be at most {MAX_QUERY_LENGTH} characters")
    # The cursor is bound to what it pages through: it does not work for another query or creator.
    scope = f"catalog:{query}:{creator_id or ''}"
    if query:
        after_rank = None
        if cursor:
            rank, last_id = _position(ctx.secret, scope, cursor)
            if not isinstance(rank, (int, float)) or isinstance(rank, bool):
                raise Invalid("malformed cursor")
            after_rank = (float(rank), last_id)
        # A client gets so many searches a minute (counted in memory, added to the shared
        # counters in aggregate: no write per search), and a process runs so many at once.
        settings = ctx.settings
        _search_counts.take(
            db,
            f"ip:search:{client_key(client_ip)}",
            settings.search_rate_limit_per_minute,
            "searches from this address",
            label="search",
        )
        # A common query's top is kept in the database (lms_0016): a page within it is an
        # index walk. Else, or below it, the plain ranked search, which ranks every match.
        async with _searches.take(
            settings.search_concurrency,
            wait=SEARCH_WAIT_SECONDS,
            line=settings.search_concurrency * SEARCH_LINE_PER_SLOT,
        ):
            try:
                row = None
                if creator_id is None:
                    row = await sql.kept_search_page(
                        reads,
                        query=query,
                        limit=limit,
                        after=after_rank,
                        within=SEARCH_TIMEOUT_SECONDS,
                    )
                plain = row is None
                if row is None:
                    row = await sql.search_page(
                        reads,
                        query=query,
                        limit=limit,
                        after=after_rank,
                        creator_id=creator_id,
                        within=SEARCH_TIMEOUT_SECONDS,
                    )
            except TimeoutError:
                # A query matching much of a huge catalog must not hold a connection long; it
                # is a common one, so its top is kept for the next asker.
                if creator_id is None and after_rank is None:
                    _keep(db, query)
                raise Unavailable("search took too long; try more specific words") from None
        common = plain and after_rank is None and row["matches"] >= KEEP_FROM_MATCHES
        if common and creator_id is None:
            _keep(db, query)
        next_cursor = (
            encode_cursor(ctx.secret, scope, row["last_key"], str(row["last_id"]))
            if row["more"]
            else None
        )
        return _answer(json_page(row["items"], next_cursor), principal)
    else:
        after_time = None
        if cursor:
            at, last_id = _position(ctx.secret, scope, cursor)
            after_time = (_timestamp(at), last_id)
        row = await sql.published_page(reads, limit=limit, after=after_time, creator_id=creator_id)
        next_cursor = (
            encode_cursor(ctx.secret, scope, row["last_key"].isoformat(), str(row["last_id"]))
            if row["more"]
            else None
        )
    return _answer(json_page(row["items"], next_cursor), principal)


async def get_course(
    reads: ReadConn, course_id: uuid.UUID, principal: Principal | None
) -> CatalogBody:
    """The course page from `reads`: the read replicas serve an anonymous caller, who sees only
    published courses; the primary serves a signed-in one, who may be looking at their own
    draft as they have just changed it."""
    row = await sql.course_json(reads, course_id)
    if row is None or not can_see(principal, row):
        raise NotFound("no such course")
    return _answer(row["body"], principal)


def _keep(db: asyncpg.Pool, query: str) -> None:
    """Keep the query's top, in the background on the primary (the asker has its page)."""
    if query in _keeping:
        return
    _keeping.add(query)

    async def fill() -> None:
        try:
            async with db.acquire() as conn:
                await sql.keep_top(conn, query=query, rows=KEPT_ROWS, queries=KEPT_QUERIES)
        except Exception as exc:  # the plain search still answers it; a later one tries again
            log.warning("keeping the top of a search failed: %s", exc)
        finally:
            _keeping.discard(query)

    task = asyncio.get_running_loop().create_task(fill())
    _keep_tasks.add(task)
    task.add_done_callback(_keep_tasks.discard)


def _position(secret: str, scope: str, cursor: str) -> tuple[object, uuid.UUID]:
    values = decode_cursor(secret, scope, cursor)
    try:
        key, last_id = values
        return key, uuid.UUID(str(last_id))
    except (ValueError, TypeError):
        raise Invalid("malformed cursor") from None


def _timestamp(value: object) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise Invalid("malformed cursor") from None
