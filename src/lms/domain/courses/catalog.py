"""GET /courses and GET /courses/:id: what every visitor hits. PostgreSQL builds the JSON; Python
adds the signed cursor, an ETag (a 304 when the client has it already) and caching headers."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from lms.context import AppContext
from lms.db.queries import ReadConn
from lms.db.queries import catalog as sql
from lms.domain.auth.authentication import Principal
from lms.domain.courses.access import can_see
from lms.domain.courses.search_cache import SearchCache
from lms.domain.courses.search_slots import SEARCH_LINE_PER_SLOT, SEARCH_WAIT_SECONDS, SearchSlots
from lms.domain.errors import Invalid, NotFound, Unavailable
from lms.domain.paging import decode_cursor, encode_cursor, json_page
from lms.domain.rate_limits import Limit, client_key, take

MAX_QUERY_LENGTH = 200
# Anonymous catalog answers may be cached by browsers and CDNs for a little while.
PUBLIC_CACHE = "public, max-age=30, stale-while-revalidate=60"
PRIVATE_CACHE = "private, no-cache"
SEARCH_TIMEOUT_SECONDS = 5.0
_searches = SearchSlots()
_search_pages = SearchCache()


def forget_kept_searches() -> None:
    """Drop this process's kept search pages (tests start from an empty catalog)."""
    _search_pages.clear()


@dataclass(frozen=True, slots=True)
class CatalogBody:
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
        # A ranked search costs in proportion to its matches: a client gets so many a minute,
        # and a process runs so many at once, so a few clients cannot take every connection.
        settings = ctx.settings
        await take(
            db,
            f"ip:search:{client_key(client_ip)}",
            Limit(settings.search_rate_limit_per_minute, 60),
            "searches from this address",
            label="search",
        )

        async def search() -> str:
            async with _searches.take(
                settings.search_concurrency,
                wait=SEARCH_WAIT_SECONDS,
                line=settings.search_concurrency * SEARCH_LINE_PER_SLOT,
            ):
                try:
                    row = await sql.search_page(
                        reads,
                        query=query,
                        limit=limit,
                        after=after_rank,
                        creator_id=creator_id,
                        within=SEARCH_TIMEOUT_SECONDS,
                    )
                except TimeoutError:
                    # A query matching much of a huge catalog must not hold a connection long.
                    raise Unavailable("search took too long; try more specific words") from None
            next_cursor = (
                encode_cursor(ctx.secret, scope, row["last_key"], str(row["last_id"]))
                if row["more"]
                else None
            )
            return json_page(row["items"], next_cursor)

        # Anonymous visitors share the page for a moment (lms.domain.courses.search_cache).
        ttl = settings.search_cache_seconds
        if principal is None and ttl > 0:
            key = (query, limit, cursor, creator_id)
            return _answer(await _search_pages.get(key, ttl, search), principal)
        return _answer(await search(), principal)
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
